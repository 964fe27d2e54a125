"""Orders, their holds, lines and refunds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalty_core.events import NewEvent
from loyalty_core.model import Hold, Member, Order, Pricing, RefundLine, RefundRecord, WriteContext, from_json, to_json
from loyalty_core.store import ledger, members, outbox
from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.later import Later


@dataclass(frozen=True)
class StoredHold:
    hold: Hold
    # The lots the held (after capture: the spent) points came from, in draw order.
    lot_ids: tuple[int, ...]
    lot_points: tuple[int, ...]


@dataclass(frozen=True)
class StoredOrder:
    """An order with what only the ledger needs: its hold's lots, earned lot and counting."""

    order: Order
    hold: StoredHold | None
    earned_lot_id: int | None
    counted: bool


@dataclass(frozen=True)
class StoredLine:
    line_no: int
    line_id: str
    quantity: int
    net_minor: int
    money_due_minor: int
    points: int
    earned_points: int
    refunded_quantity: int


_SELECT = """
SELECT o.programme_id::text, o.order_id, o.member_id::text, o.state, o.store_id, o.channel, o.pricing,
       o.created_at, o.captured_at, o.spent_points, o.earned_points, o.earned_lot_id, o.counted,
       o.hold_id::text, h.points AS hold_points, h.state AS hold_state, h.expires_at AS hold_expires_at,
       h.lot_ids AS hold_lot_ids, h.lot_points AS hold_lot_points,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
                'refund_id', r.refund_id, 'lines', r.lines, 'money_minor', r.money_minor,
                'clawback_points', r.clawback_points, 'returned_points', r.returned_points,
                'shortfall_points', r.shortfall_points, 'debt_points', r.debt_points,
                'certificate_returned_points', r.certificate_returned_points,
                'created_at', (extract(epoch FROM r.created_at) * 1000000)::bigint)
               ORDER BY r.created_at, r.refund_id), '[]')
          FROM refund r WHERE r.member_id = {member} AND r.programme_id = o.programme_id
           AND r.order_id = o.order_id) AS refunds
FROM orders o LEFT JOIN hold h ON h.member_id = {member} AND h.hold_id = o.hold_id
WHERE o.member_id = {member} AND o.programme_id = %s AND o.order_id = %s
"""
# {member}: the order's member, named in each table's condition so that Citus routes the statement
# to the member's shard (members.order_member).


def _stored(row: dict[str, Any]) -> StoredOrder:
    hold = None
    if row["hold_id"] is not None:
        hold = StoredHold(
            Hold(row["hold_id"], row["hold_points"], row["hold_state"], to_us(row["hold_expires_at"])),
            tuple(row["hold_lot_ids"]),
            tuple(row["hold_lot_points"]),
        )
    refunds = tuple(
        RefundRecord(
            refund_id=r["refund_id"], lines=tuple(RefundLine(**x) for x in r["lines"]), money_minor=r["money_minor"],
            clawback_points=r["clawback_points"], returned_points=r["returned_points"],
            shortfall_points=r["shortfall_points"], debt_points=r["debt_points"], created_at=r["created_at"],
            certificate_returned_points=r["certificate_returned_points"],
        )
        for r in row["refunds"]
    )
    order = Order(
        programme_id=row["programme_id"], order_id=row["order_id"], member_id=row["member_id"], state=row["state"],
        store_id=row["store_id"], channel=row["channel"], pricing=from_json(Pricing, row["pricing"]),
        hold=hold.hold if hold else None, refunds=refunds, created_at=to_us(row["created_at"]),
        captured_at=to_us(row["captured_at"]), spent_points=row["spent_points"], earned_points=row["earned_points"],
    )
    return StoredOrder(order, hold, row["earned_lot_id"], row["counted"])


async def _one(cur: Any) -> StoredOrder | None:
    row = await cur.fetchone()
    return None if row is None else _stored(row)


async def send_get(conn: Any, programme_id: str, order_id: str,
                   member: tuple[str, tuple[str, ...]] | None = None) -> Later[StoredOrder | None]:
    """The order; ``member``: its ``members.order_member`` when the caller has it."""
    sql, values = member or await members.order_member(conn, programme_id, order_id)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(_SELECT.format(member=sql), (*values, *values, *values, programme_id, order_id))
    return Later(cur, _one)


async def get(conn: Any, programme_id: str, order_id: str) -> StoredOrder | None:
    return await (await send_get(conn, programme_id, order_id)).get()


@dataclass(frozen=True)
class OrderReads:
    """What every write to an order reads first, sent together (one round trip with whatever is
    sent beside them): the order's member locked (every write to an order holds its lock), with
    its programme's revision, then the order read under that lock."""

    member: Later[tuple[Member | None, int | None]]
    order: Later[StoredOrder | None]
    # The order's member id as SQL and values (``members.order_member``), for more reads beside these.
    member_key: tuple[str, tuple[str, ...]]

    async def get(self) -> tuple[Member, int | None, StoredOrder] | None:
        """(member, programme revision, order); None when the programme has no such order."""
        member, revision = await self.member.get()
        if member is None:
            return None
        stored = await self.order.get()
        assert stored is not None, "the order was found a statement ago, under its member's lock"
        return member, revision, stored


async def send_order_reads(conn: Any, programme_id: str, order_id: str) -> OrderReads:
    member = await members.order_member(conn, programme_id, order_id)  # one look-up for both
    return OrderReads(await members.send_lock_of_order(conn, member), await send_get(conn, programme_id, order_id, member),
                      member)


async def _found(cur: Any) -> bool:
    return await cur.fetchone() is not None


async def send_exists(conn: Any, programme_id: str, order_id: str) -> Later[bool]:
    cur = await conn.execute("SELECT true FROM order_key WHERE order_id = %s AND programme_id = %s",
                             (order_id, programme_id))
    return Later(cur, _found)


# The key of the order id look-up (migration 0023) that an order id taken by a checkout that
# committed meanwhile violates (``insert``).
ORDER_ID_KEY = "order_id_taken"


async def insert(
    conn: Any, order: Order, terminal_id: str, requested_points: int, hold: StoredHold | None, programme_id: str
) -> None:
    """The order at checkout, with its hold when points are held: one statement. An order id that
    another checkout took after this one's ``send_exists`` raises psycopg's UniqueViolation on
    ``ORDER_ID_KEY`` (in pipeline mode, at the write's next sync)."""
    await conn.execute("INSERT INTO order_key (order_id, programme_id, member_id) VALUES (%s, %s, %s)",
                       (order.order_id, programme_id, order.member_id))
    await conn.execute(
        "WITH h AS (INSERT INTO hold (member_id, hold_id, programme_id, order_id, points, state, lot_ids, lot_points,"
        "   created_at, expires_at) SELECT %(member)s, %(hold)s, %(programme)s, %(order)s, %(points)s, 'open',"
        "   %(lot_ids)s, %(lot_points)s, %(created)s, %(expires)s WHERE %(hold)s::uuid IS NOT NULL)"
        " INSERT INTO orders (programme_id, order_id, member_id, state, store_id, channel, terminal_id, pricing,"
        " hold_id, requested_points, created_at) VALUES (%(programme)s, %(order)s, %(member)s, 'held', %(store)s,"
        " %(channel)s, %(terminal)s, %(pricing)s, %(hold)s, %(requested)s, %(created)s)",
        {"programme": programme_id, "order": order.order_id, "member": order.member_id, "store": order.store_id,
         "channel": order.channel, "terminal": terminal_id, "pricing": Jsonb(to_json(order.pricing)),
         "hold": hold.hold.hold_id if hold else None, "points": hold.hold.points if hold else None,
         "lot_ids": list(hold.lot_ids) if hold else None, "lot_points": list(hold.lot_points) if hold else None,
         "requested": requested_points, "created": to_dt(order.created_at),
         "expires": to_dt(hold.hold.expires_at) if hold else None},
    )


_CLOSE_HOLD = (
    "UPDATE hold SET state = %(state)s, closed_at = %(now)s, points = coalesce(%(points)s, points),"
    " lot_ids = coalesce(%(lot_ids)s, lot_ids), lot_points = coalesce(%(lot_points)s, lot_points)"
    " WHERE member_id = %(member)s AND hold_id = %(hold)s AND state = 'open'"
)


@dataclass(frozen=True)
class HoldClosing:
    """An open hold to close: as captured (keeping only the spent lots), released or expired."""

    hold_id: str
    state: str
    kept: tuple[Sequence[int], Sequence[int]] | None = None
    points: int | None = None

    def params(self, member_id: str, now: int) -> dict[str, Any]:
        return {"state": self.state, "now": to_dt(now), "points": self.points,
                "lot_ids": list(self.kept[0]) if self.kept else None,
                "lot_points": list(self.kept[1]) if self.kept else None, "member": member_id, "hold": self.hold_id}


async def close_hold(conn: Any, member_id: str, closing: HoldClosing, now: int) -> None:
    await conn.execute(_CLOSE_HOLD, closing.params(member_id, now))


async def capture(conn: Any, order: Order, counted: bool, now: int, closing: HoldClosing | None) -> None:
    """The order as paid, in one statement: its re-priced figures, the lot its points were credited
    to (when any), one row per line for refunds, and its hold closed (when it has one). The order
    says when it was captured (a posted sale: when it was sold); the hold closes, and the event is
    published, ``now``."""
    lines = order.pricing.lines
    params = {
        "pricing": Jsonb(to_json(order.pricing)), "spent": order.spent_points, "earned": order.earned_points,
        "member": order.member_id, "order": order.order_id, "counted": counted, "now": to_dt(now),
        "captured_at": to_dt(order.captured_at if order.captured_at is not None else now),
        "programme": order.programme_id, "line_nos": list(range(1, len(lines) + 1)),
        "line_ids": [x.line_id for x in lines], "skus": [x.sku for x in lines],
        "categories": [x.category for x in lines], "quantities": [x.quantity for x in lines],
        "nets": [x.net_minor for x in lines], "dues": [x.money_due_minor for x in lines],
        "points_": [x.points for x in lines], "earneds": [x.earned_points for x in lines],
    }
    hold = ""
    if closing is not None:
        hold = f"h AS ({_CLOSE_HOLD}), "
        params.update(closing.params(order.member_id, now))
    params.update(outbox.params(order.member_id, now, [NewEvent("order.captured", {
        "order_id": order.order_id, "store_id": order.store_id, "channel": order.channel,
        "spent_points": order.spent_points, "earned_points": order.earned_points,
        "money_due_minor": order.pricing.money_due_minor,
    })]))
    await conn.execute(
        f"WITH {hold}{outbox.CTE}, l AS (INSERT INTO order_line (programme_id, order_id, member_id, line_no, line_id, sku, category,"
        "   quantity, net_minor, money_due_minor, points, earned_points)"
        "   SELECT %(programme)s, %(order)s, %(member)s, l.* FROM unnest(%(line_nos)s::int[], %(line_ids)s::text[],"
        "   %(skus)s::text[], %(categories)s::text[], %(quantities)s::bigint[], %(nets)s::bigint[],"
        "   %(dues)s::bigint[], %(points_)s::bigint[], %(earneds)s::bigint[]) AS l)"
        " UPDATE orders SET state = 'captured', pricing = %(pricing)s, spent_points = %(spent)s,"
        " earned_points = %(earned)s, earned_lot_id = (SELECT lot_id FROM lot WHERE member_id = %(member)s"
        " AND order_id = %(order)s AND source = 'earned'), counted = %(counted)s, captured_at = %(captured_at)s"
        " WHERE member_id = %(member)s AND programme_id = %(programme)s AND order_id = %(order)s",
        params,
    )


async def set_state(conn: Any, member_id: str, programme_id: str, order_id: str, state: str, now: int) -> None:
    """Cancel (before capture) or complete (after) an order."""
    column = {"cancelled": "cancelled_at", "completed": "completed_at"}[state]
    await conn.execute(
        f"UPDATE orders SET state = %s, {column} = %s WHERE member_id = %s AND programme_id = %s AND order_id = %s",
        (state, to_dt(now), member_id, programme_id, order_id),
    )


async def void(conn: Any, member_id: str, programme_id: str, order_id: str, now: int) -> None:
    """Void a paid order, with its order.voided event in the same statement."""
    await conn.execute(
        f"WITH {outbox.CTE} UPDATE orders SET state = 'voided', voided_at = %(at)s"
        " WHERE member_id = %(outbox_member)s AND programme_id = %(programme)s AND order_id = %(order)s",
        {"at": to_dt(now), "programme": programme_id, "order": order_id,
         **outbox.params(member_id, now, [NewEvent("order.voided", {"order_id": order_id})])},
    )


@dataclass(frozen=True)
class OpenHold:
    hold_id: str
    programme_id: str
    order_id: str
    points: int
    lot_ids: list[int]
    lot_points: list[int]


async def open_holds(conn: Any, member_id: str, expired_by: int | None = None) -> list[OpenHold]:
    """The member's open holds, all of them or those past their lifetime at ``expired_by``."""
    cur = await conn.execute(
        "SELECT hold_id::text, programme_id::text, order_id, points, lot_ids, lot_points FROM hold"
        " WHERE member_id = %s AND state = 'open' AND (%s::timestamptz IS NULL OR expires_at <= %s::timestamptz)"
        " ORDER BY expires_at, hold_id",
        (member_id, to_dt(expired_by), to_dt(expired_by)),
    )
    return [OpenHold(*r) for r in await cur.fetchall()]


async def release_holds(conn: Any, member_id: str, holds: Sequence[OpenHold], now: int, context: WriteContext,
                        closed_as: str) -> None:
    """Give ``holds`` back to the very lots they came from, close them as ``closed_as`` (released,
    expired) and cancel their orders."""
    if not holds:
        return
    await ledger.post(conn, member_id, now, context, [
        ledger.Entry("released", h.points, held_delta=-h.points, lots=list(zip(h.lot_ids, h.lot_points)),
                     order_id=h.order_id, hold_id=h.hold_id) for h in holds])
    for h in holds:
        await close_hold(conn, member_id, HoldClosing(h.hold_id, closed_as), now)
        await set_state(conn, member_id, h.programme_id, h.order_id, "cancelled", now)


async def cancel_unpaid(conn: Any, member_id: str, now: int, order_ids: Sequence[str] | None = None) -> None:
    """Cancel the member's orders still waiting for payment (all, or those of ``order_ids``; their
    holds released before)."""
    if order_ids is not None and not order_ids:
        return
    await conn.execute("UPDATE orders SET state = 'cancelled', cancelled_at = %s WHERE member_id = %s AND state = 'held'"
                       " AND (%s::text[] IS NULL OR order_id = ANY(%s::text[]))",
                       (to_dt(now), member_id, order_ids, order_ids))


async def set_counted(conn: Any, member_id: str, programme_id: str, order_id: str, counted: bool) -> None:
    await conn.execute(
        "UPDATE orders SET counted = %s WHERE member_id = %s AND programme_id = %s AND order_id = %s",
        (counted, member_id, programme_id, order_id),
    )


async def lines(conn: Any, member_id: str, programme_id: str, order_id: str) -> list[StoredLine]:
    cur = await conn.execute(
        "SELECT line_no, line_id, quantity, net_minor, money_due_minor, points, earned_points, refunded_quantity"
        " FROM order_line WHERE member_id = %s AND programme_id = %s AND order_id = %s ORDER BY line_no",
        (member_id, programme_id, order_id),
    )
    return [StoredLine(*r) for r in await cur.fetchall()]


async def returnable(conn: Any, member_id: str, hold_id: str, order_id: str) -> tuple[list[int], list[int]]:
    """The lots the order's spent points came from and how many of them refunds may still return there."""
    cur = await conn.execute(
        """SELECT s.lot_id, (s.points - coalesce(sum(r.points), 0))::bigint
           FROM hold h, unnest(h.lot_ids, h.lot_points) WITH ORDINALITY AS s(lot_id, points, i)
           LEFT JOIN (SELECT a.lot_id, a.points FROM movement m, unnest(m.lot_ids, m.lot_points) AS a(lot_id, points)
                      WHERE m.member_id = %(m)s AND m.kind = 'refund_return' AND m.order_id = %(o)s) r
             ON r.lot_id = s.lot_id
           WHERE h.member_id = %(m)s AND h.hold_id = %(h)s
           GROUP BY s.lot_id, s.points, s.i ORDER BY s.i""",
        {"m": member_id, "h": hold_id, "o": order_id},
    )
    rows = await cur.fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


async def insert_refund(
    conn: Any, programme_id: str, order_id: str, member_id: str, record: RefundRecord, line_nos: Sequence[int]
) -> None:
    """The refund, its event, and its units added to each line's refunded quantity."""
    event = NewEvent("order.refunded", {
        "order_id": order_id, "refund_id": record.refund_id, "money_minor": record.money_minor,
        "clawback_points": record.clawback_points, "returned_points": record.returned_points,
        "shortfall_points": record.shortfall_points, "debt_points": record.debt_points,
        "certificate_returned_points": record.certificate_returned_points,
    })
    await conn.execute(
        f"WITH {outbox.CTE} INSERT INTO refund (programme_id, order_id, member_id, refund_id, lines, money_minor,"
        " clawback_points, returned_points, shortfall_points, debt_points, certificate_returned_points, created_at)"
        " VALUES (%(programme)s, %(order)s, %(member)s, %(refund)s, %(lines)s, %(money)s, %(clawback)s, %(returned)s,"
        " %(shortfall)s, %(debt)s, %(certificates)s, %(at)s)",
        {"programme": programme_id, "order": order_id, "member": member_id, "refund": record.refund_id,
         "lines": Jsonb(to_json(record.lines)), "money": record.money_minor, "clawback": record.clawback_points,
         "returned": record.returned_points, "shortfall": record.shortfall_points, "debt": record.debt_points,
         "certificates": record.certificate_returned_points, "at": to_dt(record.created_at), **outbox.params(member_id, record.created_at, [event])},
    )
    await conn.execute(
        "UPDATE order_line l SET refunded_quantity = l.refunded_quantity + u.quantity"
        " FROM unnest(%s::int[], %s::bigint[]) AS u(line_no, quantity)"
        " WHERE l.member_id = %s AND l.programme_id = %s AND l.order_id = %s AND l.line_no = u.line_no",
        (list(line_nos), [x.quantity for x in record.lines], member_id, programme_id, order_id),
    )
