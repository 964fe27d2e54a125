"""`loyalty-core purge-idempotency`: keys older than the replay window go, a batch per transaction,
bounded by --max-batches and resumed by the next run; keys inside the window stay and replay."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from loyalty_core.clock import US_PER_S, ManualClock
from loyalty_core.model import CreateProgramme, Programme
from loyalty_core.service import programmes
from loyalty_core.store.db import Database


def create(request_id: str) -> CreateProgramme:
    return CreateProgramme(request_id, Programme(name=f"p-{request_id}", currency_code="EUR", point_value_minor=1))


def purge(database_url: str, as_of_us: int, *args: str) -> str:
    as_of = datetime.fromtimestamp(as_of_us / US_PER_S, UTC).isoformat()
    run = subprocess.run([sys.executable, "-m", "server", "purge-idempotency", "--as-of", as_of, *args],
                         capture_output=True, text=True, timeout=60,
                         env={"LOYALTY_DATABASE_URL": database_url, "PATH": ""})
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def kept(database_url: str, request_ids: list[str]) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT request_id FROM idempotency_key WHERE request_id = ANY(%s) ORDER BY request_id",
                            (request_ids,)).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def own_database_url(create_database) -> str:
    """A database of its own: the counts below are of this test's keys only."""
    return create_database(migrated=True)


async def test_keys_older_than_30_days_are_purged_in_bounded_resumable_batches(
        own_database_url: str, clock: ManualClock) -> None:
    database_url = own_database_url
    async with Database(database_url, pool_min_size=1, pool_max_size=2) as db:
        await purge_and_replay(db, clock, database_url)


async def purge_and_replay(db: Database, clock: ManualClock, database_url: str) -> None:
    old = sorted(str(uuid.uuid4()) for _ in range(3))
    for request_id in old:
        await programmes.create(db, clock, create(request_id))
    clock.advance(days=29)
    recent = str(uuid.uuid4())
    first = await programmes.create(db, clock, create(recent))
    as_of = clock.now_us() + 1 * 86_400 * US_PER_S + 1  # the old ones are 30 days and a moment old
    assert kept(database_url, old + [recent]) == sorted(old + [recent])

    assert purge(database_url, as_of, "--batch-size", "2", "--max-batches", "1") == \
        "purged 2 idempotency keys older than 30 days"
    assert len(kept(database_url, old)) == 1  # bounded: one batch of two
    assert purge(database_url, as_of, "--batch-size", "2") == "purged 1 idempotency keys older than 30 days"
    assert kept(database_url, old + [recent]) == [recent]
    # Inside the window a retry still gets the stored answer.
    assert await programmes.create(db, clock, create(recent)) == first
