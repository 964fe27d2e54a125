"""Fixtures of the short Citus run in the normal suite: one distributed database on the session's
coordinator and two workers (tests/fixtures/citus.py), a server on it, and what the coordinator
sent to the workers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest

from loyalty_core.clock import ManualClock
from loyalty_core.store import migrate
from tests.fixtures.citus import Cluster
from tests.fixtures.keys import ALL_RIGHTS, BearerKey, create_key
from tests.fixtures.server import ServerThread, make_test_settings
from tests.grpc.conftest import Api

# A shard's name in a statement the coordinator sends: the table's name, "_", the shard's id.
_SHARD_NAME = re.compile(r"\b([a-z_]+)_(\d{6,})\b")


@pytest.fixture(scope="session")
def database_url(citus_cluster: Cluster) -> Iterator[str]:
    """A migrated database on Citus, distributed by loyalty-core's own migration (``on``: refused
    without Citus), whose sessions log every command the coordinator sends to a worker."""
    url = citus_cluster.create_database("loyalty_citus_suite")
    asyncio.run(migrate.migrate(url, distribution="on"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER DATABASE loyalty_citus_suite SET citus.log_remote_commands = on")
        conn.execute("ALTER DATABASE loyalty_citus_suite SET log_min_messages = notice")
    yield url
    citus_cluster.drop_database("loyalty_citus_suite")


@dataclass
class Shard:
    table: str
    colocation_id: int
    # The hash range's start: colocated shards of one member share it.
    range_start: int


@dataclass
class RemoteCommands:
    """The coordinator's log of what it sent to the workers, read from an offset."""

    log: Path
    shards: dict[int, Shard]

    def offset(self) -> int:
        return self.log.stat().st_size

    def shards_since(self, offset: int) -> list[Shard]:
        with open(self.log, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            text = f.read()
        sent = [line for line in text.splitlines() if "issuing" in line]
        return [self.shards[int(shard_id)] for line in sent for _, shard_id in _SHARD_NAME.findall(line)
                if int(shard_id) in self.shards]


@pytest.fixture(scope="session")
def remote_commands(citus_cluster: Cluster, database_url: str) -> RemoteCommands:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT s.shardid, s.logicalrelid::text, p.colocationid, coalesce(s.shardminvalue::bigint, 0)"
            " FROM pg_dist_shard s JOIN pg_dist_partition p USING (logicalrelid)").fetchall()
    return RemoteCommands(citus_cluster.data / "node0" / "log", {r[0]: Shard(r[1], r[2], r[3]) for r in rows})


@pytest.fixture
def citus_api(database_url: str, clock: ManualClock) -> Iterator[Api]:
    """A server on the distributed database (no scheduled jobs: only the test's calls send commands)."""
    server = ServerThread(make_test_settings(database_url, jobs_enabled=False), clock).start()
    _name, key = create_key(database_url, ALL_RIGHTS)
    try:
        with grpc.insecure_channel(server.address) as ch:
            yield Api(grpc.intercept_channel(ch, BearerKey(key)))
    finally:
        server.stop()

