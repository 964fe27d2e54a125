"""Membership rows: levels, the member's level and totals, counted purchases, confirmation codes, history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from loyalty_core.events import history_event
from loyalty_core.levels import Level, LevelCategoryRule, Purchase
from loyalty_core.store import members, outbox
from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.later import Later

_LEVEL_COLUMNS = """level_id::text, programme_id::text, name, priority, customer_group, spend_needed_minor,
    category_spend_needed, spend_period_days, visits_needed, visit_period_days, privilege, cashback_bps,
    category_rules, discount_bps, pay_share_bps, created_at, updated_at"""


@dataclass(frozen=True, slots=True)
class StoredLevel:
    """A level with the times the store keeps for it."""

    level: Level
    created_at: int
    updated_at: int


def _level(row: Mapping[str, Any]) -> StoredLevel:
    rules = tuple(LevelCategoryRule(r["category"], r["cashback_bps"], r.get("pay_share_bps"))
                  for r in row["category_rules"])
    level = Level(
        level_id=row["level_id"], programme_id=row["programme_id"], name=row["name"], priority=row["priority"],
        customer_group=row["customer_group"], spend_needed_minor=row["spend_needed_minor"],
        category_spend_needed=dict(row["category_spend_needed"]), spend_period_days=row["spend_period_days"],
        visits_needed=row["visits_needed"], visit_period_days=row["visit_period_days"], privilege=row["privilege"],
        cashback_bps=row["cashback_bps"], category_rules=rules, discount_bps=row["discount_bps"],
        pay_share_bps=row["pay_share_bps"],
    )
    return StoredLevel(level, to_us(row["created_at"]), to_us(row["updated_at"]))


def _level_params(level: Level) -> tuple[Any, ...]:
    rules = [{"category": r.category, "cashback_bps": r.cashback_bps, "pay_share_bps": r.pay_share_bps}
             for r in level.category_rules]
    return (level.name, level.priority, level.customer_group, level.spend_needed_minor,
            Jsonb(dict(level.category_spend_needed)), level.spend_period_days, level.visits_needed,
            level.visit_period_days, level.privilege, level.cashback_bps, Jsonb(rules), level.discount_bps,
            level.pay_share_bps)


# -- Levels --------------------------------------------------------------------------------------

async def send_levels_of(conn: Any, programme_id: str) -> Later[list[StoredLevel]]:
    """Every level of the programme, lowest priority first, read when wanted (see store.later)."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"SELECT {_LEVEL_COLUMNS} FROM level WHERE programme_id = %s ORDER BY priority", (programme_id,))
    return Later(cur, _levels)


async def _levels(cur: Any) -> list[StoredLevel]:
    return [_level(row) for row in await cur.fetchall()]


async def levels_of(conn: Any, programme_id: str) -> list[StoredLevel]:
    return await (await send_levels_of(conn, programme_id)).get()


async def level_page(conn: Any, programme_id: str, after_priority: int, limit: int) -> list[StoredLevel]:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_LEVEL_COLUMNS} FROM level WHERE programme_id = %s AND priority > %s ORDER BY priority LIMIT %s",
        (programme_id, after_priority, limit),
    )
    return [_level(row) for row in await cur.fetchall()]


async def get_level(conn: Any, programme_id: str, level_id: str, *, lock: bool = False) -> StoredLevel | None:
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"SELECT {_LEVEL_COLUMNS} FROM level WHERE programme_id = %s AND level_id = %s" + (" FOR UPDATE" if lock else ""),
        (programme_id, level_id),
    )
    row = await cur.fetchone()
    return None if row is None else _level(row)


async def count_levels(conn: Any, programme_id: str) -> int:
    cur = await conn.execute("SELECT count(*) FROM level WHERE programme_id = %s", (programme_id,))
    return (await cur.fetchone())[0]


async def save_level(conn: Any, level: Level, now: int) -> None:
    """Insert a new level, or overwrite every mutable column of an existing one (its creation time
    stays), and raise the programme's revision; a taken priority raises psycopg's UniqueViolation."""
    await conn.execute("UPDATE programme SET revision = revision + 1 WHERE programme_id = %s", (level.programme_id,))
    await conn.execute(
        "INSERT INTO level (name, priority, customer_group, spend_needed_minor, category_spend_needed,"
        " spend_period_days, visits_needed, visit_period_days, privilege, cashback_bps, category_rules,"
        " discount_bps, pay_share_bps, programme_id, level_id, created_at, updated_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (programme_id, level_id) DO UPDATE SET name = excluded.name, priority = excluded.priority,"
        " customer_group = excluded.customer_group, spend_needed_minor = excluded.spend_needed_minor,"
        " category_spend_needed = excluded.category_spend_needed, spend_period_days = excluded.spend_period_days,"
        " visits_needed = excluded.visits_needed, visit_period_days = excluded.visit_period_days,"
        " privilege = excluded.privilege, cashback_bps = excluded.cashback_bps,"
        " category_rules = excluded.category_rules, discount_bps = excluded.discount_bps,"
        " pay_share_bps = excluded.pay_share_bps, updated_at = excluded.updated_at",
        (*_level_params(level), level.programme_id, level.level_id, to_dt(now), to_dt(now)),
    )


# -- The member's membership columns -------------------------------------------------------------

async def set_level(conn: Any, member_id: str, level_id: str | None, now: int) -> None:
    await conn.execute(
        "UPDATE member SET level_id = %s, level_assigned_at = %s WHERE member_id = %s",
        (level_id, None if level_id is None else to_dt(now), member_id),
    )


async def set_status(conn: Any, member_id: str, status: str, *, phone_confirmed: bool | None = None) -> None:
    await conn.execute(
        "UPDATE member SET status = %s, phone_confirmed = coalesce(%s, phone_confirmed) WHERE member_id = %s",
        (status, phone_confirmed, member_id),
    )


async def set_personal_discount(conn: Any, member_id: str, discount_bps: int) -> None:
    await conn.execute("UPDATE member SET personal_discount_bps = %s WHERE member_id = %s", (discount_bps, member_id))


async def set_totals(conn: Any, member_id: str, purchases_total_minor: int, accumulative_discount_bps: int,
                     accumulative_from_minor: int) -> None:
    await conn.execute(
        "UPDATE member SET purchases_total_minor = %s, accumulative_discount_bps = %s, accumulative_from_minor = %s"
        " WHERE member_id = %s",
        (purchases_total_minor, accumulative_discount_bps, accumulative_from_minor, member_id),
    )


async def set_card(conn: Any, member_id: str, programme_id: str, card_number: str | None, secret_hash: str) -> None:
    """A new card number (None keeps the number) and its secret's hash; a taken number raises
    psycopg's UniqueViolation. The old secret's wrong guesses and lock go with it."""
    if card_number is not None:
        await members.release_card(conn, member_id)
        await members.claim_card(conn, member_id, programme_id, card_number)
    await conn.execute(
        "UPDATE member SET card_number = coalesce(%s, card_number), card_secret_hash = %s WHERE member_id = %s",
        (card_number, secret_hash, member_id),
    )
    await conn.execute("DELETE FROM card_lock WHERE member_id = %s", (member_id,))


async def member_ids_after(conn: Any, programme_id: str, after: str | None, limit: int) -> list[str]:
    """The next ``limit`` members of the programme by id (off-boarded ones too), for batch runs."""
    cur = await conn.execute(
        "SELECT member_id::text FROM member WHERE programme_id = %s AND member_id > coalesce(%s::uuid, %s::uuid)"
        " ORDER BY member_id LIMIT %s",
        (programme_id, after, "00000000-0000-0000-0000-000000000000", limit),
    )
    return [row[0] for row in await cur.fetchall()]


# -- Counted purchases ---------------------------------------------------------------------------

async def purchases_since(conn: Any, member_id: str, since_us: int | None) -> list[Purchase]:
    """The member's purchases that count now, counted after ``since_us`` (None: all of them)."""
    return await (await send_purchases_since(conn, member_id, since_us)).get()


async def send_purchases_since(conn: Any, member_id: str, since_us: int | None) -> Later[list[Purchase]]:
    cur = await conn.execute(
        "SELECT counted_at, amount_minor, by_category FROM purchase WHERE member_id = %s AND uncounted_at IS NULL"
        " AND (%s::timestamptz IS NULL OR counted_at > %s::timestamptz) ORDER BY counted_at",
        (member_id, to_dt(since_us), to_dt(since_us)),
    )
    return Later(cur, _purchases)


async def _purchases(cur: Any) -> list[Purchase]:
    return [Purchase(to_us(at), amount, by_cat) for at, amount, by_cat in await cur.fetchall()]


async def send_count_purchase(conn: Any, member_id: str, programme_id: str, order_id: str, amount_minor: int,
                              by_category: Mapping[str, int], accumulative_before_bps: int,
                              purchases_total_minor: int, accumulative_discount_bps: int,
                              accumulative_from_minor: int, now: int, *, actor: str,
                              details: Mapping[str, object]) -> Later[bool]:
    """Record the purchase, set the member's totals and add its history entry, in one statement;
    False (and nothing written) when the order was counted before. Each part names the member's id
    (so that Citus runs the statement on the member's shard alone)."""
    cur = await conn.execute(
        "WITH p AS (INSERT INTO purchase (member_id, programme_id, order_id, amount_minor, by_category,"
        "   accumulative_before_bps, counted_at) VALUES (%s::uuid, %s, %s, %s, %s, %s, %s)"
        "   ON CONFLICT (member_id, order_id) DO NOTHING RETURNING member_id),"
        " m AS (UPDATE member SET purchases_total_minor = %s, accumulative_discount_bps = %s,"
        "   accumulative_from_minor = %s"
        "   WHERE member_id = %s::uuid AND member_id IN (SELECT member_id FROM p) RETURNING member_id),"
        " e AS (INSERT INTO member_event (member_id, tab, kind, details, actor, created_at)"
        "   SELECT %s::uuid, 'orders', 'purchase_counted', %s, %s, %s FROM m)"
        " SELECT count(*) FROM p",
        (member_id, programme_id, order_id, amount_minor, Jsonb(dict(by_category)), accumulative_before_bps,
         to_dt(now), purchases_total_minor, accumulative_discount_bps, accumulative_from_minor, member_id, member_id,
         _details(details), actor, to_dt(now)),
    )
    return Later(cur, _one_row_inserted)


async def _one_row_inserted(cur: Any) -> bool:
    return (await cur.fetchone())[0] == 1


async def reduce_purchase(conn: Any, member_id: str, order_id: str, amount_minor: int,
                          by_category: Mapping[str, int], now: int) -> None:
    """What the purchase counts for now; at 0 it stops counting (``uncounted_at``)."""
    await conn.execute(
        "UPDATE purchase SET amount_minor = %s, by_category = %s,"
        " uncounted_at = CASE WHEN %s = 0 THEN %s END WHERE member_id = %s AND order_id = %s",
        (amount_minor, Jsonb(dict(by_category)), amount_minor, to_dt(now), member_id, order_id),
    )


async def counted_total(conn: Any, member_id: str) -> int:
    cur = await conn.execute(
        "SELECT coalesce(sum(amount_minor), 0) FROM purchase WHERE member_id = %s AND uncounted_at IS NULL",
        (member_id,),
    )
    return int((await cur.fetchone())[0])


# -- Phone confirmation --------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Confirmation:
    phone: str
    code_hash: str
    sent_at: int
    expires_at: int
    attempts: int
    attempts_max: int
    confirmed_at: int | None


async def confirmation(conn: Any, member_id: str) -> Confirmation | None:
    cur = await conn.execute(
        "SELECT phone, code_hash, sent_at, expires_at, attempts, attempts_max, confirmed_at"
        " FROM phone_confirmation WHERE member_id = %s",
        (member_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    phone, code_hash, sent, expires, attempts, attempts_max, confirmed = row
    return Confirmation(phone, code_hash, to_us(sent), to_us(expires), attempts, attempts_max, to_us(confirmed))


# The tables of one-time codes (one row per member: the latest code sent), and the column that
# records each code's outcome (the phone confirmed, the points spent).
CODE_TABLES = {"phone_confirmation": "confirmed_at", "spend_code": "used_at"}


async def put_code(conn: Any, table: str, member_id: str, phone: str, code_hash: str, now: int, expires_at: int,
                   attempts_max: int) -> None:
    """A new code replaces the member's old one in ``table``, with its attempts and its outcome."""
    outcome = CODE_TABLES[table]
    await conn.execute(
        f"INSERT INTO {table} (member_id, phone, code_hash, sent_at, expires_at, attempts_max)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (member_id) DO UPDATE SET phone = excluded.phone,"
        " code_hash = excluded.code_hash, sent_at = excluded.sent_at, expires_at = excluded.expires_at,"
        f" attempts = 0, attempts_max = excluded.attempts_max, {outcome} = NULL",
        (member_id, phone, code_hash, to_dt(now), to_dt(expires_at), attempts_max),
    )


async def record_attempt(conn: Any, member_id: str, *, confirmed_at: int | None) -> None:
    await conn.execute(
        "UPDATE phone_confirmation SET attempts = attempts + 1, confirmed_at = %s WHERE member_id = %s",
        (to_dt(confirmed_at), member_id),
    )


async def messages_since(conn: Any, member_id: str, since_us: int) -> int:
    """Messages sent to the member after ``since_us`` (for the daily cap)."""
    cur = await conn.execute(
        "SELECT count(*) FROM member_event WHERE member_id = %s AND tab = 'messages' AND created_at > %s",
        (member_id, to_dt(since_us)),
    )
    return (await cur.fetchone())[0]


# -- Spend codes ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SpendCode:
    phone: str
    code_hash: str
    sent_at: int
    expires_at: int
    # Attempts before this one.
    attempts: int
    attempts_max: int
    used_at: int | None


async def spend_code_sent_at(conn: Any, member_id: str) -> int | None:
    """When the member's latest spend code was sent (for the resend interval)."""
    cur = await conn.execute("SELECT sent_at FROM spend_code WHERE member_id = %s", (member_id,))
    row = await cur.fetchone()
    return None if row is None else to_us(row[0])


async def count_spend_attempt(conn: Any, member_id: str, now: int) -> SpendCode | None:
    """The member's spend code as it was, its attempt counted when it can still be tried (unused,
    unexpired, attempts left): counted before it is checked, so tries in flight together cannot
    pass the limit. Runs in a transaction of its own, outside the member's row lock."""
    cur = await conn.execute(
        "WITH before AS (SELECT * FROM spend_code WHERE member_id = %s FOR UPDATE),"
        " counted AS (UPDATE spend_code s SET attempts = s.attempts + 1 FROM before b"
        "   WHERE s.member_id = b.member_id AND b.used_at IS NULL AND b.expires_at > %s"
        "   AND b.attempts < b.attempts_max)"
        " SELECT phone, code_hash, sent_at, expires_at, attempts, attempts_max, used_at FROM before",
        (member_id, to_dt(now)),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    phone, code_hash, sent, expires, attempts, attempts_max, used = row
    return SpendCode(phone, code_hash, to_us(sent), to_us(expires), attempts, attempts_max, to_us(used))


async def use_spend_code(conn: Any, member_id: str, sent_at: int, now: int) -> bool:
    """Mark the code sent at ``sent_at`` used; False when it was used (or replaced) meanwhile."""
    cur = await conn.execute(
        "UPDATE spend_code SET used_at = %s WHERE member_id = %s AND sent_at = %s AND used_at IS NULL"
        " RETURNING 1",
        (to_dt(now), member_id, to_dt(sent_at)),
    )
    return await cur.fetchone() is not None


# -- History -------------------------------------------------------------------------------------

async def add_event(conn: Any, member_id: str, tab: str, kind: str, now: int, *, actor: str,
                    details: Mapping[str, object] | None = None, comment: str = "") -> None:
    """Append one history entry, and its event to the outbox when it publishes one
    (``events.history_event``); detail values are kept as strings (the API shows them so)."""
    event = history_event(kind, details or {}, comment)
    await conn.execute(
        f"WITH {outbox.CTE} INSERT INTO member_event (member_id, tab, kind, details, comment, actor, created_at)"
        " VALUES (%(member)s, %(tab)s, %(kind)s, %(details)s, %(comment)s, %(actor)s, %(now)s)",
        {"member": member_id, "tab": tab, "kind": kind, "details": _details(details or {}), "comment": comment,
         "actor": actor, "now": to_dt(now), **outbox.params(member_id, now, [event] if event else [])},
    )


def _details(details: Mapping[str, object]) -> Jsonb:
    return Jsonb({k: str(v) for k, v in details.items()})
