"""Event bonuses: a programme's event types (create, update, list) and RecordEvent, which grants them."""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg.errors

from loyalty_core import event_bonus, membership
from loyalty_core.clock import Clock
from loyalty_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from loyalty_core.event_bonus import EventType, EventTypeRecord, Grant, RecordEvent, Recorded, SaveEventType
from loyalty_core.service import checks
from loyalty_core.service.idempotent import run_write
from loyalty_core.service.lots import expiry_end
from loyalty_core.service.members import programme_of
from loyalty_core.service.points import member_for_write
from loyalty_core.store import event_bonus as store
from loyalty_core.store import history, ledger
from loyalty_core.store import membership as member_store
from loyalty_core.store.db import Database, savepoint
from loyalty_core.store.ledger import NEW_LOT, Entry, NewLot


def _check_type_write(req: SaveEventType) -> EventType:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.event_type.programme_id, "event_type.programme_id")
    return event_bonus.validate(dataclasses.replace(req.event_type, programme_id=programme_id))


async def create_type(db: Database, clock: Clock, req: SaveEventType) -> EventTypeRecord:
    """Define an event type; its code is the programme's only one of that name."""
    event_type = _check_type_write(req)
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[EventTypeRecord, None]:
        await programme_of(conn, event_type.programme_id)
        if await store.count_types(conn, event_type.programme_id) >= event_bonus.EVENT_TYPES_PER_PROGRAMME_MAX:
            raise InvalidArgument("too_many_items", f"a programme has at most {event_bonus.EVENT_TYPES_PER_PROGRAMME_MAX}"
                                  " event types", field="event_type")
        try:
            async with savepoint(conn):  # a taken code must not end the idempotency key's transaction
                await store.insert_type(conn, event_type, now)
        except psycopg.errors.UniqueViolation:
            raise AlreadyExists("event_type_code_taken", f"the programme has an event type {event_type.code!r}",
                                field="event_type.code") from None
        return EventTypeRecord(event_type, now, now), None

    return await run_write(db, method="CreateEventType", scope=event_type.programme_id, request=req,
                           result_type=EventTypeRecord, now=now, effect=effect)


def _type_not_found(code: str, field: str) -> NotFound:
    return NotFound("event_type_not_found", f"the programme has no event type {code!r}", field=field)


async def update_type(db: Database, clock: Clock, req: SaveEventType) -> EventTypeRecord:
    """Replace every field of an event type but its programme and code. Grants made stay as they were."""
    event_type = _check_type_write(req)
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[EventTypeRecord, None]:
        stored = await store.get_type(conn, event_type.programme_id, event_type.code, lock=True)
        if stored is None:
            raise _type_not_found(event_type.code, "event_type.code")
        await store.update_type(conn, event_type, now)
        return EventTypeRecord(event_type, stored.created_at, now), None

    return await run_write(db, method="UpdateEventType", scope=event_type.programme_id, request=req,
                           result_type=EventTypeRecord, now=now, effect=effect)


async def list_types(db: Database, programme_id: str) -> list[EventTypeRecord]:
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    async with db.connection() as conn:
        await programme_of(conn, programme_id)
        return await store.types_of(conn, programme_id)


def _check_record(req: RecordEvent) -> tuple[str, str]:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.programme_id, "programme_id")
    member_id = checks.uuid_arg(req.member_id, "member_id")
    checks.text_arg(req.event_code, "event_code", max_len=64, required=True)
    checks.text_arg(req.occurrence_key, "occurrence_key", max_len=event_bonus.MAX_OCCURRENCE_KEY, required=True)
    for name in ("store_id", "terminal_id", "reason_code"):
        checks.text_arg(getattr(req.context, name), f"context.{name}", max_len=checks.MAX_ID)
    checks.text_arg(req.context.correlation_id, "context.correlation_id", max_len=128)
    return programme_id, member_id


async def record(db: Database, clock: Clock, req: RecordEvent) -> Recorded:
    """Grant the event type's bonus for one occurrence, by its rules: once per occurrence (a repeat
    answers with the first grant), within the type's window and frequency; a deactivated member is
    refused, a member not confirmed gets the points without the discount (seed 001)."""
    programme_id, member_id = _check_record(req)
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[Recorded, str]:
        programme, member = await member_for_write(conn, programme_id, member_id)
        found = await store.get_type(conn, programme_id, req.event_code)
        if found is None:
            raise _type_not_found(req.event_code, "event_code")
        event_type = found.event_type
        earlier = await store.grant_of(conn, member_id, event_type.code, req.occurrence_key)
        if earlier is not None:
            moved = None if earlier.movement_id is None else await history.one(conn, member_id, earlier.movement_id)
            return Recorded(earlier, moved, already_granted=True), member_id
        if member.status == membership.DEACTIVATED:
            raise FailedPrecondition("member_deactivated", "a deactivated member receives no event bonus")
        event_bonus.check_active(event_type, now)
        event_bonus.check_frequency(event_type, await store.last_granted_at(conn, member_id, event_type.code), now)
        movement = None
        if event_type.points:
            checks.check_member_room(member, "event_code", earned_points=event_type.points)
            expires_at = expiry_end(event_type.expiry, programme.point_lifetime_days, now)
            posted = await ledger.post(
                conn, member_id, now, req.context,
                [Entry("event_bonus", event_type.points, lots=[(NEW_LOT, event_type.points)],
                       comment=f"{event_type.code} {req.occurrence_key}")],
                NewLot("event_bonus", event_type.points, now, expires_at),
            )
            movement = await history.one(conn, member_id, (await posted.get()).movement_ids[0])
        bps, ends_at, withheld = event_bonus.granted_discount(event_type, member.status == membership.ACTIVE, now)
        grant = Grant(member_id, event_type.code, req.occurrence_key, event_type.points,
                      movement.lots[0].lot_id if movement else None, movement.movement_id if movement else None,
                      bps, ends_at, withheld, now)
        await store.insert_grant(conn, programme_id, grant, req.context.actor)
        await member_store.add_event(conn, member_id, "participation", "event_bonus", now, actor=req.context.actor,
                                     details={"event_code": event_type.code, "event_name": event_type.name,
                                              "occurrence_key": req.occurrence_key, "points": event_type.points,
                                              "discount_bps": bps, "discount_withheld": withheld,
                                              "discount": _discount_term(bps, ends_at)})
        return Recorded(grant, movement, already_granted=False), member_id

    return await run_write(db, method="RecordEvent", scope=programme_id, request=req, result_type=Recorded,
                           now=now, effect=effect)


def _discount_term(bps: int, ends_at: int | None) -> str:
    """How history names the discount's term: none, the next order, or until a time (microseconds)."""
    if bps == 0:
        return "none"
    return "next_order" if ends_at is None else f"until_us {ends_at}"
