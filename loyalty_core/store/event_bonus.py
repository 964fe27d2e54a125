"""Event types (programme reference data) and event grants (member-owned): their rows."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalty_core.event_bonus import EventType, EventTypeRecord, Grant
from loyalty_core.model import Expiry, MemberRef, from_json, to_json
from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.later import Later
from loyalty_core.store.members import key_condition, member_key

_TYPE_COLUMNS = ("name", "points", "expiry", "discount_bps", "discount_days", "frequency", "frequency_days",
                 "active_from", "active_until")
_SELECT_TYPE = ("SELECT programme_id::text, code, " + ", ".join(_TYPE_COLUMNS) + ", created_at, updated_at"
                " FROM event_type")


def _type_params(t: EventType, now: int) -> dict[str, Any]:
    values: dict[str, Any] = {c: getattr(t, c) for c in _TYPE_COLUMNS}
    values.update(programme_id=t.programme_id, code=t.code, expiry=Jsonb(to_json(t.expiry)),
                  active_from=to_dt(t.active_from), active_until=to_dt(t.active_until), now=to_dt(now))
    return values


def _record(row: dict[str, Any]) -> EventTypeRecord:
    values = dict(row)
    created, updated = to_us(values.pop("created_at")), to_us(values.pop("updated_at"))
    values.update(expiry=from_json(Expiry, values["expiry"]), active_from=to_us(values["active_from"]),
                  active_until=to_us(values["active_until"]))
    return EventTypeRecord(EventType(**values), created, updated)


async def insert_type(conn: Any, t: EventType, now: int) -> None:
    """Insert an event type; a taken code raises UniqueViolation (the caller's savepoint keeps the transaction)."""
    await conn.execute(
        f"INSERT INTO event_type (programme_id, code, {', '.join(_TYPE_COLUMNS)}, created_at, updated_at)"
        f" VALUES (%(programme_id)s, %(code)s, {', '.join(f'%({c})s' for c in _TYPE_COLUMNS)}, %(now)s, %(now)s)",
        _type_params(t, now),
    )


async def update_type(conn: Any, t: EventType, now: int) -> None:
    await conn.execute(
        f"UPDATE event_type SET {', '.join(f'{c} = %({c})s' for c in _TYPE_COLUMNS)}, updated_at = %(now)s"
        " WHERE programme_id = %(programme_id)s AND code = %(code)s",
        _type_params(t, now),
    )


async def get_type(conn: Any, programme_id: str, code: str, *, lock: bool = False) -> EventTypeRecord | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT_TYPE + " WHERE programme_id = %s AND code = %s" + (" FOR UPDATE" if lock else ""),
                      (programme_id, code))
    row = await cur.fetchone()
    return None if row is None else _record(row)


async def types_of(conn: Any, programme_id: str) -> list[EventTypeRecord]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT_TYPE + " WHERE programme_id = %s ORDER BY code", (programme_id,))
    return [_record(row) for row in await cur.fetchall()]


async def count_types(conn: Any, programme_id: str) -> int:
    cur = await conn.execute("SELECT count(*) FROM event_type WHERE programme_id = %s", (programme_id,))
    return int((await cur.fetchone())[0])


_GRANT_COLUMNS = ("event_code", "occurrence_key", "points", "lot_id", "movement_id", "discount_bps",
                  "discount_ends_at", "discount_withheld", "granted_at")


async def grant_of(conn: Any, member_id: str, code: str, occurrence_key: str) -> Grant | None:
    """The grant of this occurrence, if it was granted."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT member_id::text, {', '.join(_GRANT_COLUMNS)} FROM event_grant"
        " WHERE member_id = %s AND event_code = %s AND occurrence_key = %s",
        (member_id, code, occurrence_key),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Grant(**{**row, "discount_ends_at": to_us(row["discount_ends_at"]), "granted_at": to_us(row["granted_at"])})


async def last_granted_at(conn: Any, member_id: str, code: str) -> int | None:
    """When the member last received this event type's bonus; None: never."""
    cur = await conn.execute("SELECT max(granted_at) FROM event_grant WHERE member_id = %s AND event_code = %s",
                             (member_id, code))
    return to_us((await cur.fetchone())[0])


async def insert_grant(conn: Any, programme_id: str, grant: Grant, actor: str) -> None:
    await conn.execute(
        f"INSERT INTO event_grant (member_id, programme_id, {', '.join(_GRANT_COLUMNS)}, actor)"
        f" VALUES (%(member_id)s, %(programme_id)s, {', '.join(f'%({c})s' for c in _GRANT_COLUMNS)}, %(actor)s)",
        {**{c: getattr(grant, c) for c in _GRANT_COLUMNS}, "member_id": grant.member_id,
         "programme_id": programme_id, "discount_ends_at": to_dt(grant.discount_ends_at),
         "granted_at": to_dt(grant.granted_at), "actor": actor},
    )


# The member's largest event discount usable at a time: one of a window that has not ended, or a
# next-order one not yet used. ``BEST_DISCOUNT`` takes the time, then ends where the member's id goes.
BEST_DISCOUNT = ("SELECT coalesce(max(discount_bps), 0) FROM event_grant WHERE discount_bps > 0"
                 " AND discount_used_at IS NULL AND (discount_ends_at IS NULL OR discount_ends_at > %s)"
                 " AND member_id = ")


async def _one_int(cur: Any) -> int:
    return int((await cur.fetchone())[0])


async def send_best_discount(conn: Any, programme_id: str, ref: MemberRef, now: int) -> Later[int]:
    """:data:`BEST_DISCOUNT` of the member ``ref`` names, to send right after the query that locks the member."""
    key = await member_key(conn, programme_id, ref)
    condition, values = key_condition(programme_id, ref, key)
    # The key itself beside the subquery: Citus routes the statement to the member's shard.
    cur = await conn.execute(BEST_DISCOUNT + f"{key[0]} AND member_id IN (SELECT member_id FROM member WHERE {condition})",
                             (to_dt(now), *key[1], *values))
    return Later(cur, _one_int)


async def use_next_order_discount(conn: Any, member_id: str, order_id: str, bps: int, checked_out_at: int,
                                  now: int) -> None:
    """A captured order priced with an event discount of ``bps`` uses up the member's oldest unused
    next-order discount of that rate granted by its checkout, unless a window discount of that rate
    or more was running then (the window priced it; a window discount is never used up). The grant
    is joined by the member's id and its key, not compared as a row with a subquery, which Citus
    cannot send to a shard."""
    await conn.execute(
        "WITH oldest AS (SELECT event_code, occurrence_key"
        "   FROM event_grant WHERE member_id = %(m)s AND discount_bps = %(bps)s AND discount_ends_at IS NULL"
        "   AND discount_used_at IS NULL AND granted_at <= %(at)s ORDER BY granted_at LIMIT 1)"
        " UPDATE event_grant g SET discount_used_at = %(now)s, discount_order_id = %(order)s FROM oldest o"
        " WHERE g.member_id = %(m)s AND g.event_code = o.event_code AND g.occurrence_key = o.occurrence_key"
        " AND NOT EXISTS (SELECT FROM event_grant w WHERE w.member_id = %(m)s AND w.discount_bps >= %(bps)s"
        "   AND w.granted_at <= %(at)s AND w.discount_ends_at > %(at)s)",
        {"now": to_dt(now), "order": order_id, "m": member_id, "bps": bps, "at": to_dt(checked_out_at)},
    )
