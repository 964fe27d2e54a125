"""The scheduler's SQL: which jobs are due, who may run one (a session advisory lock), and how a run ended.

Scheduling uses PostgreSQL's clock, the one clock every replica shares; what a job does uses the
domain's clock (``as_of``), so tests that move time still drive the jobs' effects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# First key of the two-key advisory lock: keeps the scheduler's locks apart from anyone else's
# (the migration lock uses the one-key form).
LOCK_SPACE = 0x6C6F_7961  # "loya"


async def ensure(conn: Any, names: Sequence[str]) -> None:
    """A row per known job, due at once when new."""
    await conn.execute(
        "INSERT INTO scheduled_job (name) SELECT unnest(%s::text[]) ON CONFLICT (name) DO NOTHING",
        (list(names),),
    )


async def due(conn: Any, names: Sequence[str]) -> list[str]:
    cur = await conn.execute(
        "SELECT name FROM scheduled_job WHERE name = ANY(%s) AND next_run_at <= now() ORDER BY next_run_at, name",
        (list(names),),
    )
    return [r[0] for r in await cur.fetchall()]


async def hold(conn: Any, name: str) -> bool:
    """The job's lock for this session, due or not (a command for cron runs beside the servers);
    False when a replica or another command has it."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (LOCK_SPACE, name))
    return bool((await cur.fetchone())[0])


async def try_lock(conn: Any, name: str) -> bool:
    """Take the job for this session; False when another replica has it. Re-checks that it is
    still due under the lock: another replica may have finished it since ``due`` read it."""
    if not await hold(conn, name):
        return False
    cur = await conn.execute("SELECT next_run_at <= now() FROM scheduled_job WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row and row[0]:
        return True
    await unlock(conn, name)
    return False


async def unlock(conn: Any, name: str) -> None:
    await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_SPACE, name))


async def started(conn: Any, name: str, runner: str) -> None:
    await conn.execute("UPDATE scheduled_job SET last_started_at = now(), last_runner = %s WHERE name = %s",
                       (runner, name))


async def succeeded(conn: Any, name: str, items: int, next_in_s: float) -> None:
    """Record a finished run and when the job is next due (``next_in_s`` 0: at the next tick, for a
    run that stopped at its bound with work left)."""
    await conn.execute(
        "UPDATE scheduled_job SET last_success_at = now(), last_items = %s, last_error = '',"
        " next_run_at = now() + make_interval(secs => %s) WHERE name = %s",
        (items, next_in_s, name),
    )


async def failed(conn: Any, name: str, error: str, retry_in_s: float) -> None:
    await conn.execute(
        "UPDATE scheduled_job SET last_failure_at = now(), last_error = %s,"
        " next_run_at = now() + make_interval(secs => %s) WHERE name = %s",
        (error[:500], retry_in_s, name),
    )
