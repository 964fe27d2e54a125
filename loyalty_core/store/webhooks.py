"""Webhook subscriptions, their delivery progress and their dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loyalty_core.store.convert import to_dt, to_us
from loyalty_core.store.outbox import Cursor


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    programme_id: str
    url: str
    event_types: tuple[str, ...]
    description: str
    created_at: int
    cursor: Cursor
    attempts: int
    last_error: str
    dead_letters: int


_COLUMNS = ("s.subscription_id::text, s.programme_id::text, s.url, s.event_types, s.description, s.created_at,"
            " s.cursor_tx::text::bigint, s.cursor_position, s.attempts, s.last_error,"
            " (SELECT count(*) FROM webhook_dead_letter d WHERE d.subscription_id = s.subscription_id)")


# Per live subscription: the events after its cursor that it takes (counted up to %(most)s) and the
# oldest one's time. Shared by ListWebhooks and the metrics' gauges.
WAITING_SQL = """SELECT s.subscription_id::text, count(e.created_at), min(e.created_at)
    FROM webhook_subscription s LEFT JOIN LATERAL (
        SELECT created_at FROM outbox_event e
        WHERE e.programme_id = s.programme_id AND (e.tx, e.position) > (s.cursor_tx, s.cursor_position)
          AND (cardinality(s.event_types) = 0 OR e.type = ANY(s.event_types))
        ORDER BY e.tx, e.position LIMIT %(most)s) e ON true
    WHERE s.deleted_at IS NULL AND (%(ids)s::uuid[] IS NULL OR s.subscription_id = ANY(%(ids)s::uuid[]))
    GROUP BY 1"""
# Events waiting are counted up to this many: a stuck endpoint must not make each look count the
# whole outbox.
EVENTS_COUNTED_MAX = 100_000


def _subscription(r: Sequence[Any]) -> Subscription:
    return Subscription(r[0], r[1], r[2], tuple(r[3]), r[4], to_us(r[5]) or 0, Cursor(r[6], r[7]), r[8], r[9], r[10])


async def insert(conn: Any, subscription_id: str, programme_id: str, url: str, event_types: Sequence[str],
                 description: str, actor: str, now: int) -> Subscription:
    """A new subscription, at the head of the stream: it gets the events that commit from now."""
    await conn.execute(
        "INSERT INTO webhook_subscription (subscription_id, programme_id, url, event_types, description, created_at,"
        " created_by, cursor_tx, cursor_position, next_attempt_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, pg_snapshot_xmin(pg_current_snapshot()), 0, %s)",
        (subscription_id, programme_id, url, list(event_types), description, to_dt(now), actor, to_dt(now)),
    )
    found = await get(conn, programme_id, subscription_id)
    assert found is not None, "inserted a statement ago"
    return found


async def get(conn: Any, programme_id: str, subscription_id: str, *, lock: bool = False) -> Subscription | None:
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_subscription s WHERE s.programme_id = %s AND s.subscription_id = %s"
        " AND s.deleted_at IS NULL" + (" FOR UPDATE" if lock else ""),
        (programme_id, subscription_id),
    )
    row = await cur.fetchone()
    return None if row is None else _subscription(row)


async def page(conn: Any, programme_id: str, after: tuple[int, str] | None, limit: int) -> list[Subscription]:
    """Live subscriptions of the programme, oldest first, after (created_at, id) of the last one seen."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_subscription s WHERE s.programme_id = %s AND s.deleted_at IS NULL"
        " AND (%s::timestamptz IS NULL OR (s.created_at, s.subscription_id) > (%s::timestamptz, %s::uuid))"
        " ORDER BY s.created_at, s.subscription_id LIMIT %s",
        (programme_id, to_dt(after[0]) if after else None, to_dt(after[0]) if after else None,
         after[1] if after else None, limit),
    )
    return [_subscription(r) for r in await cur.fetchall()]


async def waiting(conn: Any, subscription_ids: Sequence[str]) -> dict[str, int]:
    """Events waiting for each of the subscriptions (``WAITING_SQL``)."""
    cur = await conn.execute(WAITING_SQL, {"most": EVENTS_COUNTED_MAX, "ids": list(subscription_ids)})
    return {r[0]: int(r[1]) for r in await cur.fetchall()}


async def delete(conn: Any, subscription_id: str, now: int) -> None:
    await conn.execute("UPDATE webhook_subscription SET deleted_at = %s WHERE subscription_id = %s",
                       (to_dt(now), subscription_id))


async def due(conn: Any, now: int, limit: int) -> list[Subscription]:
    """Live subscriptions whose next attempt is due, the longest waiting first."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM webhook_subscription s WHERE s.deleted_at IS NULL AND s.next_attempt_at <= %s"
        " ORDER BY s.next_attempt_at LIMIT %s",
        (to_dt(now), limit),
    )
    return [_subscription(r) for r in await cur.fetchall()]


async def delivered(conn: Any, subscription_id: str, cursor: Cursor, now: int) -> None:
    """Every event up to ``cursor`` delivered (or given up on); the next one is due at once."""
    await conn.execute(
        "UPDATE webhook_subscription SET cursor_tx = %s::text::xid8, cursor_position = %s, attempts = 0,"
        " last_error = '', next_attempt_at = %s WHERE subscription_id = %s",
        (cursor.tx, cursor.position, to_dt(now), subscription_id),
    )


async def failed(conn: Any, subscription_id: str, attempts: int, error: str, next_attempt_at: int) -> None:
    """The event at the head failed its ``attempts``-th time; try again at ``next_attempt_at``."""
    await conn.execute(
        "UPDATE webhook_subscription SET attempts = %s, last_error = %s, next_attempt_at = %s"
        " WHERE subscription_id = %s",
        (attempts, error[:500], to_dt(next_attempt_at), subscription_id),
    )


async def dead_letter(conn: Any, subscription_id: str, member_id: str, seq: int, attempts: int, error: str,
                      now: int) -> None:
    await conn.execute(
        "INSERT INTO webhook_dead_letter (subscription_id, member_id, seq, attempts, last_error, dead_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (subscription_id, member_id, seq) DO UPDATE"
        " SET attempts = webhook_dead_letter.attempts + excluded.attempts, last_error = excluded.last_error,"
        " dead_at = excluded.dead_at, redeliver_at = NULL",
        (subscription_id, member_id, seq, attempts, error[:500], to_dt(now)),
    )


async def redeliver(conn: Any, subscription_id: str, event_id: str | None, now: int) -> int:
    """Mark the subscription's dead letters (or the one of ``event_id``) due again; how many."""
    # The job looks for redeliveries when the subscription is due: it is, from now.
    cur = await conn.execute(
        "WITH marked AS (UPDATE webhook_dead_letter d SET redeliver_at = %(now)s WHERE d.subscription_id = %(sub)s"
        "   AND (%(event)s::uuid IS NULL OR (d.member_id, d.seq) IN"
        "        (SELECT member_id, seq FROM outbox_event WHERE event_id = %(event)s::uuid)) RETURNING 1),"
        " due AS (UPDATE webhook_subscription SET next_attempt_at = least(next_attempt_at, %(now)s)"
        "   WHERE subscription_id = %(sub)s)"
        " SELECT count(*) FROM marked",
        {"now": to_dt(now), "sub": subscription_id, "event": event_id},
    )
    return (await cur.fetchone())[0]


async def redeliveries(conn: Any, subscription_id: str, limit: int) -> list[tuple[str, int]]:
    """(member_id, seq) of dead letters marked for redelivery, oldest mark first."""
    cur = await conn.execute(
        "SELECT member_id::text, seq FROM webhook_dead_letter WHERE subscription_id = %s AND redeliver_at IS NOT NULL"
        " ORDER BY redeliver_at, member_id, seq LIMIT %s",
        (subscription_id, limit),
    )
    return [(r[0], r[1]) for r in await cur.fetchall()]


async def redelivered(conn: Any, subscription_id: str, member_id: str, seq: int, error: str | None, now: int) -> None:
    """A redelivery's outcome: gone from the dead letters when it went through, else dead again."""
    if error is None:
        await conn.execute("DELETE FROM webhook_dead_letter WHERE subscription_id = %s AND member_id = %s AND seq = %s",
                           (subscription_id, member_id, seq))
    else:
        await dead_letter(conn, subscription_id, member_id, seq, 1, error, now)


async def purge_events(conn: Any, before: int, limit: int) -> int:
    """Delete up to ``limit`` events created before ``before`` that every live subscription of their
    programme has passed and no live subscription's dead letter names; how many went."""
    cur = await conn.execute(
        """WITH gone AS (
               SELECT e.member_id, e.seq FROM outbox_event e
               WHERE e.created_at < %(before)s
                 AND NOT EXISTS (SELECT 1 FROM webhook_subscription s
                                 WHERE s.programme_id = e.programme_id AND s.deleted_at IS NULL
                                   AND (s.cursor_tx, s.cursor_position) < (e.tx, e.position))
                 AND NOT EXISTS (SELECT 1 FROM webhook_dead_letter d JOIN webhook_subscription s USING (subscription_id)
                                 WHERE d.member_id = e.member_id AND d.seq = e.seq AND s.deleted_at IS NULL)
               ORDER BY e.created_at LIMIT %(limit)s)
           DELETE FROM outbox_event e USING gone WHERE e.member_id = gone.member_id AND e.seq = gone.seq""",
        {"before": to_dt(before), "limit": limit},
    )
    return cur.rowcount
