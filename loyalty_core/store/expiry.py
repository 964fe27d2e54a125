"""What the expiry run finds due: members with work, and per member the lots and holds to act on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from loyalty_core.store.convert import expiry_us, to_dt, to_us
from loyalty_core.store.ledger import Lots


# Due members are read this many at a time from a server-side cursor: a run over millions of
# members never holds them all in memory.
DUE_BATCH = 1000


async def due_members(conn: Any, programme_id: str | None, as_of: int,
                      batch: int = DUE_BATCH) -> AsyncIterator[tuple[str, str]]:
    """(member id, programme id) of members with a lot to burn, a lot to activate, a hold to
    release, a certificate to burn or a certificate's hold to release by ``as_of`` (the partial
    indexes lot_to_expire, lot_to_activate, hold_open_expiry, certificate_expiring and
    certificate_hold_ending serve these), ``batch`` rows at a time. ``conn`` must be in a transaction (a server-side
    cursor lives in one); the caller does each member's work on other connections."""
    async with conn.cursor(name="due_members") as cur:
        cur.itersize = batch
        await cur.execute(
            """SELECT DISTINCT d.member_id::text, m.programme_id::text FROM (
                   SELECT member_id FROM lot WHERE remaining > 0 AND expired_at IS NULL AND expires_at <= %(t)s
                   UNION ALL
                   SELECT member_id FROM lot WHERE activated_at IS NULL AND activates_at <= %(t)s
                   UNION ALL
                   SELECT member_id FROM hold WHERE state = 'open' AND expires_at <= %(t)s
                   UNION ALL
                   SELECT member_id FROM certificate WHERE state = 'active' AND expires_at <= %(t)s
                   UNION ALL
                   SELECT member_id FROM certificate WHERE state = 'held' AND held_until <= %(t)s
               ) d JOIN member m ON m.member_id = d.member_id
               WHERE %(p)s::uuid IS NULL OR m.programme_id = %(p)s::uuid""",
            {"t": to_dt(as_of), "p": programme_id},
        )
        async for member_id, member_programme in cur:
            yield member_id, member_programme


async def lots_to_burn(conn: Any, member_id: str, as_of: int) -> Lots:
    cur = await conn.execute(
        "SELECT lot_id, remaining, activates_at, expires_at FROM lot"
        " WHERE member_id = %s AND remaining > 0 AND expires_at <= %s ORDER BY lot_id",
        (member_id, to_dt(as_of)),
    )
    rows = await cur.fetchall()
    return Lots([r[0] for r in rows], [r[1] for r in rows], [to_us(r[2]) for r in rows],
                [expiry_us(r[3]) for r in rows])


async def mark_expired(conn: Any, member_id: str, lot_ids: Sequence[int], as_of: int) -> None:
    await conn.execute(
        "UPDATE lot SET expired_at = %s WHERE member_id = %s AND lot_id = ANY(%s)",
        (to_dt(as_of), member_id, list(lot_ids)),
    )


async def activate(conn: Any, member_id: str, as_of: int) -> list[tuple[int, int]]:
    """Mark the member's lots due by ``as_of`` activated; return (lot_id, remaining) of each."""
    cur = await conn.execute(
        "UPDATE lot SET activated_at = %s WHERE member_id = %s AND activated_at IS NULL AND activates_at <= %s"
        " RETURNING lot_id, remaining",
        (to_dt(as_of), member_id, to_dt(as_of)),
    )
    return sorted(tuple(r) for r in await cur.fetchall())
