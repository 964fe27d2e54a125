"""Members' custom field values: one row per member and field (ListMembers finds members by them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loyalty_core.store.convert import to_dt


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
