"""Database: transactions re-run on serialization failures, connection failures become Unavailable."""

import psycopg
import psycopg.errors
import pytest

from loyalty_core import errors
from loyalty_core.store.db import Database


async def test_a_transaction_commits_and_returns(db: Database):
    async def body(conn, x):
        return (await (await conn.execute("SELECT %s::int + 1", (x,))).fetchone())[0]

    assert await db.run_in_transaction(body, 41) == 42
    assert await db.check()


async def test_a_serialization_failure_re_runs_the_whole_body(db: Database):
    calls = []

    async def body(conn):
        calls.append(1)
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS scratch (x int)")
        if len(calls) < 3:
            raise psycopg.errors.SerializationFailure("could not serialize access")
        return len(calls)

    assert await db.run_in_transaction(body) == 3


async def test_retries_are_bounded(db: Database):
    async def body(conn):
        raise psycopg.errors.DeadlockDetected("deadlock detected")

    with pytest.raises(psycopg.errors.DeadlockDetected):
        await db.run_in_transaction(body)


async def test_an_error_rolls_the_transaction_back(db: Database):
    async def body(conn):
        await conn.execute("CREATE TABLE rolled_back_table (x int)")
        raise errors.NotFound("member_not_found", "no such member")

    with pytest.raises(errors.NotFound):
        await db.run_in_transaction(body)
    async with db.connection() as conn:
        assert (await (await conn.execute("SELECT to_regclass('rolled_back_table')")).fetchone())[0] is None


async def test_an_unreachable_database_is_unavailable():
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    down = Database("postgresql://postgres@127.0.0.1:1/none", pool_min_size=0, pool_max_size=1,
                    pool_timeout_s=0.5, connect_timeout_s=1)
    await down.open()
    try:
        with pytest.raises(errors.Unavailable) as caught:
            await down.run_in_transaction(lambda conn: conn.execute("SELECT 1"))
        assert caught.value.code == "database_unavailable"
        assert "127.0.0.1" not in caught.value.message  # no connection string in errors
        assert not await down.check(timeout_s=0.5)
    finally:
        await down.close()


async def test_pool_stats(db: Database):
    async with db.connection():
        stats = db.stats()
        assert stats["in_use"] >= 1 and stats["max_size"] == 4 and stats["waiting"] == 0
