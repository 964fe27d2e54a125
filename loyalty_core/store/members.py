"""Member rows: enrol, find (and lock) by id, phone or card, off-board."""

from __future__ import annotations

from typing import Any

from psycopg.rows import dict_row

from loyalty_core.model import Member, MemberFilter, MemberRef
from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.later import Later

_SELECT = """SELECT member_id::text, programme_id::text, phone, card_number, status, phone_confirmed,
    customer_group, personal_discount_bps, accumulative_discount_bps, purchases_total_minor, held_points,
    debt_points, earned_total_points, spent_total_points, expired_total_points, enrolled_at, offboarded_at,
    card_secret_hash IS NOT NULL AS has_card_secret, level_id::text, level_assigned_at, erased_at,
    accumulative_from_minor, store_id FROM member"""

SELECT_MEMBER = _SELECT

# The unique constraints PostgreSQL names by default, and the rule each one enforces.
UNIQUE_RULES = {"member_programme_id_phone_key": "phone_taken", "member_programme_id_card_number_key": "card_number_taken"}


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
    """Insert; a taken phone or card raises psycopg's UniqueViolation (see ``UNIQUE_RULES``)."""
    await conn.execute(
        "INSERT INTO member (member_id, programme_id, phone, card_number, card_secret_hash, status,"
        " customer_group, enrolled_at, store_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (member_id, programme_id, phone, card_number, card_secret_hash, status, customer_group, to_dt(now),
         store_id),
    )


def ref_condition(ref: MemberRef) -> tuple[str, str]:
    """The SQL condition (after ``programme_id = %s AND``) naming ``ref``'s member, and its value."""
    if ref.member_id:
        return "member_id = %s", ref.member_id
    if ref.phone:
        return "phone = %s", ref.phone
    return "card_number = %s", ref.card_number


async def find(conn: Any, programme_id: str, ref: MemberRef, *, lock: bool = False) -> Member | None:
    """The member ``ref`` names in the programme; ``lock`` takes the member's row lock (FOR UPDATE),
    which every write to the member's points holds until it commits."""
    condition, value = ref_condition(ref)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_SELECT} WHERE programme_id = %s AND {condition}" + (" FOR UPDATE" if lock else ""),
                      (programme_id, value))
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
    condition, value = ref_condition(ref)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_SELECT_LOCKED} WHERE programme_id = %s AND {condition} FOR UPDATE", (programme_id, value))
    return Later(cur, _locked)


async def send_lock_of_order(conn: Any, programme_id: str, order_id: str) -> Later[tuple[Member | None, int | None]]:
    """Lock the member an order belongs to (every write to an order holds its lock); read with its
    programme's revision."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"{_SELECT_LOCKED} WHERE member_id = (SELECT member_id FROM orders WHERE programme_id = %s"
        " AND order_id = %s) FOR UPDATE",
        (programme_id, order_id),
    )
    return Later(cur, _locked)


async def card_of(conn: Any, programme_id: str, card_number: str) -> tuple[str, str | None, bool] | None:
    """The member holding the card, its secret's hash, and whether the programme requires the
    secret; read without any lock, so a write holding the member does not make it wait."""
    cur = await conn.execute(
        "SELECT m.member_id::text, m.card_secret_hash, p.card_secret_required FROM member m"
        " JOIN programme p USING (programme_id) WHERE m.programme_id = %s AND m.card_number = %s",
        (programme_id, card_number),
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


async def lock(conn: Any, member_id: str) -> bool:
    """Take the member's row lock; False when there is no such member."""
    cur = await conn.execute("SELECT true FROM member WHERE member_id = %s FOR UPDATE", (member_id,))
    return await cur.fetchone() is not None


async def lock_many(conn: Any, programme_id: str, member_ids: list[str]) -> dict[str, Member]:
    """Lock the programme's members among ``member_ids``, in id order (so two writes over several
    members never deadlock); by id, the missing ones absent."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(f"{_SELECT} WHERE programme_id = %s AND member_id = ANY(%s::uuid[]) ORDER BY member_id"
                      " FOR UPDATE", (programme_id, member_ids))
    return {row["member_id"]: row_to_member(row) for row in await cur.fetchall()}


async def set_phone(conn: Any, member_id: str, phone: str) -> None:
    """A new phone, not confirmed; a taken one raises psycopg's UniqueViolation (see ``UNIQUE_RULES``).
    The codes sent to the old phone go with it (a confirmation or spend code the old phone received
    must not confirm or spend for the new one)."""
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
