"""The scheduler: jobs run with no call made, once per interval across replicas, and a killed
runner's job is taken over."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request

import grpc
import psycopg
from prometheus_client.parser import text_string_to_metric_families

from loyalty_core.scheduler import Job, JobRun, Scheduler
from loyalty_core.store.db import Database
from tests.faults.helpers import Stubs, accrue, balance, checkout_request, create_programme, enrol
from tests.fixtures.keys import ALL_RIGHTS, BearerKey, create_key
from tests.fixtures.server import ROOT, ServerProcess, wait_for

INTERVAL_S = 1.0
TICK_S = 0.1


def test_a_two_second_hold_is_released_with_no_call_made(create_database):
    url = create_database(migrated=True)
    _name, key = create_key(url, ALL_RIGHTS)
    server = ServerProcess({"LOYALTY_DATABASE_URL": url, "LOYALTY_JOB_EXPIRY_INTERVAL_S": str(INTERVAL_S),
                            "LOYALTY_JOB_TICK_S": str(TICK_S), "LOYALTY_LEDGER_GAUGES_MAX_AGE_S": "0"}).start()
    try:
        server.wait_serving()
        with grpc.insecure_channel(server.address) as ch:
            stubs = Stubs(grpc.intercept_channel(ch, BearerKey(key)))
            programme = create_programme(stubs, hold_ttl_seconds=2)
            member = enrol(stubs, programme)
            accrue(stubs, programme, member, 1_000)
            stubs.checkout.Checkout(checkout_request(programme, member, "left-at-till", 500, 300), timeout=10)
            held_at = time.monotonic()
            assert balance(stubs, programme, member).held_points == 300
            # Nobody calls RunExpiry: the hold's 2 s, then one interval, plus a second of slack.
            wait_for(lambda: balance(stubs, programme, member).held_points == 0, timeout_s=2 + INTERVAL_S + 1,
                     what="the scheduled expiry to release the hold")
            assert time.monotonic() - held_at >= 2  # not before its lifetime ended
            got = balance(stubs, programme, member)
            assert (got.active_points, got.spent_total_points) == (1_000, 0)
        samples = _scrape(server.metrics_port)
        assert samples[("loyalty_job_runs_total", (("job", "expiry"), ("result", "ok")))] >= 1
        assert samples[("loyalty_job_items_total", (("job", "expiry"),))] >= 1
        assert samples[("loyalty_job_last_success_timestamp_seconds", (("job", "expiry"),))] > time.time() - 60
        assert ("loyalty_job_lag_seconds", (("job", "level_review"),)) in samples
    finally:
        assert server.terminate() == 0


def test_three_replicas_run_each_job_once_per_interval(create_database):
    url = create_database(migrated=True)
    runs: list[tuple[str, float, float]] = []  # (runner, start, end)

    def counting(runner: str) -> Job:
        async def run() -> JobRun:
            started = time.monotonic()
            await asyncio.sleep(0.05)  # long enough for the other replicas' ticks to meet it running
            runs.append((runner, started, time.monotonic()))
            return JobRun(1)
        return Job("counted", INTERVAL_S, run)

    async def replicas(seconds: float) -> None:
        dbs = [Database(url, pool_min_size=1, pool_max_size=2) for _ in range(3)]
        for db in dbs:
            await db.open(wait=True)
        stop = asyncio.Event()
        schedulers = [Scheduler(db, [counting(f"r{i}")], tick_s=TICK_S, runner=f"r{i}") for i, db in enumerate(dbs)]
        tasks = [asyncio.create_task(s.run(stop)) for s in schedulers]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)
        for db in dbs:
            await db.close()

    seconds = 4.5
    asyncio.run(replicas(seconds))
    # Due at once, then one interval after each finished run: 5 runs in 4.5 s, never 3 per interval.
    assert 4 <= len(runs) <= 5, runs
    ordered = sorted(runs, key=lambda r: r[1])
    for before, after in zip(ordered, ordered[1:]):
        assert after[1] >= before[2] + INTERVAL_S - TICK_S, ordered  # never overlapping, an interval apart


RUNNER = textwrap.dedent("""
    import asyncio, sys
    from loyalty_core.scheduler import Job, JobRun, Scheduler
    from loyalty_core.store.db import Database

    async def main(url):
        async with Database(url, pool_min_size=1, pool_max_size=1) as db:
            async def stuck():
                print("started", flush=True)
                await asyncio.sleep(3600)  # killed here, mid-run
                return JobRun(1)
            await Scheduler(db, [Job("handed_over", 1.0, stuck)], tick_s=0.1, runner="doomed").run(asyncio.Event())

    asyncio.run(main(sys.argv[1]))
""")


def test_a_killed_runner_hands_its_job_over(create_database):
    url = create_database(migrated=True)
    doomed = subprocess.Popen([sys.executable, "-c", RUNNER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert doomed.stdout is not None and doomed.stdout.readline().strip() == "started"
        taken: list[str] = []

        async def take_over() -> tuple[list[str], list[str]]:
            async with Database(url, pool_min_size=1, pool_max_size=1) as db:
                async def run() -> JobRun:
                    taken.append("survivor")
                    return JobRun(1)
                survivor = Scheduler(db, [Job("handed_over", 1.0, run)], tick_s=TICK_S, runner="survivor")
                while_held = await survivor.tick()  # the doomed runner holds it: not run twice
                doomed.send_signal(signal.SIGKILL)
                doomed.wait(10)
                deadline = time.monotonic() + INTERVAL_S + 1
                after = []
                while not after and time.monotonic() < deadline:
                    after = await survivor.tick()
                    await asyncio.sleep(TICK_S)
                await survivor.close()
                return while_held, after

        while_held, after = asyncio.run(take_over())
        assert while_held == [] and after == ["handed_over"] and taken == ["survivor"]
        with psycopg.connect(url) as conn:
            runner, items, last_error = conn.execute(
                "SELECT last_runner, last_items, last_error FROM scheduled_job WHERE name = 'handed_over'").fetchone()
        assert (runner, items, last_error) == ("survivor", 1, "")
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait()
        if doomed.stdout is not None:
            doomed.stdout.close()


def _scrape(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_idempotency_purge_runs_as_a_scheduled_job(create_database):
    from loyalty_core.clock import ManualClock
    from loyalty_core.model import CreateProgramme, Programme
    from loyalty_core.service import programmes
    from loyalty_core.service.jobs import scheduled_jobs
    from tests.fixtures.clock import START_US
    from tests.fixtures.server import make_test_settings

    url = create_database(migrated=True)
    clock = ManualClock(START_US)

    async def scenario() -> tuple[list[str], list[str]]:
        async with Database(url, pool_min_size=1, pool_max_size=2) as db:
            for name in ("old-1", "old-2"):
                await programmes.create(db, clock, CreateProgramme(name, Programme(
                    name=name, currency_code="EUR", point_value_minor=1)))
            clock.advance(days=31)
            jobs = [j for j in scheduled_jobs(make_test_settings(url), db, clock) if j.name == "purge_idempotency"]
            scheduler = Scheduler(db, jobs, tick_s=TICK_S, runner="test")
            try:
                return await scheduler.tick(), await scheduler.tick()
            finally:
                await scheduler.close()

    first, second = asyncio.run(scenario())
    assert (first, second) == (["purge_idempotency"], [])  # done, then not due for an interval
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM idempotency_key").fetchone()[0] == 0
        assert conn.execute("SELECT last_items FROM scheduled_job WHERE name = 'purge_idempotency'").fetchone()[0] == 2
