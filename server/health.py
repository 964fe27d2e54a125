"""Health: SERVING only while the database answers and is migrated; a background probe re-checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from grpc_health.v1 import health, health_pb2

from loyalty_core.store import migrate
from loyalty_core.store.db import Database

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    """The standard grpc.health.v1 service plus the probe that drives it.

    Status "" (the whole server) and every service of ours share one state: all of them need
    the database and nothing else. ``ready`` is read by the interceptor to fail fast with
    UNAVAILABLE while the database is away.
    """

    def __init__(self, db: Database, *, interval_s: float, migrate_on_start: bool, migrations_url: str,
                 distribution: str = "auto") -> None:
        self.db = db
        self.interval_s = interval_s
        self.migrate_on_start = migrate_on_start
        self.migrations_url = migrations_url
        self.distribution = distribution
        self.servicer = health.aio.HealthServicer()
        self.services: list[str] = [""]
        self.ready = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._migrated = False
        self._published: bool | None = None
        self.on_change: list[Callable[[bool], None]] = []
        # Set when a call finds the database gone: the probe runs at once rather than at its next tick.
        self._wake = asyncio.Event()
        db.on_server_gone.append(self._server_gone)

    def _server_gone(self) -> None:
        # Calls fail at once from now on; the probe confirms (NOT_SERVING) or clears it. Only the
        # first failure wakes it: the calls in flight that fail next change nothing.
        if self.ready:
            self.ready = False
            self._wake.set()

    def add_services(self, names: Iterable[str]) -> None:
        self.services.extend(n for n in names if n not in self.services)

    async def start(self) -> None:
        await self._publish(False)
        self._task = asyncio.create_task(self._run(), name="health-probe")

    async def probe_once(self) -> bool:
        """Migrate if needed and allowed, then check; never raises."""
        try:
            if not self._migrated:
                if self.migrate_on_start:
                    await migrate.migrate(self.migrations_url, distribution=self.distribution)
                async with self.db.connection() as conn:
                    self._migrated = await migrate.is_current(conn)
                if not self._migrated:
                    log.warning("database is not migrated; run `loyalty-core migrate`",
                                extra={"event": "database_not_migrated"})
                    return False
            if await self.db.check():
                return True
            # A restarted database leaves dead connections in the pool: drop them.
            await self.db.discard_broken()
            return False
        except migrate.MigrationError:
            log.exception("migrations refused", extra={"event": "migration_failed"})
            return False
        except Exception as err:  # the probe must survive anything the database throws at it
            log.warning("health probe failed: %s", type(err).__name__, extra={"event": "health_probe_failed"})
            return False

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            ok = await self.probe_once()
            if not self._stopping:
                await self._publish(ok)
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                pass

    async def _publish(self, ok: bool) -> None:
        self.ready = ok
        if ok == self._published:
            return
        if self._published is not None or ok:
            log.info("health %s", "SERVING" if ok else "NOT_SERVING", extra={"event": "health_changed", "serving": ok})
        self._published = ok
        for name in self.services:
            await self.servicer.set(name, SERVING if ok else NOT_SERVING)
        for callback in self.on_change:
            callback(ok)

    async def shutdown(self) -> None:
        """NOT_SERVING for good (graceful shutdown), and stop probing."""
        self._stopping = True
        self.ready = False
        await self.servicer.enter_graceful_shutdown()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
