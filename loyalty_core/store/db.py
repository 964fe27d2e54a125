"""Database: the connection pool, one transaction per use case, connection failures as Unavailable."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
import psycopg.errors
import psycopg_pool
from psycopg import pq

from loyalty_core import errors, observe
from loyalty_core.store import distribute
from loyalty_core.store.cache import TtlCache
from loyalty_core.store.member_calls import MemberCalls

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# A transaction that lost a serialization race or a deadlock is safe to run again from the start.
RETRYABLE = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
# Everything that says "the database cannot be reached now" rather than "your query is wrong".
# (SerializationFailure is an OperationalError too: RETRYABLE is tested first.)
CONNECTION_FAILURES = (psycopg.OperationalError, psycopg.InterfaceError, psycopg_pool.PoolTimeout)
# SQLSTATEs of a server that went away (connection exceptions, shut down, starting up). A lock or
# statement time-out (also OperationalError) says nothing about the server and is not one of them.
_SERVER_GONE = ("08", "57P01", "57P02", "57P03")
# How long the health check waits for a pooled connection before it asks on one of its own: an
# empty pool may mean a dead server, whose refusal a direct connection learns at once.
_CHECK_POOL_WAIT_S = 0.2


# Whether each connection's database runs Citus (distribute.is_citus), asked once per connection.
_ON_CITUS: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


async def on_citus(conn: Any) -> bool:
    """Whether ``conn``'s database is distributed by Citus: the pool asks when it opens a
    connection, any other connection on its first question (a round trip, once)."""
    found = _ON_CITUS.get(conn)
    if found is None:
        found = _ON_CITUS[conn] = await distribute.is_citus(conn)
    return found


# What a unique violation may arrive as: a worker's, which Citus passes on from inside a savepoint as
# an internal error with the worker's message.
UNIQUE_VIOLATIONS = (psycopg.errors.UniqueViolation, psycopg.errors.InternalError_)
_SHARD_UNIQUE_VIOLATION = re.compile(r'^duplicate key value violates unique constraint "(\w+?)_\d+"')


def violated_constraint(err: psycopg.Error) -> str | None:
    """The name of the unique constraint ``err`` says was violated, None when it is no unique
    violation. Citus passes on a worker's error without the constraint's field, naming in its message
    the shard's copy, ``"<name>_<shard id>"``."""
    if isinstance(err, psycopg.errors.UniqueViolation) and err.diag.constraint_name:
        return err.diag.constraint_name
    found = _SHARD_UNIQUE_VIOLATION.match(err.diag.message_primary or "")
    return found.group(1) if found else None


async def _ask_citus(conn: Any) -> None:
    await on_citus(conn)


# The refusal of a call that waited past lock_timeout for a member another call holds.
MEMBER_BUSY = "member_busy"


class Database:
    """An ``AsyncConnectionPool`` with the rules every use case follows.

    ``run_in_transaction(fn, *args)`` is the way in: it calls ``await fn(conn, *args)`` inside one
    transaction and runs it again (up to ``tx_attempts_max``) on a serialization failure or a
    deadlock, so ``fn`` must have no effect outside the database. Lost connections and pool
    time-outs become ``errors.Unavailable("database_unavailable")``.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        pool_timeout_s: float = 5.0,
        pool_reconnect_timeout_s: float = 5.0,
        connect_timeout_s: float = 3.0,
        tx_attempts_max: int = 5,
        member_lock_timeout_s: float = 1.0,
        member_calls_max: int = 3,
        programme_cache_ttl_s: float = 0.0,
        name: str = "loyalty",
    ) -> None:
        self.url = url
        # A programme with its levels and revision (service.rules.Rules) by programme id: quotes
        # take it as it is, writes check its revision; this process's programme and level writes
        # forget the entry when they commit.
        self.programmes: TtlCache[Any] = TtlCache(programme_cache_ttl_s)
        self.tx_attempts_max = tx_attempts_max
        self.member_calls = MemberCalls(member_calls_max)
        # Called (no arguments) when a call finds the server gone, so health need not wait for its probe.
        self.on_server_gone: list[Callable[[], None]] = []
        self.connect_timeout_s = max(1, round(connect_timeout_s))
        self.pool = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=pool_min_size,
            max_size=pool_max_size,
            timeout=pool_timeout_s,
            reconnect_timeout=pool_reconnect_timeout_s,
            name=name,
            open=False,
            configure=_ask_citus,
            # prepare_threshold=0: every statement is prepared on first use and reused by the
            # connection; psycopg sends Parse with the first Execute, so no extra round trip.
            # autocommit: a read outside a transaction needs no BEGIN/COMMIT, and a transaction
            # says so (transaction() and pipelined_transaction() send their own BEGIN).
            # lock_timeout: see Settings.member_lock_timeout_s (the error is member_busy).
            kwargs={"prepare_threshold": 0, "autocommit": True, "connect_timeout": self.connect_timeout_s,
                    "options": f"-c lock_timeout={round(member_lock_timeout_s * 1000)}"},
        )

    @classmethod
    def from_settings(cls, settings: Any, url: str) -> Database:
        return cls(
            url,
            pool_min_size=settings.pool_min_size,
            pool_max_size=settings.pool_max_size,
            pool_timeout_s=settings.pool_timeout_s,
            pool_reconnect_timeout_s=settings.pool_reconnect_timeout_s,
            connect_timeout_s=settings.db_connect_timeout_s,
            tx_attempts_max=settings.tx_attempts_max,
            member_lock_timeout_s=settings.member_lock_timeout_s,
            member_calls_max=settings.member_calls_max,
            programme_cache_ttl_s=settings.programme_cache_ttl_s,
        )

    async def open(self, *, wait: bool = False, timeout_s: float = 30.0) -> None:
        """Open the pool; with ``wait=False`` it fills in the background, so a database that is
        down at start-up does not stop the server from starting (health says NOT_SERVING)."""
        await self.pool.open(wait=wait, timeout=timeout_s)

    async def close(self, timeout_s: float = 5.0) -> None:
        await self.pool.close(timeout=timeout_s)

    async def __aenter__(self) -> Database:
        await self.open(wait=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in autocommit, outside any retry: each statement commits by itself
        (reads that need no transaction)."""
        try:
            async with self.pool.connection() as conn:
                yield conn
        except CONNECTION_FAILURES as err:
            if isinstance(err, RETRYABLE):
                raise
            if isinstance(err, psycopg.errors.LockNotAvailable):
                raise errors.Unavailable(MEMBER_BUSY, "another call holds this member; retry shortly") from err
            if isinstance(err, psycopg.Error) and (err.sqlstate is None or err.sqlstate.startswith(_SERVER_GONE)):
                for callback in self.on_server_gone:
                    callback()
            raise _unavailable(err) from err

    @asynccontextmanager
    async def dedicated_connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection of its own, outside the pool, in autocommit: for a batch job that keeps a
        cursor open while its work takes pooled connections (so a pool of one cannot starve it)."""
        async with await self.open_dedicated_connection() as conn:
            yield conn

    async def open_dedicated_connection(self) -> psycopg.AsyncConnection[Any]:
        """``dedicated_connection`` for a caller that keeps it across calls (the scheduler's lock
        holder) and closes it itself."""
        try:
            return await psycopg.AsyncConnection.connect(self.url, autocommit=True,
                                                         connect_timeout=self.connect_timeout_s)
        except CONNECTION_FAILURES as err:
            raise _unavailable(err) from err

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """One attempt of one transaction. A ``with`` block cannot be re-run, so this does not
        retry: use ``run_in_transaction`` for anything that may meet a serialization failure."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def pipelined_transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """One attempt of one transaction in pipeline mode from before its BEGIN to after its COMMIT:
        BEGIN travels with the first statements and COMMIT with the last, so neither costs a round
        trip of its own. Results are read when asked for (a read sends what is queued, then waits)."""
        async with self.connection() as conn:
            # BEGIN and COMMIT are sent as statements (the connection is in autocommit): psycopg's
            # own transaction() syncs the pipeline around them, a round trip each.
            try:
                async with conn.pipeline():
                    await conn.execute("BEGIN")
                    yield conn
                    await conn.execute("COMMIT")
            finally:
                await _end(conn)

    async def run_in_transaction(
        self,
        fn: Callable[Concatenate[psycopg.AsyncConnection[Any], P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``await fn(conn, *args)`` in one transaction, re-run on 40001/40P01 a bounded number of times."""
        return await self._run(self.transaction, fn, *args, **kwargs)

    async def run_in_pipeline(
        self,
        fn: Callable[Concatenate[psycopg.AsyncConnection[Any], P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """``run_in_transaction`` in pipeline mode (``pipelined_transaction``): ``fn`` must not enter
        a pipeline of its own (a nested one syncs on entry, a round trip)."""
        return await self._run(self.pipelined_transaction, fn, *args, **kwargs)

    async def _run(self, transaction: Callable[[], Any], fn: Callable[..., Awaitable[T]], *args: Any,
                   **kwargs: Any) -> T:
        for attempt in range(1, self.tx_attempts_max + 1):
            try:
                # Points the attempt moved are reported to the metrics only once it commits.
                with observe.transaction():
                    async with transaction() as conn:
                        return await fn(conn, *args, **kwargs)
            except RETRYABLE as err:
                observe.tx_retry(err.sqlstate or "")
                if attempt == self.tx_attempts_max:
                    log.warning("transaction gave up after %d attempts: %s", attempt, err.sqlstate)
                    raise
                # Jittered backoff so the transactions that collided do not collide again.
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))
        raise AssertionError("unreachable")

    async def check(self, timeout_s: float = 2.0) -> bool:
        """True when the database answers a query now (for the health probe).

        A pooled connection asks first. When none comes in time the pool may only be busy (every
        connection lent to calls queued on one member's lock, say), not the database down, so a
        connection of its own asks again: a busy server must not call itself unhealthy and refuse
        every call. A pooled connection the server dropped is no verdict either (the pool replaces
        it): the direct ask decides."""
        try:
            async with asyncio.timeout(timeout_s):
                async with self.pool.connection(timeout=_CHECK_POOL_WAIT_S) as conn:
                    await conn.execute("SELECT 1")
            return True
        except (TimeoutError, *CONNECTION_FAILURES):
            return await self._answers_directly(timeout_s)

    async def _answers_directly(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=max(1, round(timeout_s)))
                async with conn:
                    await conn.execute("SELECT 1")
            return True
        except (TimeoutError, psycopg.Error):
            return False

    async def discard_broken(self) -> None:
        """Close idle connections that the server dropped (e.g. after a database restart)."""
        try:
            await self.pool.check()
        except CONNECTION_FAILURES:  # pragma: no cover - check() logs and discards on its own
            pass

    def stats(self) -> dict[str, int]:
        """Pool size, connections in use and requests waiting, for the metrics."""
        s = self.pool.get_stats()
        size = s.get("pool_size", 0)
        return {
            "size": size,
            "max_size": s.get("pool_max", self.pool.max_size),
            "in_use": size - s.get("pool_available", 0),
            "waiting": s.get("requests_waiting", 0),
        }


@asynccontextmanager
async def savepoint(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[None]:
    """A savepoint in the write's transaction (a failure inside undoes only what it wrapped).

    In pipeline mode libpq learns that a transaction is open only at a sync, so after a BEGIN sent
    in the pipeline psycopg's ``transaction()`` could take the connection for idle and BEGIN and
    COMMIT on its own. A sync first makes the status current (one round trip, on the rare paths
    that need a savepoint)."""
    if conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
        async with conn.pipeline() as pipeline:
            await pipeline.sync()
    async with conn.transaction():
        yield


async def _end(conn: psycopg.AsyncConnection[Any]) -> None:
    """After ``pipelined_transaction``: roll back what did not commit, through psycopg's rollback()
    (which also forgets the statements it prepared, as an aborted pipeline skipped them). Its own
    failure must not hide the error on its way: the pool discards a connection left broken or in a
    transaction."""
    try:
        if conn.pgconn.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR):
            await conn.rollback()
    except psycopg.Error as err:
        log.warning("could not end a pipelined transaction: %s", type(err).__name__)


def _unavailable(err: BaseException) -> errors.Unavailable:
    # The message names the failure's class, never the connection string (it may hold a password).
    return errors.Unavailable("database_unavailable", f"the database cannot be reached now ({type(err).__name__})")
