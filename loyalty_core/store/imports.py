"""Imported members, written set-based: COPY into the member-owned tables, one statement for the
lots with their movements, whatever the batch's size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loyalty_core.events import EVENT_TYPES, NewEvent, history_event, movement_event
from loyalty_core.store.convert import to_dt

# The ledger's record of an opening balance: a manual accrual (docs/membership.md "Importing members").
OPENING_BALANCE_KIND = "manual_accrual"
OPENING_BALANCE_REASON = "import"
OPENING_BALANCE_COMMENT = "opening balance"


@dataclass(frozen=True)
class NewMember:
    """One member row ready to write, with its lots, purchases, custom values and its import record."""

    member_id: str
    external_id: str
    fingerprint: bytes
    phone: str | None
    card_number: str | None
    status: str
    phone_confirmed: bool
    customer_group: str
    level_id: str | None
    accumulative_discount_bps: int
    purchases_total_minor: int
    earned_total_points: int
    enrolled_at: int
    # (points, activates_at, expires_at or None)
    lots: Sequence[tuple[int, int, int | None]]
    # (order_id, at, amount_minor, {category: minor})
    purchases: Sequence[tuple[str, int, int, dict[str, int]]]
    custom_values: dict[str, str]
    history: dict[str, Any]


async def imported(conn: Any, programme_id: str, external_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
    """external_id -> (member id, fingerprint) of the rows among ``external_ids`` imported before."""
    cur = await conn.execute(
        "SELECT external_id, member_id::text, fingerprint FROM member_import"
        " WHERE programme_id = %s AND external_id = ANY(%s)", (programme_id, list(external_ids)))
    return {e: (m, bytes(f)) for e, m, f in await cur.fetchall()}


async def taken(conn: Any, programme_id: str, phones: Sequence[str],
                cards: Sequence[str]) -> tuple[set[str], set[str]]:
    """The phones and card numbers among these that members of the programme hold (their look-ups,
    migration 0023, which the write claims too: a race raises UniqueViolation there)."""
    cur = await conn.execute(
        "SELECT 'phone', phone FROM member_phone WHERE programme_id = %(p)s AND phone = ANY(%(phones)s)"
        " UNION ALL SELECT 'card', card_number FROM member_card"
        " WHERE programme_id = %(p)s AND card_number = ANY(%(cards)s)",
        {"p": programme_id, "phones": list(phones), "cards": list(cards)})
    rows = await cur.fetchall()
    return {v for kind, v in rows if kind == "phone"}, {v for kind, v in rows if kind == "card"}


async def _copy(conn: Any, statement: str, rows: Any) -> None:
    async with conn.cursor().copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


_LOTS = f"""
WITH lots AS (
    -- A lot usable at once has nothing for the expiry run to activate.
    INSERT INTO lot (member_id, source, amount, remaining, activates_at, expires_at, created_at, activated_at)
    SELECT member_id, '{OPENING_BALANCE_KIND}', points, points, activates_at, expires_at, %(now)s,
           CASE WHEN activates_at <= %(now)s THEN %(now)s END
    FROM import_lot ORDER BY seq
    RETURNING member_id, lot_id, amount
)
-- One movement per member credits all its opening lots (each lot's allocation is its amount).
INSERT INTO movement (member_id, kind, points, lot_ids, lot_points, created_at, actor, reason_code, comment)
SELECT member_id, '{OPENING_BALANCE_KIND}', sum(amount), array_agg(lot_id ORDER BY lot_id),
       array_agg(amount ORDER BY lot_id), %(now)s, %(actor)s, '{OPENING_BALANCE_REASON}', '{OPENING_BALANCE_COMMENT}'
FROM lots GROUP BY member_id ORDER BY min(lot_id)
"""


# The members' events, as a change's own statement writes them (store/outbox.py's CTE): each new
# member's outbox counter and its events in sequence order, stamped with this transaction's id.
_EVENTS = """
WITH counters AS (
    INSERT INTO outbox_member (member_id, last_seq, last_tx)
    SELECT member_id, max(seq), pg_current_xact_id() FROM import_event GROUP BY member_id
    RETURNING member_id
)
INSERT INTO outbox_event (member_id, seq, programme_id, event_id, type, payload_version, payload, created_at, tx)
SELECT member_id, seq, %(programme)s, gen_random_uuid(), type, payload_version, payload, %(now)s, pg_current_xact_id()
FROM import_event ORDER BY member_id, seq
"""


def events_of(m: NewMember) -> list[NewEvent]:
    """What an imported member publishes: its enrolment (no welcome bonus), then its opening balance."""
    joined = history_event("enrolled", {"status": m.status, "welcome_bonus_points": 0}, "")
    assert joined is not None
    balance = sum(points for points, _, _ in m.lots)
    return [joined] + ([movement_event(OPENING_BALANCE_KIND, balance, order_id=None, hold_id=None, refund_id=None,
                                       comment=OPENING_BALANCE_COMMENT)] if balance else [])


async def _temp(conn: Any, table: str, columns: str) -> None:
    await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({columns}) ON COMMIT DELETE ROWS")


async def write(conn: Any, programme_id: str, members: Sequence[NewMember], now: int, actor: str) -> None:
    """Write the members, their import records, history, events, custom values, past purchases and
    opening balances (the lots with the movement that credits them) in the transaction on ``conn``."""
    at = to_dt(now)
    await _copy(conn, "COPY member (member_id, programme_id, phone, card_number, status, phone_confirmed,"
                " customer_group, accumulative_discount_bps, purchases_total_minor, earned_total_points, enrolled_at,"
                " level_id, level_assigned_at) FROM STDIN",
                ((m.member_id, programme_id, m.phone, m.card_number, m.status, m.phone_confirmed, m.customer_group,
                  m.accumulative_discount_bps, m.purchases_total_minor, m.earned_total_points, to_dt(m.enrolled_at),
                  m.level_id, at if m.level_id else None) for m in members))
    await _copy(conn, "COPY member_phone (phone, programme_id, member_id) FROM STDIN",
                ((m.phone, programme_id, m.member_id) for m in members if m.phone))
    await _copy(conn, "COPY member_card (card_number, programme_id, member_id) FROM STDIN",
                ((m.card_number, programme_id, m.member_id) for m in members if m.card_number))
    await _copy(conn, "COPY member_import (programme_id, external_id, member_id, fingerprint, imported_at) FROM STDIN",
                ((programme_id, m.external_id, m.member_id, m.fingerprint, at) for m in members))
    await _copy(conn, "COPY member_event (member_id, tab, kind, details, actor, created_at) FROM STDIN",
                ((m.member_id, "participation", "imported", json.dumps(m.history), actor, at) for m in members))
    await _copy(conn, "COPY member_custom_value (member_id, name, programme_id, value, updated_at) FROM STDIN",
                ((m.member_id, name, programme_id, value, at) for m in members for name, value in
                 m.custom_values.items()))
    await _copy(conn, "COPY purchase (member_id, programme_id, order_id, amount_minor, by_category,"
                " accumulative_before_bps, counted_at) FROM STDIN",
                ((m.member_id, programme_id, order_id, amount, json.dumps(parts), 0, to_dt(when))
                 for m in members for order_id, when, amount, parts in m.purchases))
    if members:
        await _temp(conn, "import_event", "member_id uuid, seq bigint, type text, payload_version int, payload jsonb")
        await _copy(conn, "COPY import_event (member_id, seq, type, payload_version, payload) FROM STDIN",
                    ((m.member_id, seq, e.type, EVENT_TYPES[e.type], json.dumps(dict(e.payload)))
                     for m in members for seq, e in enumerate(events_of(m), start=1)))
        await conn.execute(_EVENTS, {"programme": programme_id, "now": at})
    if any(m.lots for m in members):
        await _temp(conn, "import_lot", "seq bigint, member_id uuid, points bigint, activates_at timestamptz,"
                    " expires_at timestamptz")
        await _copy(conn, "COPY import_lot (seq, member_id, points, activates_at, expires_at) FROM STDIN",
                    ((i, m.member_id, points, to_dt(starts), None if ends is None else to_dt(ends))
                     for i, (m, (points, starts, ends)) in enumerate((m, lot) for m in members for lot in m.lots)))
        await conn.execute(_LOTS, {"now": at, "actor": actor})
