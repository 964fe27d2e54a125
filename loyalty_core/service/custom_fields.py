"""Custom field use cases: values at enrolment, the field-masked update, the card's values."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from loyalty_core import custom_fields, membership
from loyalty_core.clock import Clock
from loyalty_core.errors import InvalidArgument, NotFound
from loyalty_core.model import Member, MemberCard, MemberRef, Programme, UpdateCustomFields
from loyalty_core.service import checks
from loyalty_core.service.idempotent import run_write
from loyalty_core.store import custom_values as store, members as member_store, programmes
from loyalty_core.store import membership as history
from loyalty_core.store.db import Database

# The update mask may name a field as "birthday" or as "custom_fields.birthday".
MASK_PREFIX = "custom_fields."
COMMENT_MAX = 1000


async def _programme(conn: Any, programme_id: str) -> Programme:
    programme = await programmes.get(conn, programme_id)
    if programme is None:
        raise NotFound("programme_not_found", "no such programme")
    return programme


def enrolment_values(programme: Programme, values: tuple[Any, ...]) -> dict[str, str]:
    """The values an enrolment gives, checked; every required field needs one."""
    given = custom_fields.checked_values(programme.custom_fields, values, "custom_fields")
    missing = custom_fields.missing_required(programme.custom_fields, given)
    if missing is not None:
        raise InvalidArgument("field_required", f"custom field {missing!r} is required", field="custom_fields")
    return {k: v for k, v in given.items() if v}


async def record(conn: Any, member: Member, before: Mapping[str, str], after: Mapping[str, str], now: int, *,
                 actor: str, comment: str = "") -> None:
    """Store the values that changed and put each change in history (participation tab)."""
    changed = {name: value for name, value in after.items() if before.get(name, "") != value}
    await store.put(conn, member.member_id, member.programme_id, changed, now)
    for name, value in changed.items():
        await history.add_event(conn, member.member_id, "participation", "custom_field_changed", now, actor=actor,
                                comment=comment, details={"name": name, "from": before.get(name, ""), "to": value})


async def with_values(conn: Any, programme: Programme, card: MemberCard) -> MemberCard:
    """The card with the member's values of the fields the programme declares."""
    stored = await store.of_member(conn, card.member.member_id)
    return dataclasses.replace(card, custom_fields=custom_fields.shown(programme.custom_fields, stored))


def _mask(paths: tuple[str, ...], declared: Programme) -> tuple[str, ...]:
    if not paths:
        raise InvalidArgument("field_required", "update_mask names no custom field", field="update_mask")
    names = tuple(p.removeprefix(MASK_PREFIX) for p in paths)
    by_name = {f.name for f in declared.custom_fields}
    for name in names:
        if name not in by_name:
            raise InvalidArgument("custom_field_not_declared", f"the programme declares no custom field {name!r}",
                                  field="update_mask")
    return names


async def update(db: Database, clock: Clock, req: UpdateCustomFields) -> MemberCard:
    """Set the masked fields to the values given (cleared without one), each checked against its
    declaration; a required field is never cleared; unchanged values write nothing."""
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.programme_id, "programme_id")
    member_id = checks.uuid_arg(req.member_id, "member_id")
    checks.text_arg(req.comment, "comment", max_len=COMMENT_MAX)
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[MemberCard, str]:
        programme = await _programme(conn, programme_id)
        names = _mask(req.fields, programme)
        given = custom_fields.checked_values(programme.custom_fields, req.values, "custom_fields")
        for i, value in enumerate(req.values):
            if value.name not in names:
                raise InvalidArgument("value_out_of_range", f"custom field {value.name!r} is not in update_mask",
                                      field=f"custom_fields[{i}].name")
        after = {name: given.get(name, "") for name in names}
        missing = custom_fields.missing_required(
            [f for f in programme.custom_fields if f.name in after], after)
        if missing is not None:
            raise InvalidArgument("field_required", f"custom field {missing!r} is required and cannot be cleared",
                                  field="custom_fields")
        member = checks.member_in_programme(checks.found_member(
            await member_store.find(conn, programme_id, MemberRef(member_id=member_id), lock=True), "with this id"))
        await record(conn, member, await store.of_member(conn, member_id), after, now, actor=req.context.actor,
                     comment=req.comment)
        return await with_values(conn, programme, await membership.member_card(conn, member, now)), member_id

    return await run_write(db, method="UpdateMemberCustomFields", scope=programme_id, request=req,
                           result_type=MemberCard, now=now, effect=effect)
