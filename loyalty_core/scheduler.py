"""The one scheduler: every replica runs it, and each due job runs on one replica at a time.

A job is a bounded piece of upkeep (``Job.run``) that says how much it did and whether it stopped
at its bound with work left. Each tick, a replica reads which jobs are due (``scheduled_job``) and
tries each one's session advisory lock on a connection of its own: the replica that gets it runs
the job, the others skip it. The job is due again ``interval_s`` after a run finishes, or at the
next tick when the run stopped at its bound; so each job runs once per interval across replicas,
and a replica killed mid-run frees the lock with its connection, leaving the job due for the
next tick of another. Jobs keep their progress in the data they change (a burnt lot is not due
any more), so an interrupted run loses nothing and the next one resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import psycopg

from loyalty_core import errors, observe
from loyalty_core.store import jobs as store
from loyalty_core.store.db import CONNECTION_FAILURES, Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobRun:
    """What one run did: ``items`` (members, holds, keys, ... as the job counts them), and ``more``
    when it stopped at its bound with due work left."""

    items: int = 0
    more: bool = False


@dataclass(frozen=True)
class Job:
    name: str
    interval_s: float
    run: Callable[[], Awaitable[JobRun]]


class Scheduler:
    """Runs ``jobs`` on ``db`` until ``stop`` is set; ``tick()`` is one pass, for tests and the CLI."""

    def __init__(self, db: Database, jobs: Sequence[Job], *, tick_s: float, runner: str) -> None:
        self.db = db
        self.jobs = {job.name: job for job in jobs}
        self.tick_s = tick_s
        self.runner = runner
        self._conn: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self.tick()
                except CONNECTION_FAILURES + (errors.Unavailable, OSError) as err:
                    # The database is away: health says so; try again next tick on a new connection.
                    log.warning("scheduler: database unavailable: %s", err, extra={"event": "scheduler_unavailable"})
                    await self.close()
                except psycopg.Error as err:
                    # Not migrated yet (the health probe migrates), or a statement refused: the
                    # scheduler must outlive it.
                    log.warning("scheduler: %s: %s", type(err).__name__, err, extra={"event": "scheduler_failed"})
                    await self.close()
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_s)
        finally:
            await self.close()

    async def tick(self) -> list[str]:
        """Run every due job this replica can take; return their names."""
        conn = await self._connection()
        await store.ensure(conn, list(self.jobs))
        ran = []
        for name in await store.due(conn, list(self.jobs)):
            if not await store.try_lock(conn, name):
                continue
            try:
                await self._run_one(conn, self.jobs[name])
            finally:
                await store.unlock(conn, name)
            ran.append(name)
        return ran

    async def _run_one(self, conn: Any, job: Job) -> None:
        await store.started(conn, job.name, self.runner)
        started = time.perf_counter()
        try:
            result = await job.run()
        except Exception as err:  # a failing job must not stop the others; it is retried next interval
            log.exception("job %s failed", job.name, extra={"event": "job_failed", "job": job.name})
            observe.job_finished(job.name, 0, time.perf_counter() - started, ok=False)
            await store.failed(conn, job.name, f"{type(err).__name__}: {err}", job.interval_s)
            return
        seconds = time.perf_counter() - started
        observe.job_finished(job.name, result.items, seconds, ok=True)
        await store.succeeded(conn, job.name, result.items, 0.0 if result.more else job.interval_s)
        if result.items:
            log.info("job %s did %d", job.name, result.items,
                     extra={"event": "job_done", "job": job.name, "items": result.items, "more": result.more,
                            "seconds": round(seconds, 3)})

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = await self.db.open_dedicated_connection()
        return self._conn

    async def close(self) -> None:
        """Drop the lock holder's connection (and with it any job lock this replica holds)."""
        if self._conn is not None:
            with suppress(Exception):
                await self._conn.close()
            self._conn = None
