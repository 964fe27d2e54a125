"""The "points expiring soon" notices: which are due, and writing one with its event."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from loyalty_core.events import NewEvent
from loyalty_core.store import outbox
from loyalty_core.store.convert import to_dt, to_us


@dataclass(frozen=True, slots=True)
class DueNotice:
    member_id: str
    expires_on: date
    points: int
    first_expiry: int
    days_before: int


async def due(conn: Any, programme_id: str, days: Sequence[int], now: int, limit: int) -> list[DueNotice]:
    """Up to ``limit`` notices due at ``now``, by member: for each member and UTC date on which some
    of its points expire, the nearest window (the smallest of ``days`` whose start, that many days
    before the date, has come), unless a notice for that window or a nearer one was written."""
    cur = await conn.execute(
        """WITH expiring AS (
               SELECT l.member_id, (l.expires_at AT TIME ZONE 'UTC')::date AS expires_on,
                      sum(l.remaining) AS points, min(l.expires_at) AS first_expiry
               FROM lot l JOIN member m USING (member_id)
               WHERE m.programme_id = %(programme)s AND m.offboarded_at IS NULL
                 AND l.remaining > 0 AND l.expired_at IS NULL
                 AND l.expires_at > %(now)s AND l.expires_at < %(now)s + make_interval(days => %(most)s + 1)
               GROUP BY 1, 2
           ), windowed AS (
               SELECT x.*, (SELECT min(n) FROM unnest(%(days)s::int[]) n
                            WHERE x.expires_on - n <= (%(now)s AT TIME ZONE 'UTC')::date) AS days_before
               FROM expiring x
           )
           SELECT w.member_id::text, w.expires_on, w.points, w.first_expiry, w.days_before FROM windowed w
           WHERE w.days_before IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM expiry_notice n WHERE n.member_id = w.member_id
                             AND n.expires_on = w.expires_on AND n.days_before <= w.days_before)
           ORDER BY w.member_id, w.expires_on LIMIT %(limit)s""",
        {"programme": programme_id, "now": to_dt(now), "most": max(days), "days": list(days), "limit": limit},
    )
    return [DueNotice(r[0], r[1], int(r[2]), to_us(r[3]) or 0, r[4]) for r in await cur.fetchall()]


async def write(conn: Any, notice: DueNotice, event: NewEvent, now: int) -> None:
    """The notice and its event. A notice another runner wrote meanwhile fails the transaction on
    the key, and the next run finds it written."""
    await conn.execute(
        f"WITH {outbox.CTE} INSERT INTO expiry_notice (member_id, expires_on, days_before, created_at)"
        " VALUES (%(outbox_member)s, %(expires_on)s, %(days_before)s, %(outbox_now)s)",
        {"expires_on": notice.expires_on, "days_before": notice.days_before,
         **outbox.params(notice.member_id, now, [event])},
    )
