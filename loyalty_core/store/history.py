"""A member's movements, newest first, filtered by time and kind, one page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from loyalty_core.model import Movement
from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.ledger import allocations

# The API's `points` of a movement (docs/ledger.md "Movements"): its change of the member's points
# (in lots, held, or owed), except held and released, which carry the amount moved.
API_POINTS_SQL = (
    "CASE WHEN kind IN ('held', 'released') THEN abs(held_delta) ELSE points + held_delta - debt_delta END"
)

_COLUMNS = f"""movement_id, kind, {API_POINTS_SQL}, coalesce(order_id, ''), created_at, lot_ids, lot_points,
    actor, store_id, terminal_id, reason_code, correlation_id, comment"""


def row_to_movement(r: Sequence[Any]) -> Movement:
    return Movement(r[0], r[1], r[2], r[3], to_us(r[4]), allocations(r[5], r[6]), *r[7:])


async def page(
    conn: Any, member_id: str, start: int | None, end: int | None, kinds: Sequence[str],
    after: tuple[int, int] | None, limit: int,
) -> list[Movement]:
    """Movements at or after ``start`` and before ``end`` of ``kinds`` (all when empty), newest first,
    after the (created_at, movement_id) of the previous page's last."""
    cur = await conn.execute(
        f"""SELECT {_COLUMNS} FROM movement
            WHERE member_id = %(m)s
              AND (%(start)s::timestamptz IS NULL OR created_at >= %(start)s)
              AND (%(end)s::timestamptz IS NULL OR created_at < %(end)s)
              AND (cardinality(%(kinds)s::text[]) = 0 OR kind = ANY(%(kinds)s))
              AND (%(after_at)s::timestamptz IS NULL OR (created_at, movement_id) < (%(after_at)s, %(after_id)s))
            ORDER BY created_at DESC, movement_id DESC LIMIT %(limit)s""",
        {"m": member_id, "start": to_dt(start), "end": to_dt(end), "kinds": list(kinds),
         "after_at": to_dt(after[0]) if after else None, "after_id": after[1] if after else None, "limit": limit},
    )
    return [row_to_movement(r) for r in await cur.fetchall()]


async def one(conn: Any, member_id: str, movement_id: int) -> Movement:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM movement WHERE member_id = %s AND movement_id = %s",
                             (member_id, movement_id))
    return row_to_movement(await cur.fetchone())
