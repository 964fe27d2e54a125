"""The ledger's state as an SRE watches it: outstanding points by expiry month, open holds, expiry lag.

Read at scrape time (cached briefly), never per RPC. Each query reads live rows only (lots with
points left, open holds, overdue lots and holds), which partial indexes serve, not the history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from loyalty_core.store.distribute import CITUS_INSTALLED
from loyalty_core.store.webhooks import EVENTS_COUNTED_MAX, WAITING_SQL

NEVER = "never"


@dataclass(frozen=True)
class JobState:
    """A scheduled job as every replica sees it: when it last finished (Unix seconds), and how long
    it has been due without a run finishing (0 when not due)."""

    last_success_s: float | None
    lag_s: float


@dataclass
class LedgerGauges:
    """One reading. Keys are programme ids; ``outstanding`` is keyed (programme id, "YYYY-MM" or "never")."""

    outstanding_points: dict[tuple[str, str], int] = field(default_factory=dict)
    open_holds: dict[str, int] = field(default_factory=dict)
    held_points: dict[str, int] = field(default_factory=dict)
    oldest_hold_age_s: dict[str, float] = field(default_factory=dict)
    # How far behind the expiry run is: the age of the oldest lot or certificate it should have
    # burnt, or hold it should have released, by ``now``; 0 when it is up to date.
    expiry_lag_s: float = 0.0
    jobs: dict[str, JobState] = field(default_factory=dict)
    # Per live webhook subscription: (events waiting, age of the oldest in seconds).
    webhooks: dict[str, tuple[int, float]] = field(default_factory=dict)


def read(conn: psycopg.Connection[Any], now: datetime) -> LedgerGauges:
    """Read every gauge in one transaction (a consistent picture), as of ``now``."""
    g = LedgerGauges()
    with conn.transaction():
        # Points the programme owes, by the calendar month (UTC) they burn in: what is left in lots,
        # what open holds took from lots (a hold is still owed until it is captured; it goes
        # back to the very lots it came from, so it burns with them), and what is left on certificates.
        for programme_id, month, points in conn.execute(
            """SELECT o.programme_id::text,
                      coalesce(to_char(o.expires_at AT TIME ZONE 'UTC', 'YYYY-MM'), %s),
                      sum(o.points)
               FROM (SELECT m.programme_id, l.expires_at, l.remaining AS points
                     FROM lot l JOIN member m USING (member_id)
                     WHERE l.remaining > 0
                     UNION ALL
                     SELECT h.programme_id, l.expires_at, a.points
                     FROM hold h CROSS JOIN unnest(h.lot_ids, h.lot_points) AS a(lot_id, points)
                     JOIN lot l ON l.member_id = h.member_id AND l.lot_id = a.lot_id
                     WHERE h.state = 'open'
                     UNION ALL
                     -- Certificates are owed as points are: what is left on them, held part included.
                     SELECT programme_id, expires_at, remaining_points + held_points
                     FROM certificate WHERE state IN ('active', 'held')) o
               GROUP BY 1, 2""",
            (NEVER,),
        ):
            g.outstanding_points[(programme_id, month)] = int(points)
        for programme_id, count, points, oldest in conn.execute(
            """SELECT programme_id::text, count(*), sum(points), min(created_at)
               FROM hold WHERE state = 'open' GROUP BY 1"""
        ):
            g.open_holds[programme_id] = int(count)
            g.held_points[programme_id] = int(points)
            g.oldest_hold_age_s[programme_id] = max(0.0, (now - oldest).total_seconds())
        row = conn.execute(
            """SELECT least(
                   (SELECT min(expires_at) FROM lot
                    WHERE remaining > 0 AND expired_at IS NULL AND expires_at <= %(now)s),
                   (SELECT min(expires_at) FROM hold WHERE state = 'open' AND expires_at <= %(now)s),
                   (SELECT min(expires_at) FROM certificate WHERE state = 'active' AND expires_at <= %(now)s),
                   (SELECT min(held_until) FROM certificate WHERE state = 'held' AND held_until <= %(now)s))""",
            {"now": now},
        ).fetchone()
        if row and row[0] is not None:
            g.expiry_lag_s = max(0.0, (now - row[0]).total_seconds())
        # The schedule runs on PostgreSQL's clock (store.jobs), so its lag is measured on it too.
        for name, last_success_s, lag_s in conn.execute(
            """SELECT name, extract(epoch FROM last_success_at)::float8,
                      greatest(0, extract(epoch FROM now() - next_run_at))::float8
               FROM scheduled_job"""
        ):
            g.jobs[name] = JobState(last_success_s, lag_s)
        if conn.execute(CITUS_INSTALLED).fetchone():
            # Webhooks do not run on Citus (docs/scale-out.md): their backlog's query joins a
            # reference table to the outbox laterally, which Citus refuses.
            return g
        for subscription_id, waiting, oldest in conn.execute(WAITING_SQL, {"most": EVENTS_COUNTED_MAX, "ids": None}):
            g.webhooks[subscription_id] = (int(waiting), 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()))
    return g
