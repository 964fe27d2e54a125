"""A member's personal data: erased in place, the amounts kept under the member's id, or gathered into one document."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from loyalty_core.store import idempotency, members
from loyalty_core.store.convert import to_dt

# History details that hold personal data, whatever the event: a phone, a message's text, a card.
PERSONAL_DETAILS = ("phone", "text", "card_number")
# Events whose "from" and "to" are personal: card numbers, phones, customer groups, custom field
# values (elsewhere they are statuses or rates, kept).
PERSONAL_CHANGES = ("virtual_card_generated", "data_changed", "custom_field_changed")


@dataclass(frozen=True)
class ErasedRows:
    """How many of the member's rows lost personal data: counts only, so history may keep them."""

    history_events: int
    movements: int
    idempotency_keys: int


async def erase(conn: Any, member_id: str, now: int) -> ErasedRows:
    """Erase the member's personal data: phone, card and secret go from the member row (so both are free
    for a new enrolment), with the customer group; the pending phone confirmation, the spend code and the
    card's lockout and the custom field values go; event grants stay as they are (codes, occurrences,
    amounts: nothing personal); history keeps its events without comments and personal details;
    movements and the outbox's events keep everything but their comment; the member's idempotency
    keys keep neither fingerprint nor result. The member is off-boarded if they were not. The caller
    holds the member's row lock."""
    await conn.execute(
        "UPDATE member SET phone = NULL, card_number = NULL, card_secret_hash = NULL, customer_group = '',"
        " erased_at = %(now)s, offboarded_at = coalesce(offboarded_at, %(now)s) WHERE member_id = %(m)s",
        {"now": to_dt(now), "m": member_id},
    )
    await members.release_phone(conn, member_id)
    await members.release_card(conn, member_id)
    await conn.execute("DELETE FROM phone_confirmation WHERE member_id = %s", (member_id,))
    await conn.execute("DELETE FROM spend_code WHERE member_id = %s", (member_id,))
    await conn.execute("DELETE FROM card_lock WHERE member_id = %s", (member_id,))
    await conn.execute("DELETE FROM member_custom_value WHERE member_id = %s", (member_id,))
    # Only rows that hold something to erase are rewritten (the triggers allow exactly this change).
    events = await counted(
        conn, "UPDATE member_event SET comment = '',"
        " details = (CASE WHEN kind = ANY(%(cards)s) THEN details - 'from' - 'to' ELSE details END) - %(keys)s::text[]"
        " WHERE member_id = %(m)s AND (comment <> '' OR details ?| %(keys)s::text[] OR kind = ANY(%(cards)s))",
        {"m": member_id, "keys": list(PERSONAL_DETAILS), "cards": list(PERSONAL_CHANGES)},
    )
    movements = await counted(conn, "UPDATE movement SET comment = '' WHERE member_id = %(m)s AND comment <> ''",
                              {"m": member_id})
    # A certificate's note and a cancel's reason are the issuer's free text, as a movement's comment is.
    await conn.execute("UPDATE certificate SET note = '', end_reason = '' WHERE member_id = %s", (member_id,))
    movements += await counted(conn, "UPDATE certificate_movement SET comment = '' WHERE member_id = %(m)s"
                               " AND comment <> ''", {"m": member_id})
    # The outbox keeps the events not yet delivered or purged: their comments go too (docs/events.md).
    await conn.execute("UPDATE outbox_event SET payload = jsonb_set(payload, '{comment}', '\"\"')"
                       " WHERE member_id = %s AND payload->>'comment' <> ''", (member_id,))
    keys = await idempotency.erase_member(conn, member_id)
    return ErasedRows(events, movements, keys)


async def counted(conn: Any, statement: str, params: dict[str, Any]) -> int:
    """Run an UPDATE or DELETE and count its rows (a pipelined cursor has no rowcount to read)."""
    cur = await conn.execute(f"WITH done AS ({statement} RETURNING 1) SELECT count(*) FROM done", params)
    return int((await cur.fetchone())[0])


# Everything held about one member, as one JSON document (docs/trust.md "Members' data"): every row of
# every member-owned table but the idempotency keys, secrets' hashes left out. Times are ISO 8601.
# Every table's condition names the member's id itself (%(m)s), not m.member_id: Citus then runs the
# whole statement on the member's shard.
_ROWS = ("coalesce((SELECT jsonb_agg(to_jsonb(t) ORDER BY {order}) FROM {table} t"
         " WHERE t.member_id = %(m)s), '[]')")
_EXPORT = f"""
SELECT jsonb_build_object(
    'member', to_jsonb(m) - 'card_secret_hash',
    'card', CASE WHEN m.card_number IS NULL THEN NULL ELSE jsonb_build_object(
        'card_number', m.card_number, 'has_secret', m.card_secret_hash IS NOT NULL,
        'wrong_secrets', cl.failures, 'locked_until', cl.locked_until) END,
    'level', (SELECT to_jsonb(l) FROM level l WHERE l.programme_id = m.programme_id AND l.level_id = m.level_id),
    'discounts', jsonb_build_object(
        'personal_discount_bps', m.personal_discount_bps, 'accumulative_discount_bps', m.accumulative_discount_bps,
        'purchases_total_minor', m.purchases_total_minor),
    'phone_confirmation', (SELECT to_jsonb(pc) - 'code_hash' FROM phone_confirmation pc
                           WHERE pc.member_id = %(m)s),
    'spend_code', (SELECT to_jsonb(sc) - 'code_hash' FROM spend_code sc WHERE sc.member_id = %(m)s),
    'lots', {_ROWS.format(order="t.lot_id", table="lot")},
    'holds', {_ROWS.format(order="t.created_at, t.hold_id", table="hold")},
    'movements', {_ROWS.format(order="t.movement_id", table="movement")},
    'orders', coalesce((SELECT jsonb_agg(to_jsonb(o) || jsonb_build_object(
        'lines', coalesce((SELECT jsonb_agg(to_jsonb(ol) ORDER BY ol.line_no) FROM order_line ol
                           WHERE ol.member_id = %(m)s AND ol.programme_id = o.programme_id
                             AND ol.order_id = o.order_id), '[]'),
        'refunds', coalesce((SELECT jsonb_agg(to_jsonb(r) ORDER BY r.created_at, r.refund_id) FROM refund r
                             WHERE r.member_id = %(m)s AND r.programme_id = o.programme_id
                               AND r.order_id = o.order_id), '[]'))
        ORDER BY o.created_at, o.order_id) FROM orders o WHERE o.member_id = %(m)s), '[]'),
    'purchases', {_ROWS.format(order="t.counted_at, t.order_id", table="purchase")},
    'custom_fields', {_ROWS.format(order="t.name", table="member_custom_value")},
    'certificates', coalesce((SELECT jsonb_agg(to_jsonb(t) - 'code_hash' ORDER BY t.issued_at, t.certificate_id)
                              FROM certificate t WHERE t.member_id = %(m)s), '[]'),
    'certificate_movements', {_ROWS.format(order="t.movement_id", table="certificate_movement")},
    'event_grants', {_ROWS.format(order="t.granted_at, t.event_code, t.occurrence_key", table="event_grant")},
    'history', {_ROWS.format(order="t.event_id", table="member_event")},
    'events', {_ROWS.format(order="t.seq", table="outbox_event")},
    'expiry_notices', {_ROWS.format(order="t.expires_on, t.days_before", table="expiry_notice")}
)
FROM member m LEFT JOIN card_lock cl ON cl.member_id = %(m)s
WHERE m.programme_id = %(p)s AND m.member_id = %(m)s
"""


async def export(conn: Any, programme_id: str, member_id: str) -> dict[str, Any] | None:
    """The member's document, None when the programme has no such member."""
    cur = await conn.execute(_EXPORT, {"p": programme_id, "m": member_id})
    row = await cur.fetchone()
    if row is None:
        return None
    # Read apart: on Citus the import's look-up lives on other shards (by external id) than the member.
    cur = await conn.execute("SELECT to_jsonb(t) - 'fingerprint' FROM member_import t WHERE t.member_id = %s"
                             " ORDER BY t.external_id", (member_id,))
    return {**row[0], "imported_as": [imported for imported, in await cur.fetchall()]}


def as_text(document: dict[str, Any]) -> str:
    """The document as the API and the command line give it: JSON, keys sorted, one line."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
