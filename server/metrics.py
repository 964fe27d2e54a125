"""Prometheus metrics, defined once against an injectable registry, and the /metrics endpoint."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from loyalty_core import calc
from loyalty_core.clock import Clock
from loyalty_core.observe import WEBHOOK_DELIVERY_RESULTS
from loyalty_core.settings import split_host_port
from loyalty_core.store import gauges, webhooks

log = logging.getLogger(__name__)

# Seconds: from well under a millisecond (a cached read) to the pool time-out.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric of the server. Names follow go-grpc-prometheus, so existing dashboards work."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        labels = ("grpc_type", "grpc_service", "grpc_method")
        self.started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", labels, registry=registry
        )
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*labels, "grpc_code"),
            registry=registry,
        )
        self.handling_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from receiving an RPC to its status, by status code.",
            (*labels, "grpc_code"),
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.in_flight = Gauge(
            "grpc_server_in_flight_requests", "RPCs being handled now.", ("grpc_service", "grpc_method"),
            registry=registry,
        )
        self.pool_size = Gauge("loyalty_db_pool_connections", "Open connections in the pool.", registry=registry)
        self.pool_max = Gauge("loyalty_db_pool_max_connections", "Most connections the pool may open.",
                              registry=registry)
        self.pool_in_use = Gauge("loyalty_db_pool_connections_in_use", "Pooled connections lent out now.",
                                 registry=registry)
        self.pool_waiting = Gauge("loyalty_db_pool_requests_waiting", "Requests waiting for a connection.",
                                  registry=registry)
        self.db_up = Gauge("loyalty_db_up", "1 when the last health probe reached a migrated database.",
                           registry=registry)
        self.build_info = Gauge(
            "loyalty_build_info", "Always 1; labels say what is running.", ("version", "calc_impl"),
            registry=registry,
        )
        self.build_info.labels(version=version(), calc_impl=calc.IMPLEMENTATION).set(1)
        # What the ledger did, counted by the process that did it (sum over processes).
        points_labels = ("programme_id",)
        self.points_earned = Counter("loyalty_points_earned", "Points credited (orders, welcome, manual, "
                                     "refund returns), by programme.", points_labels, registry=registry)
        self.points_spent = Counter("loyalty_points_spent", "Points spent (captures, redemptions), by programme.",
                                    points_labels, registry=registry)
        self.points_expired = Counter("loyalty_points_expired", "Points burnt by the expiry run, by programme.",
                                      points_labels, registry=registry)
        self.points_held = Counter("loyalty_points_held", "Points put on hold by checkouts, by programme.",
                                   points_labels, registry=registry)
        self.idempotent_replays = Counter(
            "loyalty_idempotent_replays", "Writes answered from their stored result (same request_id and "
            "request), by method.", ("method",), registry=registry)
        self.tx_retries = Counter(
            "loyalty_tx_retries", "Transactions run again after a serialization failure or deadlock, by SQLSTATE.",
            ("sqlstate",), registry=registry)
        self.cards_locked = Counter(
            "loyalty_cards_locked", "Cards locked after too many wrong secret codes, by programme.",
            ("programme_id",), registry=registry)
        self.expiry_run_seconds = Histogram(
            "loyalty_expiry_run_seconds", "Duration of one expiry run.", buckets=LATENCY_BUCKETS_S + (30.0, 60.0),
            registry=registry)

        self.job_runs = Counter("loyalty_job_runs", "Scheduled job runs finished on this process, by job and "
                                "result (ok, failed).", ["job", "result"], registry=registry)
        self.job_items = Counter("loyalty_job_items", "Items (members, holds, keys, ...) scheduled jobs did on this "
                                 "process, by job.", ["job"], registry=registry)
        self.job_run_seconds = Histogram("loyalty_job_run_seconds", "Duration of one scheduled job run, by job.",
                                         ["job"], buckets=LATENCY_BUCKETS_S + (30.0, 60.0), registry=registry)
        self.webhook_deliveries = Counter(
            "loyalty_webhook_deliveries", "Attempts to deliver an event to a webhook, by subscription and result "
            "(delivered, refused, timeout, unreachable, dead_letter).", ["webhook_id", "result"], registry=registry)

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        """Read the pool's numbers at scrape time (no background task to keep them fresh)."""
        self.pool_size.set_function(lambda: stats()["size"])
        self.pool_max.set_function(lambda: stats()["max_size"])
        self.pool_in_use.set_function(lambda: stats()["in_use"])
        self.pool_waiting.set_function(lambda: stats()["waiting"])


    def points_moved(self, kind: str, programme_id: str, points: int) -> None:
        """``loyalty_core.observe``: a committed movement of ``kind``."""
        counter = _POINTS_COUNTER_BY_KIND.get(kind)
        if counter is not None:
            getattr(self, counter).labels(programme_id).inc(points)

    def idempotent_replay(self, method: str) -> None:
        self.idempotent_replays.labels(method).inc()

    def tx_retry(self, sqlstate: str) -> None:
        self.tx_retries.labels(sqlstate).inc()

    def expiry_run(self, seconds: float) -> None:
        self.expiry_run_seconds.observe(seconds)

    def job_finished(self, job: str, items: int, seconds: float, ok: bool) -> None:
        self.job_runs.labels(job, "ok" if ok else "failed").inc()
        self.job_items.labels(job).inc(items)
        self.job_run_seconds.labels(job).observe(seconds)

    def card_locked(self, programme_id: str) -> None:
        self.cards_locked.labels(programme_id).inc()

    def webhook_delivery(self, subscription_id: str, result: str) -> None:
        self.webhook_deliveries.labels(subscription_id, result).inc()

    def watch_ledger(self, url: str, clock: Clock, max_age_s: float) -> None:
        """Outstanding points, open holds, expiry lag and the outbox, read from the database at scrape time."""
        self.registry.register(LedgerCollector(url, clock, max_age_s, self.webhook_deliveries))


# Movement kinds (movement.kind) counted as earned, spent, expired or held points. Releases,
# reversals, activations and debt movements are visible in the ledger and the gauges.
_POINTS_COUNTER_BY_KIND = {
    "earned": "points_earned",
    "welcome": "points_earned",
    "manual_accrual": "points_earned",
    "event_bonus": "points_earned",
    "refund_return": "points_earned",
    "spent": "points_spent",
    "expired": "points_expired",
    "held": "points_held",
}


class LedgerCollector:
    """Reads ``loyalty_core.store.gauges`` when scraped, at most once per ``max_age_s``, on a
    connection of its own for the read (scrapes run in the HTTP thread, outside the server's
    event loop; a connection a few times a minute costs less than one kept open per process).
    A database that cannot be read leaves the gauges out and says so in loyalty_ledger_gauges_up.
    Each live subscription it reads gets its ``webhook_deliveries`` series, at 0 until used."""

    def __init__(self, url: str, clock: Clock, max_age_s: float, webhook_deliveries: Counter) -> None:
        self.url, self.clock, self.max_age_s = url, clock, max_age_s
        self.webhook_deliveries = webhook_deliveries
        self._lock = threading.Lock()
        self._reading: gauges.LedgerGauges | None = None
        self._read_at = float("-inf")

    def describe(self) -> list[Metric]:
        # Nothing at registration: collect() must not reach the database from register().
        return []

    def collect(self) -> Iterator[Metric]:
        reading = self._read()
        up = GaugeMetricFamily("loyalty_ledger_gauges_up", "1 when the last scrape could read the ledger's gauges.")
        up.add_metric([], 1 if reading else 0)
        yield up
        if reading is None:
            return
        outstanding = GaugeMetricFamily(
            "loyalty_outstanding_points", "Points owed to members (in lots and on certificates, held included), by programme and "
            "the UTC month they expire in ('never' for points that do not).", labels=["programme_id", "expiry_month"])
        for (programme_id, month), points in sorted(reading.outstanding_points.items()):
            outstanding.add_metric([programme_id, month], points)
        yield outstanding
        holds = GaugeMetricFamily("loyalty_open_holds", "Open checkout holds, by programme.", labels=["programme_id"])
        held = GaugeMetricFamily("loyalty_open_held_points", "Points in open holds, by programme.",
                                 labels=["programme_id"])
        oldest = GaugeMetricFamily("loyalty_oldest_open_hold_age_seconds", "Age of the oldest open hold, by programme.",
                                   labels=["programme_id"])
        for programme_id in sorted(reading.open_holds):
            holds.add_metric([programme_id], reading.open_holds[programme_id])
            held.add_metric([programme_id], reading.held_points[programme_id])
            oldest.add_metric([programme_id], reading.oldest_hold_age_s[programme_id])
        yield from (holds, held, oldest)
        lag = GaugeMetricFamily("loyalty_expiry_lag_seconds", "Age of the oldest lot or certificate the expiry "
                                "run should have burnt, or hold it should have released, by now; 0 when it is up to date.")
        lag.add_metric([], reading.expiry_lag_s)
        yield lag
        # The scheduler's state is in the database, so every replica reports the same figures.
        last = GaugeMetricFamily("loyalty_job_last_success_timestamp_seconds", "When each scheduled job last "
                                 "finished a run (Unix time), on any replica.", labels=["job"])
        job_lag = GaugeMetricFamily("loyalty_job_lag_seconds", "How far behind each scheduled job is: for expiry, "
                                    "the age of the oldest lot or hold due and not done; for the others, how long "
                                    "the job has been due without a run finishing; 0 when up to date.",
                                    labels=["job"])
        for job, state in sorted(reading.jobs.items()):
            if state.last_success_s is not None:
                last.add_metric([job], state.last_success_s)
            job_lag.add_metric([job], reading.expiry_lag_s if job == "expiry" else state.lag_s)
        yield from (last, job_lag)
        waiting = GaugeMetricFamily("loyalty_events_waiting", "Events committed and not yet delivered to each "
                                    f"webhook (counted up to {webhooks.EVENTS_COUNTED_MAX}).", labels=["webhook_id"])
        oldest_event = GaugeMetricFamily("loyalty_oldest_event_waiting_age_seconds", "Age of the oldest event not "
                                         "yet delivered to each webhook; 0 when none waits.", labels=["webhook_id"])
        for webhook_id, (count, age_s) in sorted(reading.webhooks.items()):
            waiting.add_metric([webhook_id], count)
            oldest_event.add_metric([webhook_id], age_s)
            for result in WEBHOOK_DELIVERY_RESULTS:
                self.webhook_deliveries.labels(webhook_id, result)
        yield from (waiting, oldest_event)

    def _read(self) -> gauges.LedgerGauges | None:
        with self._lock:
            if time.monotonic() - self._read_at < self.max_age_s:
                return self._reading
            now = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=self.clock.now_us())
            try:
                with psycopg.connect(self.url, connect_timeout=2, options="-c statement_timeout=5000") as conn:
                    self._reading = gauges.read(conn, now)
            except psycopg.Error as err:
                log.warning("ledger gauges unreadable: %s", type(err).__name__, extra={"event": "ledger_gauges_failed"})
                self._reading = None
            self._read_at = time.monotonic()
            return self._reading


def version() -> str:
    try:
        return metadata.version("loyalty-core")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def start_metrics_server(addr: str, registry: CollectorRegistry) -> tuple[Any, int]:
    """Serve /metrics on addr in a daemon thread; return (server, bound port) — port 0 picks one."""
    host, port = split_host_port(addr, "LOYALTY_METRICS_ADDR")
    httpd, _thread = start_http_server(port, addr=host, registry=registry)
    return httpd, httpd.server_port


def stop_metrics_server(httpd: Any) -> None:
    httpd.shutdown()
    httpd.server_close()
