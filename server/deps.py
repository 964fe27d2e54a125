"""Deps: what every servicer is constructed with (database, clock, metrics, settings, SMS sender)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from loyalty_core.clock import Clock, SystemClock
from loyalty_core.settings import Settings
from loyalty_core.sms import SmsSender, sender_from_settings
from loyalty_core.store.db import Database
from server.health import Health
from server.metrics import Metrics


@dataclass
class Deps:
    """Built once per process by ``Deps.create``; tests pass their own clock and registry."""

    settings: Settings
    db: Database
    clock: Clock = field(default_factory=SystemClock)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # None: the sender the settings name. Servicers read it at each call, so a test may swap it.
    sms: SmsSender | None = None
    metrics: Metrics = field(init=False)
    health: Health = field(init=False)

    def __post_init__(self) -> None:
        if self.sms is None:
            self.sms = sender_from_settings(self.settings)
        self.metrics = Metrics(self.registry)
        self.metrics.watch_pool(self.db.stats)
        self.metrics.watch_ledger(self.db.url, self.clock, self.settings.ledger_gauges_max_age_s)
        self.health = Health(
            self.db,
            interval_s=self.settings.health_probe_interval_s,
            migrate_on_start=self.settings.migrate_on_start,
            migrations_url=self.db.url,
            distribution=self.settings.database_distribution,
        )
        self.health.on_change.append(lambda ok: self.metrics.db_up.set(1 if ok else 0))
