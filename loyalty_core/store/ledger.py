"""The ledger's writes: movements with their lot allocations, and the lots and counters they change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalty_core import observe
from loyalty_core.calc import NEVER
from loyalty_core.events import NewEvent, movement_event
from loyalty_core.levels import Purchase
from loyalty_core.model import LotAllocation, LotRecord, Member, MemberRef, PendingActivation, WriteContext
from loyalty_core.store import outbox
from loyalty_core.store.convert import to_dt, uuid_array
from loyalty_core.store.event_bonus import BEST_DISCOUNT
from loyalty_core.store.later import Later
from loyalty_core.store.members import SELECT_MEMBER, key_condition, member_key, row_to_member

# In an Entry's allocations, the lot that the same post creates (identity ids start at 1).
NEW_LOT = 0

# How each all-time total on the member follows from its movements: `post` adds these sums over
# the movements it inserts, `verify` compares them over the whole ledger. A debt repaid by earned
# points counts as earned: the points were earned, then went to the debt instead of a lot.
TOTALS_SQL = {
    "earned_total_points": "coalesce(sum(CASE WHEN kind IN ('earned', 'welcome', 'manual_accrual', 'event_bonus')"
    " THEN points WHEN kind = 'debt_repaid' THEN -debt_delta ELSE 0 END), 0)",
    "spent_total_points": "coalesce(sum(CASE WHEN kind = 'spent' THEN -(points + held_delta) ELSE 0 END), 0)",
    "expired_total_points": "coalesce(sum(CASE WHEN kind = 'expired' THEN -points ELSE 0 END), 0)",
    "held_points": "coalesce(sum(held_delta), 0)",
    "debt_points": "coalesce(sum(debt_delta), 0)",
}


@dataclass(frozen=True)
class Entry:
    """One movement to append: ``points`` moves in or out of lots (``lots`` says which, signed),
    ``held_delta`` and ``debt_delta`` change the member's held points and debt."""

    kind: str
    points: int
    held_delta: int = 0
    debt_delta: int = 0
    lots: Sequence[tuple[int, int]] = ()
    order_id: str | None = None
    hold_id: str | None = None
    refund_id: str | None = None
    comment: str = ""


@dataclass(frozen=True)
class NewLot:
    source: str
    amount: int
    activates_at: int
    expires_at: int
    order_id: str | None = None


@dataclass(frozen=True)
class Lots:
    """A member's lots with points left, as the parallel arrays calc takes (expiry NEVER for none)."""

    lot_ids: list[int]
    remaining: list[int]
    activates_at: list[int]
    expires_at: list[int]


@dataclass(frozen=True)
class Posted:
    movement_ids: list[int]
    lot_id: int | None


# A lot given points back (a release, a refund's return) has something to burn again; one an
# expiry burnt is marked burnt then.
_LOTS_UPDATE = """UPDATE lot SET remaining = lot.remaining + d.delta,
                   expired_at = CASE WHEN d.delta > 0 THEN NULL WHEN d.burnt THEN %(now)s ELSE lot.expired_at END"""

# What both posts read of each entry (``_entry_row``) and where they write it.
_ENTRY_COLUMNS = ("seq int, kind text, points bigint, held_delta bigint, debt_delta bigint, lot_ids bigint[],"
                  " lot_points bigint[], order_id text, hold_id uuid, refund_id uuid, comment text")
_MOVEMENT_INSERT = """INSERT INTO movement (member_id, kind, points, held_delta, debt_delta, lot_ids, lot_points,
                          order_id, hold_id, refund_id, created_at, actor, store_id, terminal_id,
                          reason_code, correlation_id, comment)"""

_POST = f"""
WITH new_lot AS (
    -- A lot usable at once has nothing for the expiry run to activate.
    INSERT INTO lot (member_id, source, amount, remaining, activates_at, expires_at, order_id, created_at,
                     activated_at)
    SELECT %(member_id)s, %(lot_source)s, %(lot_amount)s, %(lot_amount)s, %(lot_activates_at)s,
           %(lot_expires_at)s, %(lot_order_id)s, %(now)s,
           CASE WHEN %(lot_activates_at)s <= %(now)s THEN %(now)s END
    WHERE %(lot_source)s::text IS NOT NULL
    RETURNING lot_id
), e AS (
    SELECT * FROM jsonb_to_recordset(%(entries)s) AS e({_ENTRY_COLUMNS})
), moved AS (
    {_MOVEMENT_INSERT}
    SELECT %(member_id)s, e.kind, e.points, e.held_delta, e.debt_delta,
           ARRAY(SELECT CASE WHEN u.x = {NEW_LOT} THEN (SELECT lot_id FROM new_lot) ELSE u.x END
                 FROM unnest(e.lot_ids) WITH ORDINALITY AS u(x, i) ORDER BY u.i),
           e.lot_points, e.order_id, e.hold_id, e.refund_id, %(now)s, %(actor)s, %(store_id)s,
           %(terminal_id)s, %(reason_code)s, %(correlation_id)s, e.comment
    FROM e ORDER BY e.seq
    RETURNING movement_id
), lot_delta AS (
    SELECT a.lot_id, sum(a.points) AS delta, bool_or(e.kind = 'expired') AS burnt
    FROM e, unnest(e.lot_ids, e.lot_points) AS a(lot_id, points)
    WHERE a.lot_id <> {NEW_LOT}
    GROUP BY a.lot_id
), lots AS (
    {_LOTS_UPDATE}
    FROM lot_delta d
    WHERE lot.member_id = %(member_id)s AND lot.lot_id = d.lot_id
    RETURNING lot.lot_id
), counters AS (
    UPDATE member SET {", ".join(f"{c} = {c} + (SELECT {expr} FROM e)" for c, expr in TOTALS_SQL.items())}
    WHERE member_id = %(member_id)s
    RETURNING member_id
), {outbox.CTE}
SELECT (SELECT lot_id FROM new_lot), (SELECT array_agg(movement_id ORDER BY movement_id) FROM moved),
       (SELECT count(*) FROM lots), (SELECT count(*) FROM counters)
"""


def _entry_row(seq: int, e: Entry) -> dict[str, Any]:
    """``e`` as a row of ``_ENTRY_COLUMNS``."""
    return {"seq": seq, "kind": e.kind, "points": e.points, "held_delta": e.held_delta, "debt_delta": e.debt_delta,
            "lot_ids": [lot for lot, _ in e.lots], "lot_points": [pts for _, pts in e.lots],
            "order_id": e.order_id, "hold_id": e.hold_id, "refund_id": e.refund_id, "comment": e.comment}


def _event(e: Entry) -> NewEvent:
    # The points as the history shows them (history.API_POINTS_SQL): held and released carry the
    # amount moved, the others their change of the member's points.
    points = abs(e.held_delta) if e.kind in ("held", "released") else e.points + e.held_delta - e.debt_delta
    return movement_event(e.kind, points, order_id=e.order_id, hold_id=e.hold_id, refund_id=e.refund_id,
                          comment=e.comment)


async def _posted(cur: Any) -> Posted:
    lot_id, movement_ids, _, _ = await cur.fetchone()
    return Posted(list(movement_ids or []), lot_id)


async def post(
    conn: Any,
    member_id: str,
    now: int,
    context: WriteContext,
    entries: Sequence[Entry],
    new_lot: NewLot | None = None,
) -> Later[Posted]:
    """Append ``entries`` and apply them in one statement: lots' remaining by their allocations, the
    member's held points, debt and totals by ``TOTALS_SQL``, and ``new_lot`` created for the
    allocations to ``NEW_LOT``, and each movement's event in the outbox. The member row must be
    locked by the caller. Read the ids only when
    needed: in pipeline mode the statement then travels with the transaction's next round trip."""
    rows = [_entry_row(i, e) for i, e in enumerate(entries)]
    cur = await conn.execute(
        _POST,
        {
            "member_id": member_id, "now": to_dt(now), "entries": Jsonb(rows),
            "lot_source": new_lot.source if new_lot else None,
            "lot_amount": new_lot.amount if new_lot else None,
            "lot_activates_at": to_dt(new_lot.activates_at) if new_lot else None,
            "lot_expires_at": to_dt(new_lot.expires_at) if new_lot else None,
            "lot_order_id": new_lot.order_id if new_lot else None,
            "actor": context.actor, "store_id": context.store_id, "terminal_id": context.terminal_id,
            "reason_code": context.reason_code, "correlation_id": context.correlation_id,
            **outbox.params(member_id, now, [_event(e) for e in entries]),
        },
    )
    _observe(entries)
    return Later(cur, _posted)


def _observe(entries: Sequence[Entry]) -> None:
    for e in entries:
        # The points each kind moves, as TOTALS_SQL counts them; reported once the transaction commits.
        moved = {"spent": -(e.points + e.held_delta), "expired": -e.points, "held": e.held_delta}.get(e.kind, e.points)
        if moved > 0:
            observe.points_moved(e.kind, moved)


# ``_POST`` for the entries of many members, without new lots: a batch job's (the expiry run's).
_POST_MANY = f"""
WITH e AS (
    SELECT * FROM jsonb_to_recordset(%(entries)s) AS e({_ENTRY_COLUMNS}, member_id uuid, event jsonb, i int, n int)
), moved AS (
    {_MOVEMENT_INSERT}
    SELECT e.member_id, e.kind, e.points, e.held_delta, e.debt_delta, e.lot_ids, e.lot_points, e.order_id,
           e.hold_id, e.refund_id, %(now)s, %(actor)s, %(store_id)s, %(terminal_id)s, %(reason_code)s,
           %(correlation_id)s, e.comment
    FROM e ORDER BY e.seq
    RETURNING 1
), lot_delta AS (
    SELECT e.member_id, a.lot_id, sum(a.points) AS delta, bool_or(e.kind = 'expired') AS burnt
    FROM e, unnest(e.lot_ids, e.lot_points) AS a(lot_id, points)
    GROUP BY e.member_id, a.lot_id
), lots AS (
    {_LOTS_UPDATE}
    FROM lot_delta d
    -- The members named outright: the planner then reads their lots by index, not every lot.
    WHERE lot.member_id = ANY(%(members)s::uuid[]) AND lot.member_id = d.member_id AND lot.lot_id = d.lot_id
    RETURNING 1
), totals AS (
    SELECT member_id, {", ".join(f"{expr} AS {c}" for c, expr in TOTALS_SQL.items())} FROM e GROUP BY member_id
), counters AS (
    UPDATE member SET {", ".join(f"{c} = member.{c} + t.{c}" for c in TOTALS_SQL)}
    FROM totals t WHERE member.member_id = t.member_id
    RETURNING 1
), outbox_in AS (
    SELECT member_id, i, n, event AS e FROM e
), {outbox.CTE_MANY}
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM lots), (SELECT count(*) FROM counters)
"""


async def post_many(conn: Any, now: int, context: WriteContext, entries: dict[str, Sequence[Entry]]) -> None:
    """``post`` for many members in one statement: ``entries`` by member id, none creating a lot.
    Each member's row must be locked by the caller. One member's entries go through ``post``,
    whose statement Citus routes to the member's shard."""
    if len(entries) == 1:
        [(member_id, member_entries)] = entries.items()
        await post(conn, member_id, now, context, member_entries)
        return
    rows = []
    for member_id, member_entries in entries.items():
        for i, e in enumerate(member_entries, 1):
            assert all(lot != NEW_LOT for lot, _ in e.lots), "post_many creates no lot"
            rows.append({**_entry_row(len(rows), e), "member_id": member_id,
                         "event": outbox.event_json(_event(e)), "i": i, "n": len(member_entries)})
        _observe(member_entries)
    if rows:
        await conn.execute(_POST_MANY, {
            "now": to_dt(now), "entries": Jsonb(rows), "outbox_now": to_dt(now), "members": uuid_array(list(entries)),
            "actor": context.actor, "store_id": context.store_id, "terminal_id": context.terminal_id,
            "reason_code": context.reason_code, "correlation_id": context.correlation_id,
        })


def _us(column: str) -> str:
    """A timestamptz column as int64 microseconds since the epoch, computed by PostgreSQL (exactly),
    so no datetime is made and taken apart for each lot."""
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


# What calc needs of a lot with points left: its times in microseconds, one that never expires as
# calc's NEVER. ``_LOTS`` ends where the member's id goes.
LOT_COLUMNS = (f"lot_id, remaining, {_us('activates_at')} AS activates_us,"
               f" coalesce({_us('expires_at')}, {NEVER}) AS expires_us")
_LOTS = f"SELECT {LOT_COLUMNS} FROM lot WHERE remaining > 0 AND member_id = "


async def _lots(cur: Any) -> Lots:
    rows = await cur.fetchall()
    return Lots([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])


async def lots(conn: Any, member_id: str) -> Lots:
    """The member's lots with points left, pending ones included (calc decides what is usable)."""
    return await _lots(await conn.execute(_LOTS + "%s ORDER BY lot_id", (member_id,)))


_LOT_RECORD = (f"SELECT lot_id, source, amount, remaining, {_us('activates_at')}, coalesce({_us('expires_at')}, {NEVER}),"
               f" coalesce(order_id, ''), {_us('created_at')}, {_us('expired_at')} FROM lot WHERE member_id = %s")


async def lot_records(conn: Any, member_id: str, *, after: int, limit: int, with_points_left: bool,
                      lot_ids: Sequence[int] = ()) -> list[LotRecord]:
    """The member's lots by id after ``after`` (oldest first), or those of ``lot_ids``."""
    query = _LOT_RECORD + " AND lot_id > %s"
    params: list[Any] = [member_id, after]
    if lot_ids:
        query += " AND lot_id = ANY(%s)"
        params.append(list(lot_ids))
    if with_points_left:
        query += " AND remaining > 0"
    cur = await conn.execute(query + " ORDER BY lot_id LIMIT %s", (*params, limit))
    return [LotRecord(*row) for row in await cur.fetchall()]


async def pending_activations(conn: Any, member_id: str, as_of: int) -> list[PendingActivation]:
    """Lots with points left that are not usable yet at ``as_of``, soonest first."""
    cur = await conn.execute(
        f"SELECT {_us('activates_at')}, source, remaining, coalesce(order_id, '') FROM lot"
        " WHERE member_id = %s AND remaining > 0 AND activates_at > %s ORDER BY activates_at, lot_id",
        (member_id, to_dt(as_of)),
    )
    return [PendingActivation(*row) for row in await cur.fetchall()]


async def send_lots_of(conn: Any, programme_id: str, ref: MemberRef) -> Later[Lots]:
    """:func:`lots` of the member ``ref`` names, to send right after the query that locks the member."""
    key = await member_key(conn, programme_id, ref)
    condition, values = key_condition(programme_id, ref, key)
    # The key itself beside the subquery: Citus routes the statement to the member's shard.
    cur = await conn.execute(
        _LOTS + f"{key[0]} AND member_id IN (SELECT member_id FROM member WHERE {condition}) ORDER BY lot_id",
        (*key[1], *values),
    )
    return Later(cur, _lots)


# ``member_lots_and_purchases``'s ask for no purchases.
NO_PURCHASES = -1


async def member_and_lots(conn: Any, programme_id: str, ref: MemberRef,
                          now: int) -> tuple[Member | None, Lots, int]:
    """The member ``ref`` names, its lots with points left (pending ones included) and its largest
    event discount usable at ``now`` (store.event_bonus.BEST_DISCOUNT), in one statement and one row: the
    lots come as four arrays (times in microseconds, a lot that never expires as calc's NEVER), so a
    quote decodes the member's columns once however many lots it has."""
    account = await member_lots_and_purchases(conn, programme_id, ref, now, NO_PURCHASES)
    return account.member, account.lots, account.event_discount_bps


@dataclass(frozen=True, slots=True)
class MemberAccount:
    """What ``member_lots_and_purchases`` reads of one member in one statement."""

    member: Member | None
    lots: Lots
    event_discount_bps: int
    purchases: list[Purchase]
    # The member's custom field values by name (only when asked for).
    custom_values: dict[str, str]


# The member's custom field values by name, as one more column of member_lots_and_purchases.
_CUSTOM_VALUES = (", (SELECT coalesce(jsonb_object_agg(name, value), '{{}}') FROM member_custom_value"
                  " WHERE member_id = {member}) AS custom__values")


async def member_lots_and_purchases(
    conn: Any, programme_id: str, ref: MemberRef, now: int, purchases_since_us: int | None, *,
    with_custom_values: bool = False,
) -> MemberAccount:
    """``member_and_lots`` and, in the same statement, the member's purchases that count now counted
    after ``purchases_since_us`` (None: all of them; ``NO_PURCHASES``: none asked for, none read) and,
    ``with_custom_values``, their custom field values by name (else none read)."""
    # The member's key in every table's condition, not m.member_id: Citus then routes the whole
    # statement to the member's shard.
    key = await member_key(conn, programme_id, ref)
    member, member_values = key
    condition, condition_values = key_condition(programme_id, ref, key)
    with_purchases = purchases_since_us != NO_PURCHASES
    purchases = (
        ", p.purchases AS purchase__rows" if with_purchases else "",
        ", LATERAL (SELECT coalesce(jsonb_agg(jsonb_build_array("
        f"{_us('counted_at')}, amount_minor, by_category) ORDER BY counted_at), '[]') AS purchases FROM purchase"
        f" WHERE member_id = {member} AND uncounted_at IS NULL"
        " AND (%s::timestamptz IS NULL OR counted_at > %s::timestamptz)) p" if with_purchases else "",
    )
    since = to_dt(purchases_since_us) if with_purchases else None
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT m.*, coalesce(a.ids, '{{}}') AS lot__ids, coalesce(a.remaining, '{{}}') AS lot__remaining,"
        f" coalesce(a.activates, '{{}}') AS lot__activates_at, coalesce(a.expires, '{{}}') AS lot__expires_at,"
        f" ({BEST_DISCOUNT}{member}) AS event__discount_bps{purchases[0]}"
        f"{_CUSTOM_VALUES.format(member=member) if with_custom_values else ''}"
        f" FROM ({SELECT_MEMBER} WHERE {condition}) m, LATERAL ("
        "   SELECT array_agg(l.lot_id ORDER BY l.lot_id) AS ids, array_agg(l.remaining ORDER BY l.lot_id) AS remaining,"
        "   array_agg(l.activates_us ORDER BY l.lot_id) AS activates, array_agg(l.expires_us ORDER BY l.lot_id) AS expires"
        f"   FROM ({_LOTS}{member}) l) a{purchases[1]}",
        (to_dt(now), *member_values, *(member_values if with_custom_values else ()), *condition_values,
         *member_values, *((*member_values, since, since) if with_purchases else ())),
    )
    row = await cur.fetchone()
    if row is None:
        return MemberAccount(None, Lots([], [], [], []), 0, [], {})
    lots = Lots(row.pop("lot__ids"), row.pop("lot__remaining"), row.pop("lot__activates_at"),
                row.pop("lot__expires_at"))
    event_discount_bps = row.pop("event__discount_bps")
    bought = [Purchase(at, amount, by_category) for at, amount, by_category in row.pop("purchase__rows", [])]
    values = row.pop("custom__values", {})
    return MemberAccount(row_to_member(row), lots, event_discount_bps, bought, values)


def allocations(lot_ids: Sequence[int], lot_points: Sequence[int]) -> tuple[LotAllocation, ...]:
    return tuple(LotAllocation(i, p) for i, p in zip(lot_ids, lot_points))
