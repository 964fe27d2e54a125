"""Member rows: enrol, find (and lock) by id, phone or card, off-board."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.rows import dict_row

from loyalty_core.model import Member, MemberFilter, MemberRef
from loyalty_core.store.convert import to_dt, to_us, uuid_array
from loyalty_core.store.db import on_citus
from loyalty_core.store.later import Later

_SELECT = """SELECT member_id::text, programme_id::text, phone, card_number, status, phone_confirmed,
    customer_group, personal_discount_bps, accumulative_discount_bps, purchases_total_minor, held_points,
    debt_points, earned_total_points, spent_total_points, expired_total_points, enrolled_at, offboarded_at,
    card_secret_hash IS NOT NULL AS has_card_secret, level_id::text, level_assigned_at, erased_at,
    accumulative_from_minor, store_id FROM member"""

SELECT_MEMBER = _SELECT

# The keys of the phone and card look-ups (migration 0023), and the rule each one enforces.
UNIQUE_RULES = {"member_phone_taken": "phone_taken", "member_card_taken": "card_number_taken"}

# A member's phone and card claimed in their look-ups: the key of each is the programme's unique value.
_CLAIM_PHONE = "INSERT INTO member_phone (phone, programme_id, member_id) SELECT %s, %s, %s WHERE %s::text IS NOT NULL"
_CLAIM_CARD = ("INSERT INTO member_card (card_number, programme_id, member_id) SELECT %s, %s, %s"
               " WHERE %s::text IS NOT NULL")


def row_to_member(row: dict[str, Any]) -> Member:
    row["enrolled_at"] = to_us(row["enrolled_at"])
    row["offboarded_at"] = to_us(row["offboarded_at"])
    row["level_assigned_at"] = to_us(row["level_assigned_at"])
    row["erased_at"] = to_us(row["erased_at"])
    return Member(**row)


async def insert(
    conn: Any, member_id: str, programme_id: str, phone: str | None, card_number: str | None,
    card_secret_hash: str | None, status: str, customer_group: str, now: int, store_id: str = "",
) -> None:
    """Insert, with the phone's and card's look-ups; a taken phone or card raises psycopg's
    UniqueViolation (see ``UNIQUE_RULES``)."""
    await conn.execute(_CLAIM_PHONE, (phone, programme_id, member_id, phone))
    await claim_card(conn, member_id, programme_id, card_number)
    await conn.execute(
        "INSERT INTO member (member_id, programme_id, phone, card_number, card_secret_hash, status,"
        " customer_group, enrolled_at, store_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (member_id, programme_id, phone, card_number, card_secret_hash, status, customer_group, to_dt(now),
         store_id),
    )


# The member id no member has: what a look-up that found nothing routes to.
NO_MEMBER = "00000000-0000-0000-0000-000000000000"


def _lookup(ref: MemberRef) -> tuple[str, str, str]:
    """The look-up table (migration 0023) of a phone or card ref, its column and value."""
    if ref.phone:
        return "member_phone", "phone", ref.phone
    return "member_card", "card_number", ref.card_number


async def member_key(conn: Any, programme_id: str, ref: MemberRef) -> tuple[str, tuple[str, ...]]:
    """SQL naming the id of ``ref``'s member of the programme, and its values. A phone or card names
    the member its look-up row holds: on one PostgreSQL in a subquery (not correlated, so the look-up
    is read once and the member by its key, no round trip of its own); on Citus the look-up is read
    first (a round trip), so that the statements name the member's id and run on its shard alone."""
    if ref.member_id:
        return "%s::uuid", (ref.member_id,)
    table, column, value = _lookup(ref)
    return await _looked_up(conn, table, column, value, programme_id)


async def _looked_up(conn: Any, table: str, column: str, value: str,
                     programme_id: str) -> tuple[str, tuple[str, ...]]:
    """SQL naming the member id that the look-up ``table`` holds for ``value``, and its values: a
    subquery on one PostgreSQL, the id read first on Citus (see ``member_key``)."""
    if await on_citus(conn):
        cur = await conn.execute(f"SELECT member_id::text FROM {table} WHERE {column} = %s AND programme_id = %s",
                                 (value, programme_id))
        row = await cur.fetchone()
        return "%s::uuid", (row[0] if row else NO_MEMBER,)
    return f"(SELECT member_id FROM {table} WHERE {column} = %s AND programme_id = %s)", (value, programme_id)


def key_condition(programme_id: str, ref: MemberRef, key: tuple[str, tuple[str, ...]]) -> tuple[str, tuple[str, ...]]:
    """The SQL condition on ``member`` naming ``ref``'s member by its ``member_key``, and its values; a
    phone or card is checked on the member row too (on Citus the look-up was read a statement before)."""
    sql, values = key
    condition, values = f"programme_id = %s AND member_id = {sql}", (programme_id, *values)
    if not ref.member_id:
        _, column, value = _lookup(ref)
        condition, values = f"{condition} AND {column} = %s", (*values, value)
    return condition, values


async def ref_condition(conn: Any, programme_id: str, ref: MemberRef) -> tuple[str, tuple[str, ...]]:
    """``key_condition`` of the ``member_key`` of ``ref``."""
    return key_condition(programme_id, ref, await member_key(conn, programme_id, ref))


async def find(conn: Any, programme_id: str, ref: MemberRef, *, lock: bool = False) -> Member | None:
    """The member ``ref`` names in the programme; ``lock`` takes the member's row lock (FOR UPDATE),
    which every write to the member's points holds until it commits."""
    condition, values = await ref_condition(conn, programme_id, ref)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_SELECT} WHERE {condition}" + (" FOR UPDATE" if lock else ""), values)
    row = await cur.fetchone()
    return None if row is None else row_to_member(row)


# A locked member comes with its programme's revision, read in the same statement (no round trip
# of its own): a write prices with this process's copy of the programme when the revisions agree.
_SELECT_LOCKED = _SELECT.replace(
    " FROM member", ", (SELECT revision FROM programme p WHERE p.programme_id = member.programme_id)"
    " AS programme_revision FROM member")


async def _locked(cur: Any) -> tuple[Member | None, int | None]:
    """The locked member and its programme's revision; (None, None) when no member matched."""
    row = await cur.fetchone()
    if row is None:
        return None, None
    revision = row.pop("programme_revision")
    return row_to_member(row), revision


async def send_lock(conn: Any, programme_id: str, ref: MemberRef) -> Later[tuple[Member | None, int | None]]:
    """Lock the member ``ref`` names (FOR UPDATE, which every write to the member's points holds
    until it commits); read with its programme's revision."""
    condition, values = await ref_condition(conn, programme_id, ref)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_SELECT_LOCKED} WHERE {condition} FOR UPDATE", values)
    return Later(cur, _locked)


async def send_lock_of_order(conn: Any, member: tuple[str, tuple[str, ...]]) -> Later[tuple[Member | None, int | None]]:
    """Lock the member an order belongs to (every write to an order holds its lock); read with its
    programme's revision."""
    sql, values = member
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_SELECT_LOCKED} WHERE member_id = {sql} FOR UPDATE", values)
    return Later(cur, _locked)


async def order_member(conn: Any, programme_id: str, order_id: str) -> tuple[str, tuple[str, ...]]:
    """The SQL of the member id an order's look-up row (migration 0023) holds, and its values: a
    subquery on one PostgreSQL; on Citus the id itself, read first (see ``ref_condition``)."""
    return await _looked_up(conn, "order_key", "order_id", order_id, programme_id)


async def card_of(conn: Any, programme_id: str, card_number: str) -> tuple[str, str | None, bool] | None:
    """The member holding the card, its secret's hash, and whether the programme requires the
    secret; read without any lock, so a write holding the member does not make it wait."""
    cur = await conn.execute(
        "SELECT m.member_id::text, m.card_secret_hash, p.card_secret_required FROM member m"
        " JOIN programme p USING (programme_id) WHERE m.programme_id = %s AND m.member_id ="
        " (SELECT member_id FROM member_card WHERE card_number = %s AND programme_id = %s)",
        (programme_id, card_number, programme_id),
    )
    return await cur.fetchone()


async def count_card_attempt(conn: Any, member_id: str, now: int, max_failures: int,
                             lockout_us: int) -> tuple[int, int | None]:
    """Count one more secret attempt on the member's card, before its secret is checked (so that
    attempts in flight together cannot exceed the limit); the attempt that reaches
    ``max_failures`` locks the card for ``lockout_us``. A lock that has run out starts the count
    again. Returns the attempt's number and the lock's end (microseconds) if the card is locked."""
    until = to_dt(now + lockout_us)
    cur = await conn.execute(
        "INSERT INTO card_lock AS c (member_id, failures, locked_until, updated_at)"
        " VALUES (%(member)s, 1, CASE WHEN %(max)s <= 1 THEN %(until)s END, %(now)s)"
        " ON CONFLICT (member_id) DO UPDATE SET"
        " failures = CASE WHEN c.locked_until <= %(now)s THEN 1 ELSE c.failures + 1 END,"
        " locked_until = CASE WHEN c.locked_until <= %(now)s THEN NULL"
        "   WHEN c.locked_until IS NULL AND c.failures + 1 >= %(max)s THEN %(until)s ELSE c.locked_until END,"
        " updated_at = %(now)s"
        " RETURNING failures, locked_until",
        {"member": member_id, "max": max_failures, "until": until, "now": to_dt(now)},
    )
    failures, locked_until = await cur.fetchone()
    return failures, to_us(locked_until)


async def card_unlocked(conn: Any, member_id: str, now: int) -> bool:
    """Forget the card's wrong secrets and any lock (a right secret, an operator's unlock);
    whether the card was locked at ``now``."""
    cur = await conn.execute("DELETE FROM card_lock WHERE member_id = %s RETURNING locked_until > %s",
                             (member_id, to_dt(now)))
    row = await cur.fetchone()
    return bool(row and row[0])


async def offboard(conn: Any, member_id: str, now: int) -> None:
    await conn.execute(
        "UPDATE member SET offboarded_at = %s WHERE member_id = %s AND offboarded_at IS NULL",
        (to_dt(now), member_id),
    )


async def named(conn: Any, programme_id: str, member_ids: list[str], phones: list[str], card_numbers: list[str]) -> str | None:
    """The member of the programme with one of these ids, phones or card numbers, if any; the one
    an id names first (an edit's request names its member by id and the new phone or card, which
    may be another member's)."""
    cur = await conn.execute(
        "SELECT member_id::text FROM member WHERE programme_id = %(p)s"
        " AND (member_id = ANY(%(ids)s::uuid[]) OR phone = ANY(%(phones)s) OR card_number = ANY(%(cards)s))"
        " ORDER BY member_id = ANY(%(ids)s::uuid[]) DESC LIMIT 1",
        {"p": programme_id, "ids": member_ids, "phones": phones, "cards": card_numbers},
    )
    row = await cur.fetchone()
    return None if row is None else row[0]


def ids_condition(member_ids: Sequence[str]) -> tuple[str, Any]:
    """A condition on ``member_id`` naming ``member_ids``, and its parameter. One member's names its
    id alone, which Citus routes to the member's shard (and locks rows there only)."""
    if len(member_ids) == 1:
        return "member_id = %s", member_ids[0]
    return "member_id = ANY(%s::uuid[])", uuid_array(member_ids)


async def lock(conn: Any, member_ids: Sequence[str]) -> set[str]:
    """Take the members' row locks, in id order; the ids of those that exist."""
    condition, ids = ids_condition(member_ids)
    cur = await conn.execute(f"SELECT member_id::text FROM member WHERE {condition} ORDER BY member_id FOR UPDATE",
                             (ids,))
    return {r[0] for r in await cur.fetchall()}


async def lock_many(conn: Any, programme_id: str, member_ids: list[str]) -> dict[str, Member]:
    """Lock the programme's members among ``member_ids``, in id order (so two writes over several
    members never deadlock); by id, the missing ones absent."""
    cur = conn.cursor(row_factory=dict_row)
    if not await on_citus(conn):
        await cur.execute(f"{_SELECT} WHERE programme_id = %s AND member_id = ANY(%s::uuid[]) ORDER BY member_id"
                          " FOR UPDATE", (programme_id, member_ids))
        return {row["member_id"]: row_to_member(row) for row in await cur.fetchall()}
    # Citus locks rows only in a statement on one shard: one statement per member, in the same order.
    found = {}
    for member_id in sorted(set(member_ids)):
        await cur.execute(f"{_SELECT} WHERE programme_id = %s AND member_id = %s::uuid FOR UPDATE",
                          (programme_id, member_id))
        if row := await cur.fetchone():
            found[row["member_id"]] = row_to_member(row)
    return found


async def release_phone(conn: Any, member_id: str) -> None:
    """The member's phone look-up goes (a new phone, an erasure): the phone is free for another member."""
    await conn.execute("DELETE FROM member_phone WHERE member_id = %s", (member_id,))


async def release_card(conn: Any, member_id: str) -> None:
    await conn.execute("DELETE FROM member_card WHERE member_id = %s", (member_id,))


async def claim_card(conn: Any, member_id: str, programme_id: str, card_number: str | None) -> None:
    """The card's look-up row (none for no card); a number taken raises UniqueViolation ``member_card_taken``."""
    await conn.execute(_CLAIM_CARD, (card_number, programme_id, member_id, card_number))


async def set_phone(conn: Any, member_id: str, programme_id: str, phone: str) -> None:
    """A new phone, not confirmed; a taken one raises psycopg's UniqueViolation (see ``UNIQUE_RULES``).
    The codes sent to the old phone go with it (a confirmation or spend code the old phone received
    must not confirm or spend for the new one)."""
    await release_phone(conn, member_id)
    await conn.execute(_CLAIM_PHONE, (phone, programme_id, member_id, phone))
    await conn.execute("UPDATE member SET phone = %s, phone_confirmed = false WHERE member_id = %s", (phone, member_id))
    await conn.execute("DELETE FROM phone_confirmation WHERE member_id = %s", (member_id,))
    await conn.execute("DELETE FROM spend_code WHERE member_id = %s", (member_id,))


async def set_customer_group(conn: Any, member_id: str, customer_group: str) -> None:
    await conn.execute("UPDATE member SET customer_group = %s WHERE member_id = %s", (customer_group, member_id))


def _filter_conditions(found: MemberFilter) -> tuple[list[str], list[Any]]:
    """The SQL conditions (joined by AND) of a ListMembers filter, and their values; each filter
    given adds one."""
    named = (("phone = %s", found.phone), ("card_number = %s", found.card_number), ("status = %s", found.status),
             ("level_id = %s::uuid", found.level_id))
    conditions, values = [sql for sql, value in named if value], [value for _, value in named if value]
    if found.custom_field is not None:
        # member_custom_value_by_value finds them (the member's programme_id is the condition's).
        conditions.append("member_id IN (SELECT member_id FROM member_custom_value"
                          " WHERE programme_id = member.programme_id AND name = %s AND value = %s)")
        values += [found.custom_field.name, found.custom_field.value]
    return conditions, values


async def page(conn: Any, programme_id: str, found: MemberFilter, after_member_id: str | None,
               limit: int) -> list[Member]:
    """The programme's members matching ``found``, by member id after ``after_member_id``."""
    conditions, values = _filter_conditions(found)
    if after_member_id is not None:
        conditions.append("member_id > %s::uuid")
        values.append(after_member_id)
    where = "".join(f" AND {c}" for c in conditions)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_SELECT} WHERE programme_id = %s{where} ORDER BY member_id LIMIT %s",
                      (programme_id, *values, limit))
    return [row_to_member(row) for row in await cur.fetchall()]
