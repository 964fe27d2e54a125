"""Migrations: applied once, in order, under a lock; changed or unknown history is refused."""

import asyncio
from pathlib import Path

import psycopg
import pytest

from loyalty_core.store import distribute, migrate
from tests.fixtures import citus


def write(folder: Path, files: dict[str, str]) -> list[migrate.Migration]:
    for name, text in files.items():
        (folder / name).write_text(text)
    return migrate.discover(folder)


def test_package_migrations_are_found_in_order():
    found = migrate.discover()
    assert [m.version for m in found] == sorted(m.version for m in found)
    assert found and found[0].version == 1


def test_misnamed_or_duplicate_files_are_refused(tmp_path: Path):
    (tmp_path / "1_x.sql").write_text("")
    with pytest.raises(migrate.MigrationError, match="NNNN"):
        migrate.discover(tmp_path)
    (tmp_path / "1_x.sql").unlink()
    (tmp_path / "0001_a.sql").write_text("")
    (tmp_path / "0001_b.sql").write_text("")
    with pytest.raises(migrate.MigrationError, match="two migrations"):
        migrate.discover(tmp_path)


async def test_two_runners_at_once_apply_each_migration_once(tmp_path: Path, create_database):
    url = create_database()
    # Not idempotent on purpose (CREATE TABLE without IF NOT EXISTS), and slow enough to overlap.
    ms = write(tmp_path, {
        "0001_first.sql": "CREATE TABLE t (x int); SELECT pg_sleep(0.3);",
        "0002_second.sql": "INSERT INTO t VALUES (1);",
    })
    a, b = await asyncio.gather(migrate.migrate(url, ms), migrate.migrate(url, ms))
    assert sorted([a, b]) == [[], [1, 2]]
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert await (await conn.execute("SELECT count(*) FROM t")).fetchone() == (1,)
        assert await migrate.is_current(conn, ms)
        assert await migrate.applied_versions(conn) == {m.version: m.checksum for m in ms}
    assert await migrate.migrate(url, ms) == []


async def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path, create_database):
    url = create_database()
    ms = write(tmp_path, {"0001_ok.sql": "CREATE TABLE ok (x int);", "0002_bad.sql": "SELECT * FROM missing;"})
    with pytest.raises(psycopg.errors.UndefinedTable):
        await migrate.migrate(url, ms)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert await migrate.applied_versions(conn) is None
        assert not await migrate.is_current(conn, ms)


async def test_a_changed_or_unknown_migration_is_refused(tmp_path: Path, create_database):
    url = create_database()
    ms = write(tmp_path, {"0001_a.sql": "CREATE TABLE a (x int);", "0002_b.sql": "CREATE TABLE b (x int);"})
    await migrate.migrate(url, ms)
    changed = [ms[0], migrate.Migration(2, "b", "CREATE TABLE b (y int);")]
    with pytest.raises(migrate.MigrationError, match="changed after it was applied"):
        await migrate.migrate(url, changed)
    with pytest.raises(migrate.MigrationError, match="does not know"):
        await migrate.migrate(url, ms[:1])


def test_the_session_database_is_migrated(database_url: str):
    with psycopg.connect(database_url) as conn:
        versions = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    assert versions == {m.version for m in migrate.discover()}


async def test_distribution_on_refuses_a_database_without_citus_and_off_never_distributes(create_database):
    if citus.CITUS_MODE:
        url = create_database()
        await migrate.migrate(url, distribution="off")
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT count(*) FROM pg_dist_partition")
            assert (await cur.fetchone())[0] == 0
        return
    with pytest.raises(distribute.DistributionError, match="no citus extension"):
        await migrate.migrate(create_database(), distribution="on")
    with pytest.raises(distribute.DistributionError, match="must be one of"):
        await migrate.migrate(create_database(), distribution="yes")
