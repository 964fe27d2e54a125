"""Migrations: apply numbered SQL files once, in order, under an advisory lock, in one transaction."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from loyalty_core.store import distribute

log = logging.getLogger(__name__)

VERSION_TABLE = "schema_migrations"
# pg_advisory_xact_lock key shared by every loyalty-core process: "loyalty-migrate" as an int64.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"loyalty-core migrations").digest()[:8], "big", signed=True)
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    """The migrations on disk and the ones recorded in the database disagree."""


def discover(folder: Path | None = None) -> list[Migration]:
    """The migrations in ``folder`` (default: the package's own ``store/migrations``), by version.

    A file that looks like a migration but is misnamed, or two files with one number, are refused:
    a silently skipped migration is worse than a start-up that fails.
    """
    root: Any = folder if folder is not None else resources.files("loyalty_core.store.migrations")
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        match = FILE_NAME.match(name)
        if not match:
            raise MigrationError(f"migration file {name!r} must be named NNNN_lower_snake_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations are numbered {version:04d}: {found[version].name}, {name}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


async def applied_versions(conn: psycopg.AsyncConnection[Any]) -> dict[int, str] | None:
    """version -> checksum of what is recorded, or None when the version table does not exist yet."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,))
    row = await cur.fetchone()
    if not row or not row[0]:
        return None
    cur = await conn.execute(f"SELECT version, checksum FROM {VERSION_TABLE}")
    return {v: c for v, c in await cur.fetchall()}


async def pending(conn: psycopg.AsyncConnection[Any], migrations: list[Migration] | None = None) -> list[Migration]:
    """The migrations not yet applied (all of them on an empty database)."""
    migrations = discover() if migrations is None else migrations
    done = await applied_versions(conn) or {}
    return [m for m in migrations if m.version not in done]


async def migrate(url: str, migrations: list[Migration] | None = None, *, connect_timeout_s: int = 10,
                  distribution: str = "auto") -> list[int]:
    """Apply what is pending; return the versions this call applied (empty when another did).

    All of it runs in one transaction holding ``pg_advisory_xact_lock(LOCK_KEY)``: a second process
    starting at the same moment waits for the lock, then finds everything applied. A failure rolls
    everything back, so the database is never left half-migrated. (CREATE INDEX CONCURRENTLY and
    the like cannot run in a transaction and so cannot be migrations here.) On Citus
    (``distribution``: the setting ``database_distribution``) the same transaction then distributes
    the tables it created (``store.distribute``).
    """
    migrations = discover() if migrations is None else migrations
    applied: list[int] = []
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=connect_timeout_s) as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )"""
            )
            done = await applied_versions(conn) or {}
            for m in migrations:
                if m.version in done:
                    if done[m.version] != m.checksum:
                        raise MigrationError(
                            f"migration {m.version:04d}_{m.name} was changed after it was applied; "
                            "add a new migration instead"
                        )
                    continue
                log.info("applying migration %04d_%s", m.version, m.name, extra={"event": "migration_applied",
                                                                                 "version": m.version})
                await conn.execute(m.sql.encode())  # no parameters: several statements in one go
                await conn.execute(
                    f"INSERT INTO {VERSION_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
                applied.append(m.version)
            # Asked even when nothing was pending: "on" refuses a database without Citus every time.
            if await distribute.wanted(conn, distribution) and applied:
                await distribute.distribute(conn, local={VERSION_TABLE})
            unknown = sorted(set(done) - {m.version for m in migrations})
            if unknown:
                # A newer release migrated this database; running old code on it is not safe.
                raise MigrationError(f"the database has migrations this release does not know: {unknown}")
    return applied


async def is_current(conn: psycopg.AsyncConnection[Any], migrations: list[Migration] | None = None) -> bool:
    """True when every known migration is recorded (health says SERVING only then)."""
    migrations = discover() if migrations is None else migrations
    done = await applied_versions(conn)
    return done is not None and all(m.version in done for m in migrations)
