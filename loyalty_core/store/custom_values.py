"""Members' custom field values: one row per member and field, found by value within a programme."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.rows import dict_row

from loyalty_core.model import Member
from loyalty_core.store.convert import to_dt
from loyalty_core.store.members import SELECT_MEMBER, row_to_member


async def of_member(conn: Any, member_id: str) -> dict[str, str]:
    """The member's stored values by field name (fields no longer declared included)."""
    cur = await conn.execute("SELECT name, value FROM member_custom_value WHERE member_id = %s", (member_id,))
    return dict(await cur.fetchall())


async def of_members(conn: Any, member_ids: list[str]) -> dict[str, dict[str, str]]:
    """The values of several members at once: member id -> name -> value."""
    cur = await conn.execute("SELECT member_id::text, name, value FROM member_custom_value"
                             " WHERE member_id = ANY(%s::uuid[])", (member_ids,))
    values: dict[str, dict[str, str]] = {m: {} for m in member_ids}
    for member_id, name, value in await cur.fetchall():
        values[member_id][name] = value
    return values


async def put(conn: Any, member_id: str, programme_id: str, values: Mapping[str, str], now: int) -> None:
    """Set the values given; an empty one removes the field's row."""
    kept = {k: v for k, v in values.items() if v}
    gone = [k for k, v in values.items() if not v]
    if kept:
        await conn.execute(
            "INSERT INTO member_custom_value (member_id, name, programme_id, value, updated_at)"
            " SELECT %s, n, %s, v, %s FROM unnest(%s::text[], %s::text[]) AS t(n, v)"
            " ON CONFLICT (member_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (member_id, programme_id, to_dt(now), list(kept), list(kept.values())),
        )
    if gone:
        await conn.execute("DELETE FROM member_custom_value WHERE member_id = %s AND name = ANY(%s)",
                           (member_id, gone))


async def members_with(conn: Any, programme_id: str, name: str, value: str, after: tuple[int, str] | None,
                       limit: int) -> list[Member]:
    """The members whose field ``name`` holds ``value``, by (enrolment time, member id), after ``after``."""
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(
        f"""{SELECT_MEMBER} WHERE programme_id = %(p)s AND member_id IN (
                SELECT member_id FROM member_custom_value WHERE programme_id = %(p)s AND name = %(n)s AND value = %(v)s)
              AND (%(at)s::timestamptz IS NULL OR (enrolled_at, member_id) > (%(at)s, %(id)s::uuid))
            ORDER BY enrolled_at, member_id LIMIT %(limit)s""",
        {"p": programme_id, "n": name, "v": value, "at": to_dt(after[0]) if after else None,
         "id": after[1] if after else None, "limit": limit},
    )
    return [row_to_member(r) for r in await cur.fetchall()]


