"""What the expiry run finds due: members with work, and per member the lots and holds to act on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from loyalty_core.store.convert import to_dt
from loyalty_core.store.ledger import LOT_COLUMNS, Lots
from loyalty_core.store.members import ids_condition


# Due members are read this many at a time from a server-side cursor: a run over millions of
# members never holds them all in memory.
DUE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class DueMember:
    member_id: str
    programme_id: str
    # Only lots to burn or activate: no hold and no certificate to act on, so the member can join
    # a batch of others (``lots_to_burn`` and ``activate`` over many members).
    lots_only: bool


async def due_members(conn: Any, programme_id: str | None, as_of: int,
                      batch: int = DUE_BATCH) -> AsyncIterator[DueMember]:
    """Members with a lot to burn, a lot to activate, a hold to release, a certificate to burn or
    a certificate's hold to release by ``as_of`` (the partial indexes lot_to_expire,
    lot_to_activate, hold_open_expiry, certificate_expiring and certificate_hold_ending serve
    these), by programme and member id, ``batch`` rows at a time. ``conn`` must be in a
    transaction (a server-side cursor lives in one); the caller does each member's work on other
    connections."""
    # Every row is read: a plan for the first rows (a cursor's default) would nest loops that a
    # bulk load's missing statistics make quadratic.
    await conn.execute("SET LOCAL cursor_tuple_fraction = 1")
    async with conn.cursor(name="due_members") as cur:
        cur.itersize = batch
        await cur.execute(
            """SELECT d.member_id::text, m.programme_id::text, bool_and(d.lots_only) FROM (
                   SELECT member_id, true AS lots_only FROM lot
                   WHERE remaining > 0 AND expired_at IS NULL AND expires_at <= %(t)s
                   UNION ALL
                   SELECT member_id, true FROM lot WHERE activated_at IS NULL AND activates_at <= %(t)s
                   UNION ALL
                   SELECT member_id, false FROM hold WHERE state = 'open' AND expires_at <= %(t)s
                   UNION ALL
                   SELECT member_id, false FROM certificate WHERE state = 'active' AND expires_at <= %(t)s
                   UNION ALL
                   SELECT member_id, false FROM certificate WHERE state = 'held' AND held_until <= %(t)s
               ) d JOIN member m ON m.member_id = d.member_id
               WHERE %(p)s::uuid IS NULL OR m.programme_id = %(p)s::uuid
               GROUP BY m.programme_id, d.member_id ORDER BY m.programme_id, d.member_id""",
            {"t": to_dt(as_of), "p": programme_id},
        )
        async for member_id, member_programme, lots_only in cur:
            yield DueMember(member_id, member_programme, lots_only)


async def lots_to_burn(conn: Any, member_ids: Sequence[str], as_of: int) -> dict[str, Lots]:
    """By member, the lots with points left that expire by ``as_of``."""
    condition, members = ids_condition(member_ids)
    cur = await conn.execute(
        f"SELECT member_id::text, {LOT_COLUMNS} FROM lot"
        f" WHERE {condition} AND remaining > 0 AND expires_at <= %s ORDER BY member_id, lot_id",
        (members, to_dt(as_of)),
    )
    found: dict[str, Lots] = {}
    for member_id, lot_id, remaining, activates_us, expires_us in await cur.fetchall():
        lots = found.get(member_id)
        if lots is None:
            lots = found[member_id] = Lots([], [], [], [])
        lots.lot_ids.append(lot_id)
        lots.remaining.append(remaining)
        lots.activates_at.append(activates_us)
        lots.expires_at.append(expires_us)
    return found


async def activate(conn: Any, member_ids: Sequence[str], as_of: int) -> dict[str, list[tuple[int, int]]]:
    """Mark the members' lots due by ``as_of`` activated; by member, (lot_id, remaining) of each."""
    condition, members = ids_condition(member_ids)
    cur = await conn.execute(
        f"UPDATE lot SET activated_at = %s WHERE {condition} AND activated_at IS NULL AND activates_at <= %s"
        " RETURNING member_id::text, lot_id, remaining",
        (to_dt(as_of), members, to_dt(as_of)),
    )
    activated: dict[str, list[tuple[int, int]]] = {}
    for member_id, lot_id, remaining in sorted(await cur.fetchall()):
        activated.setdefault(member_id, []).append((lot_id, remaining))
    return activated
