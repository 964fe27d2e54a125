"""The member card's history tabs (seed 001): history events, the member's orders with their state and
the points movements, merged newest first, filtered by time, one page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.history import API_POINTS_SQL

# The sources of entries and their rank among entries of one moment (newest first: events, then
# movements, then orders).
EVENTS, MOVEMENTS, ORDERS = 2, 1, 0
# The operators' manual balance changes, which the participation tab shows: manual accruals and
# redemptions (a spend without an order).
MANUAL_MOVEMENT_SQL = "(kind = 'manual_accrual' OR (kind = 'spent' AND order_id IS NULL))"

# An order's refund state from its lines: none, partial or whole (every unit refunded).
_REFUND_SQL = """(SELECT CASE WHEN coalesce(sum(ol.refunded_quantity), 0) = 0 THEN 'none'
        WHEN sum(ol.refunded_quantity) = sum(ol.quantity) THEN 'whole' ELSE 'partial' END
    FROM order_line ol WHERE ol.member_id = o.member_id AND ol.programme_id = o.programme_id
     AND ol.order_id = o.order_id)"""

_SOURCES = {
    EVENTS: """SELECT created_at AS at, 2 AS rank, event_id AS num, '' AS txt, tab, kind, details, comment, actor
        FROM member_event WHERE member_id = %(m)s AND tab = ANY(%(tabs)s)""",
    MOVEMENTS: f"""SELECT created_at AS at, 1 AS rank, movement_id AS num, '' AS txt, 'points' AS tab,
            'points_' || kind AS kind,
            jsonb_build_object('points', ({API_POINTS_SQL})::text, 'order_id', coalesce(order_id, ''),
                               'store_id', store_id, 'terminal_id', terminal_id, 'reason_code', reason_code)
                AS details, comment, actor
        FROM movement WHERE member_id = %(m)s AND (%(all_movements)s OR {MANUAL_MOVEMENT_SQL})""",
    ORDERS: f"""SELECT o.created_at AS at, 0 AS rank, 0::bigint AS num, o.order_id AS txt, 'orders' AS tab,
            'order' AS kind,
            jsonb_build_object('order_id', o.order_id, 'state', o.state, 'refund', {_REFUND_SQL},
                               'counted', o.counted::text, 'store_id', o.store_id, 'channel', o.channel,
                               'net_minor', o.pricing->>'net_minor', 'spent_points', o.spent_points::text,
                               'earned_points', o.earned_points::text,
                               'refunded_money_minor', (SELECT coalesce(sum(r.money_minor), 0)::text FROM refund r
                                   WHERE r.member_id = o.member_id AND r.programme_id = o.programme_id
                                     AND r.order_id = o.order_id))
                AS details, '' AS comment, '' AS actor
        FROM orders o WHERE o.member_id = %(m)s""",
}
_FILTERS = """ AND (%(start)s::timestamptz IS NULL OR {at} >= %(start)s)
    AND (%(end)s::timestamptz IS NULL OR {at} < %(end)s)
    AND (%(after_at)s::timestamptz IS NULL
         OR ({at}, {rank}, {num}, {txt}) < (%(after_at)s, %(after_rank)s::int, %(after_num)s::bigint, %(after_txt)s::text))
    ORDER BY at DESC, num DESC, txt DESC LIMIT %(limit)s"""
_COLUMNS = {
    EVENTS: {"at": "created_at", "rank": "2", "num": "event_id", "txt": "''"},
    MOVEMENTS: {"at": "created_at", "rank": "1", "num": "movement_id", "txt": "''"},
    ORDERS: {"at": "o.created_at", "rank": "0", "num": "0::bigint", "txt": "o.order_id"},
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of a tab; ``position`` is its place in the order (the page token's key)."""

    position: tuple[int, int, int, str]
    tab: str
    kind: str
    details: dict[str, str]
    comment: str
    actor: str

    @property
    def created_at(self) -> int:
        return self.position[0]

    @property
    def entry_id(self) -> str:
        """A history event's number, "movement:<id>" or "order:<order_id>"."""
        _at, rank, num, txt = self.position
        return {EVENTS: str(num), MOVEMENTS: f"movement:{num}", ORDERS: f"order:{txt}"}[rank]


async def page(conn: Any, member_id: str, *, event_tabs: Sequence[str], movements: str, orders: bool,
               start: int | None, end: int | None, after: tuple[int, int, int, str] | None, limit: int) -> list[Entry]:
    """Entries at or after ``start`` and before ``end``, newest first, after ``after``: the history
    events of ``event_tabs``, the movements (``movements``: "all", "manual" or "none") and, with
    ``orders``, one entry per order."""
    parts = []
    if event_tabs:
        parts.append(EVENTS)
    if movements != "none":
        parts.append(MOVEMENTS)
    if orders:
        parts.append(ORDERS)
    if not parts:
        return []
    sql = " UNION ALL ".join(f"({_SOURCES[s]}{_FILTERS.format(**_COLUMNS[s])})" for s in parts)
    cur = await conn.execute(
        f"SELECT * FROM ({sql}) e ORDER BY at DESC, rank DESC, num DESC, txt DESC LIMIT %(limit)s",
        {"m": member_id, "tabs": list(event_tabs), "all_movements": movements == "all",
         "start": to_dt(start), "end": to_dt(end), "after_at": to_dt(after[0]) if after else None,
         "after_rank": after[1] if after else None, "after_num": after[2] if after else None,
         "after_txt": after[3] if after else None, "limit": limit},
    )
    return [Entry((to_us(at), rank, num, txt), tab, kind, {k: str(v) for k, v in details.items()}, comment, actor)
            for at, rank, num, txt, tab, kind, details, comment, actor in await cur.fetchall()]
