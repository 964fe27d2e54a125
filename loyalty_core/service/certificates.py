"""Bonus certificates: issue to members, cancel, list and read; their use at the till is
loyalty_core.service.checkout's, the expiry run's is loyalty_core.service.points'."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from loyalty_core import certificates as rules
from loyalty_core import membership
from loyalty_core.certificates import (
    CancelCertificates, Cancelled, Certificate, CertificateFilter, Issue, Issued, IssuedCertificate,
)
from loyalty_core.clock import Clock
from loyalty_core.errors import FailedPrecondition, InvalidArgument, NotFound
from loyalty_core.model import Member, Page
from loyalty_core.service import checks
from loyalty_core.service.idempotent import run_write
from loyalty_core.service.members import programme_of
from loyalty_core.store import certificates as store
from loyalty_core.store import members
from loyalty_core.store.convert import MAX_US
from loyalty_core.store.db import Database
from loyalty_core.store.certificates import CertificateMove


def _check_context(req: Any) -> str:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    for name in ("store_id", "terminal_id", "reason_code"):
        checks.text_arg(getattr(req.context, name), f"context.{name}", max_len=checks.MAX_ID)
    checks.text_arg(req.context.correlation_id, "context.correlation_id", max_len=128)
    return checks.uuid_arg(req.programme_id, "programme_id")


def _distinct_ids(values: list[str], field: str) -> list[str]:
    """Each value a UUID, in canonical form, none twice."""
    seen: set[str] = set()
    ids = []
    for i, value in enumerate(values):
        canonical = checks.uuid_arg(value, f"{field}[{i}]")
        if canonical in seen:
            raise InvalidArgument("value_out_of_range", f"{field}[{i}] appears twice", field=f"{field}[{i}]")
        seen.add(canonical)
        ids.append(canonical)
    return ids


def _may_receive(member: Member | None, index: int) -> Member:
    """A member receives certificates while in the programme and not deactivated (seed 001:
    a deactivated member receives nothing); one not confirmed receives them, and pays with them once confirmed."""
    found = checks.found_member(member, f"member_ids[{index}]")
    checks.member_in_programme(found)
    if found.status == membership.DEACTIVATED:
        raise FailedPrecondition("member_deactivated", f"member_ids[{index}] is deactivated and receives nothing",
                                 field=f"member_ids[{index}]")
    return found


async def issue(db: Database, clock: Clock, req: Issue) -> Issued:
    """Issue one certificate of ``value_points`` to each member named, all or none, each with its own
    id and code. The codes are in the answer only: a replay answers without them."""
    programme_id = _check_context(req)
    member_ids = _distinct_ids(list(req.member_ids), "member_ids")
    rules.validate_issue(req)
    checks.text_arg(req.note, "note", max_len=rules.MAX_NOTE)
    now = clock.now_us()
    rules.validate_expiry(req.expiry, now, MAX_US)
    expires_at = rules.expiry_end(req.expiry, now)
    if expires_at is not None and expires_at > MAX_US:
        raise InvalidArgument("value_out_of_range", "the expiry falls after the year 9999", field="expiry")
    codes = {m: rules.new_code() for m in member_ids}
    shown: dict[str, str] = {}

    async def effect(conn: Any) -> tuple[Issued, None]:
        programme = await programme_of(conn, programme_id)
        found = await members.lock_many(conn, programme_id, member_ids)
        issued = []
        for i, member_id in enumerate(member_ids):
            _may_receive(found.get(member_id), i)
            certificate = Certificate(
                certificate_id=str(uuid.uuid4()), member_id=member_id, programme_id=programme_id,
                value_points=req.value_points, remaining_points=req.value_points, held_points=0, held_order_id="",
                multiple_orders=programme.certificate_redemption == rules.MULTIPLE_ORDERS, state=rules.ACTIVE,
                expires_at=expires_at, note=req.note, issued_at=now, ended_at=None, end_reason="",
            )
            await store.insert(conn, certificate, rules.code_hash(codes[member_id]), req.context.actor)
            issued.append(IssuedCertificate(certificate))
        shown.update({c.certificate.certificate_id: codes[c.certificate.member_id] for c in issued})
        return Issued(tuple(issued)), None

    result = await run_write(db, method="IssueCertificates", scope=programme_id, request=req, result_type=Issued,
                             now=now, effect=effect)
    return Issued(tuple(dataclasses.replace(c, code=shown.get(c.certificate.certificate_id, ""))
                        for c in result.certificates))


def _ended(c: Certificate, state: str, now: int, reason: str = "") -> Certificate:
    return dataclasses.replace(c, state=state, remaining_points=0, held_points=0, held_order_id="", ended_at=now,
                               end_reason=reason)


async def cancel(db: Database, clock: Clock, req: CancelCertificates) -> Cancelled:
    """Cancel certificates, all or none, with a reason: what was left on each is burnt. One held by an
    open checkout is refused until that checkout is captured or cancelled."""
    programme_id = _check_context(req)
    if not req.certificates:
        raise InvalidArgument("field_required", "certificates needs at least one certificate", field="certificates")
    if len(req.certificates) > rules.CANCEL_MAX:
        raise InvalidArgument("too_many_items", f"at most {rules.CANCEL_MAX} certificates per cancel",
                              field="certificates")
    ids = _distinct_ids([c for _, c in req.certificates], "certificates")
    pairs = [(checks.uuid_arg(m, f"certificates[{i}].member_id"), c)
             for i, ((m, _), c) in enumerate(zip(req.certificates, ids))]
    checks.text_arg(req.reason, "reason", max_len=rules.MAX_NOTE, required=True)
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[Cancelled, None]:
        await programme_of(conn, programme_id)
        await members.lock_many(conn, programme_id, sorted({m for m, _ in pairs}))
        by_id = {c.certificate_id: c for c in await store.of_pairs(conn, programme_id, pairs)}
        done = []
        for i, (member_id, certificate_id) in enumerate(pairs):
            found = by_id.get(certificate_id)
            if found is None:
                raise NotFound("certificate_not_found", f"certificates[{i}]: no such certificate of this member",
                               field=f"certificates[{i}]")
            rules.check_cancellable(found)
            ended = _ended(found, rules.CANCELLED, now, req.reason)
            await store.move(conn, member_id, now, req.context.actor, [
                CertificateMove(certificate_id, "cancelled", -found.remaining_points, comment=req.reason)])
            await store.set_state(conn, ended)
            done.append(ended)
        return Cancelled(tuple(done)), None

    return await run_write(db, method="CancelCertificates", scope=programme_id, request=req, result_type=Cancelled,
                           now=now, effect=effect)


async def get(db: Database, programme_id: str, member_id: str, certificate_id: str) -> Certificate:
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    member_id = checks.uuid_arg(member_id, "member_id")
    certificate_id = checks.uuid_arg(certificate_id, "certificate_id")
    async with db.connection() as conn:
        found = await store.get(conn, programme_id, member_id, certificate_id)
    if found is None:
        raise NotFound("certificate_not_found", "no such certificate of this member", field="certificate_id")
    return found


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


async def list_certificates(db: Database, f: CertificateFilter) -> Page[Certificate]:
    """The programme's certificates, or one member's, oldest issued first, a page at a time."""
    programme_id = checks.uuid_arg(f.programme_id, "programme_id")
    member_id = checks.uuid_arg(f.member_id, "member_id") if f.member_id else ""
    size = checks.page_size(f.page_size)
    for i, state in enumerate(f.states):
        if state not in rules.STATES:
            raise InvalidArgument("value_out_of_range", f"unknown state {state!r}", field=f"states[{i}]")
    if f.expires_from is not None and f.expires_before is not None and f.expires_before <= f.expires_from:
        raise InvalidArgument("value_out_of_range", "expire_before_time must be after expire_from_time",
                              field="expire_before_time")
    after = checks.decode_token(f.page_token, 2)
    if after is not None and not (isinstance(after[0], int) and _is_uuid(after[1])):
        raise InvalidArgument("value_out_of_range", "page_token is not one this server gave", field="page_token")
    async with db.connection() as conn:
        await programme_of(conn, programme_id)
        items = await store.page(conn, programme_id, member_id, f.states, f.expires_from, f.expires_before,
                                 (after[0], after[1]) if after else None, size + 1)
    more = len(items) > size
    items = items[:size]
    return Page(tuple(items), checks.encode_token(items[-1].issued_at, items[-1].certificate_id) if more else "")
