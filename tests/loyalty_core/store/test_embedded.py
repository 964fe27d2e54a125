"""The embedded PostgreSQL's own log holds no value of a failed statement (phones, card numbers)."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from loyalty_core.store import embedded
from tests.fixtures.database import TEST_DATA_DIR


@pytest.fixture
def fresh_embedded() -> Iterator[embedded.EmbeddedPostgres]:
    """An embedded server of its own (inside the project folder, as the README asks), removed after."""
    pg = embedded.start(TEST_DATA_DIR.parent / f"test-log-{secrets.token_hex(4)}")
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(pg.data_dir, ignore_errors=True)


def duplicate_phone(conn: psycopg.Connection, phone: str) -> None:
    """A unique violation whose DETAIL and statement both hold the phone (a literal, not a $1)."""
    insert = sql.SQL("INSERT INTO member_phone VALUES ({})").format(sql.Literal(phone))
    conn.execute(insert)
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(insert)


def log_text(pg: embedded.EmbeddedPostgres, expected: str) -> str:
    """The server's log once ``expected`` is in it, or after 2 s (the logger writes asynchronously)."""
    log = pg.data_dir / "pg" / "log"
    deadline = time.monotonic() + 2
    while expected not in (text := log.read_text(errors="replace")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return text


def test_a_unique_violation_on_a_phone_leaves_the_phone_out_of_the_log(fresh_embedded) -> None:
    with psycopg.connect(fresh_embedded.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE member_phone (phone text UNIQUE)")
        duplicate_phone(conn, "+447700900123")
        # The control: a session with PostgreSQL's default log settings puts its phone in the log,
        # so a log without the first phone is the settings' doing, not a log that was never written.
        conn.execute("SET log_min_messages = warning")  # PostgreSQL's defaults, verbosity raised
        conn.execute("SET log_error_verbosity = verbose")
        conn.execute("SET log_min_error_statement = error")
        duplicate_phone(conn, "+447700900456")
    text = log_text(fresh_embedded, "+447700900456")
    assert "+447700900456" in text
    assert "+447700900123" not in text and "7700900123" not in text
