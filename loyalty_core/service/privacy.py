"""Members' personal data (GDPR): erase it, keeping the ledger's amounts, or export all of it as one document."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loyalty_core import membership
from loyalty_core.clock import Clock
from loyalty_core.errors import FailedPrecondition, NotFound
from loyalty_core.model import MemberCard, MemberRef, WriteContext
from loyalty_core.service import checks
from loyalty_core.service.idempotent import run_write
from loyalty_core.store import certificates, members, privacy as store
from loyalty_core.store import membership as history
from loyalty_core.store.db import Database


@dataclass(frozen=True)
class MemberDataRequest:
    """EraseMember and ExportMemberData: one member, idempotent by request_id."""

    request_id: str
    programme_id: str
    member_id: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Erased:
    """The erased member, and how many rows lost personal data."""

    card: MemberCard
    history_events: int
    movements: int
    idempotency_keys: int


@dataclass(frozen=True)
class Exported:
    """When the export was recorded. ``document`` (the JSON) is never stored: a replay records nothing
    more and answers with the member's data as it is at the replay."""

    exported_at: int
    document: str = ""


def _ids(req: MemberDataRequest) -> tuple[str, str]:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    return checks.uuid_arg(req.programme_id, "programme_id"), checks.uuid_arg(req.member_id, "member_id")


async def erase(db: Database, clock: Clock, req: MemberDataRequest) -> Erased:
    """Erase the member's personal data (``store.privacy.erase``). Refused while checkouts hold the
    member's points (their capture or cancel would write to an erased member), and for a member
    already erased. History records the erasure with counts only."""
    programme_id, member_id = _ids(req)
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[Erased, str]:
        ref = MemberRef(member_id=member_id)
        member = checks.member_not_erased(checks.found_member(await members.find(conn, programme_id, ref, lock=True),
                                                              "with this id"))
        if member.held_points:
            raise FailedPrecondition("member_has_open_holds", f"checkouts hold {member.held_points} of the member's "
                                     "points; capture or cancel them (or let their holds expire) first")
        if await certificates.held_by_any(conn, member_id):
            raise FailedPrecondition("member_has_open_holds", "checkouts hold the member's certificates; capture or"
                                     " cancel them (or let their holds expire) first")
        rows = await store.erase(conn, member_id, now)
        await history.add_event(conn, member_id, "participation", "erased", now, actor=req.context.actor,
                                details={"history_events": rows.history_events, "movements": rows.movements,
                                         "idempotency_keys": rows.idempotency_keys})
        card = await membership.member_card(conn, checks.found_member(await members.find(conn, programme_id, ref),
                                                                      "with this id"), now)
        return Erased(card, rows.history_events, rows.movements, rows.idempotency_keys), member_id

    return await run_write(db, method="EraseMember", scope=programme_id, request=req, result_type=Erased, now=now,
                           effect=effect)


async def export(db: Database, clock: Clock, req: MemberDataRequest) -> Exported:
    """Everything held about the member as one JSON document, read in the transaction that records the
    export in history (once per request_id). An erased member's export is what is left: amounts."""
    programme_id, member_id = _ids(req)
    now = clock.now_us()
    built: dict[str, str] = {}

    async def effect(conn: Any) -> tuple[Exported, str]:
        checks.found_member(await members.find(conn, programme_id, MemberRef(member_id=member_id)), "with this id")
        await history.add_event(conn, member_id, "participation", "data_exported", now, actor=req.context.actor)
        built["document"] = await _document(conn, programme_id, member_id)
        return Exported(now), member_id

    exported = await run_write(db, method="ExportMemberData", scope=programme_id, request=req, result_type=Exported,
                               now=now, effect=effect)
    if "document" not in built:  # a replay: the export is recorded already, the data is read afresh
        async with db.connection() as conn:
            built["document"] = await _document(conn, programme_id, member_id)
    return Exported(exported.exported_at, built["document"])


async def _document(conn: Any, programme_id: str, member_id: str) -> str:
    document = await store.export(conn, programme_id, member_id)
    if document is None:
        raise NotFound("member_not_found", "no member with this id")
    return store.as_text(document)
