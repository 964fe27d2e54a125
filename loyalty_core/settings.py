"""Settings: every LOYALTY_* environment variable, read once at start-up into one frozen object."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PREFIX = "LOYALTY_"


@dataclass(frozen=True, slots=True)
class Settings:
    """Configuration of one server process; units come last in names (``_s``, ``_size``).

    Each field ``x`` is read from ``LOYALTY_X``. The README lists them all with their defaults;
    ``tests/test_settings.py`` fails if the README and this class disagree.
    """

    # PostgreSQL to use. Unset: start an embedded PostgreSQL in data_dir.
    database_url: str | None = None
    # Folder of the embedded PostgreSQL (only used when database_url is unset).
    data_dir: Path = Path(".loyalty-data")
    grpc_addr: str = "127.0.0.1:50051"
    metrics_addr: str = "127.0.0.1:9464"
    # In-flight calls get this long to finish after SIGTERM/SIGINT.
    shutdown_grace_s: float = 10.0
    pool_min_size: int = 2
    pool_max_size: int = 10
    # How long a request waits for a pooled connection before failing with UNAVAILABLE.
    pool_timeout_s: float = 5.0
    # A lost connection is retried with backoff for this long, then retried on demand.
    pool_reconnect_timeout_s: float = 5.0
    db_connect_timeout_s: float = 3.0
    # Attempts of a transaction that meets a serialization failure or deadlock.
    tx_attempts_max: int = 5
    # A transaction waits this long for a row lock (a member's) before failing with UNAVAILABLE
    # member_busy, so a member held for long does not hold the pool's connections with it.
    member_lock_timeout_s: float = 1.0
    # Calls about one member a process lets in at once (waiting for its lock or holding it); more
    # are refused at once with RESOURCE_EXHAUSTED member_busy_calls.
    member_calls_max: int = 3
    # The health probe re-checks the database this often.
    health_probe_interval_s: float = 0.5
    # Apply migrations at start-up (under an advisory lock); off: `loyalty-core migrate` does it.
    migrate_on_start: bool = True
    # Citus (docs/scale-out.md): "auto" distributes the tables a migration creates when the database
    # has the citus extension, "on" requires it, "off" never distributes.
    database_distribution: str = "auto"
    # SMS gateway for one-time codes: JSON is POSTed to this URL. Unset: sending a code is
    # refused, unless sms_log_codes_dev.
    sms_webhook_url: str | None = None
    # Development only (`./dev serve` sets it): with no gateway, messages, codes included, go to the log.
    sms_log_codes_dev: bool = False
    # Sent to the gateway as the Authorization header, e.g. "Bearer <token>".
    sms_webhook_auth_header: str = ""
    sms_webhook_timeout_s: float = 5.0
    # Phone confirmation: a code's lifetime, the wrong answers that lock it, and the resend limits.
    confirmation_code_ttl_s: float = 600.0
    confirmation_attempts_max: int = 5
    confirmation_resend_interval_s: float = 60.0
    confirmation_sends_per_day_max: int = 10
    # The replay window: an idempotency key (and its stored answer) is kept at least this long;
    # `loyalty-core purge-idempotency` removes older ones, after which the request_id is new again.
    idempotency_retention_days: int = 30
    log_level: str = "INFO"
    # A verified API key is trusted this long without asking the database; a revoked key stops
    # working within this time. 0: look every key up on every call.
    auth_cache_ttl_s: float = 5.0
    # A programme and its levels are read by quotes from a per-process cache this long: a change
    # made through another server process reaches this one's quotes within it (this process's own
    # changes at once). Writes always read the programme in their transaction. 0: no cache.
    programme_cache_ttl_s: float = 5.0
    # PEM certificate chain and private key of the gRPC port; both unset: plaintext.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # The server gives up on any call after this long (DEADLINE_EXCEEDED), whatever the client's
    # deadline: a stuck call must not hold a pooled connection and a member's lock for ever.
    rpc_time_limit_s: float = 30.0
    # Outstanding points, open holds and expiry lag are read from the database when /metrics is
    # scraped, at most this often (several scrapers cost one query).
    ledger_gauges_max_age_s: float = 10.0
    # Server processes sharing the gRPC port (SO_REUSEPORT), each with its own pool of
    # pool_max_size connections: Python uses one core per process. 0: one per core.
    workers: int = 0
    # The scheduled jobs (expiry, level review, discount recalculation) run inside the server,
    # each on one replica at a time. Off on a replica: it serves calls only. (docs/jobs.md)
    jobs_enabled: bool = True
    # How often a replica looks for due jobs; a job a dead replica left is taken over within it.
    job_tick_s: float = 1.0
    # Members one run of a job works through before it yields (the rest at the next tick), and
    # members per transaction of the programme-wide jobs.
    job_batch_size: int = 500
    # Each job is due this long after its last run finished.
    job_expiry_interval_s: float = 30.0
    job_level_review_interval_s: float = 86_400.0
    job_recalculate_discounts_interval_s: float = 86_400.0
    job_purge_idempotency_interval_s: float = 3_600.0
    # The events' jobs (docs/events.md): webhook delivery, the outbox purge, expiring-points notices.
    job_deliver_webhooks_interval_s: float = 1.0
    job_purge_events_interval_s: float = 3_600.0
    job_expiry_notices_interval_s: float = 3_600.0
    # Delivered events are kept at least this long (WatchEvents may resume within it).
    events_retention_days: int = 7
    # The key every webhook's signing secret is derived from (HMAC with the subscription id, so no
    # secret is stored). Unset: webhooks cannot be created and nothing is delivered.
    webhook_master_key: str = dataclasses.field(default="", repr=False)
    # One delivery attempt waits this long for the receiver's answer.
    webhook_timeout_s: float = 5.0
    # Failed attempts after which an event goes to the subscription's dead letters.
    webhook_attempts_max: int = 15
    # The wait after the n-th failure: base * 2^(n-1), at most max, with jitter.
    webhook_backoff_base_s: float = 1.0
    webhook_backoff_max_s: float = 3_600.0
    # A WatchEvents stream that has sent everything looks for new events this often.
    watch_poll_interval_s: float = 0.2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
        """Read every field from ``LOYALTY_<FIELD>``; an empty variable counts as unset."""
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            name = PREFIX + field.name.upper()
            raw = environ.get(name, "")
            if raw == "":
                continue
            values[field.name] = _parse(name, raw, field.default)
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings that cannot work, naming the variable."""
        if self.pool_min_size < 0 or self.pool_max_size < max(1, self.pool_min_size):
            raise ValueError("LOYALTY_POOL_MAX_SIZE must be at least 1 and at least LOYALTY_POOL_MIN_SIZE")
        if self.workers < 0:
            raise ValueError("LOYALTY_WORKERS must be 0 (one per core) or more")
        if self.tx_attempts_max < 1:
            raise ValueError("LOYALTY_TX_ATTEMPTS_MAX must be at least 1")
        for name in ("shutdown_grace_s", "pool_timeout_s", "pool_reconnect_timeout_s", "db_connect_timeout_s",
                     "health_probe_interval_s", "sms_webhook_timeout_s", "confirmation_code_ttl_s",
                     "confirmation_attempts_max", "confirmation_resend_interval_s", "confirmation_sends_per_day_max",
                     "rpc_time_limit_s", "job_tick_s", "job_batch_size", "job_expiry_interval_s",
                     "job_level_review_interval_s", "job_recalculate_discounts_interval_s", "job_purge_idempotency_interval_s",
                     "member_lock_timeout_s", "member_calls_max", "idempotency_retention_days",
                     "job_deliver_webhooks_interval_s", "job_purge_events_interval_s", "job_expiry_notices_interval_s",
                     "events_retention_days", "webhook_timeout_s", "webhook_attempts_max", "webhook_backoff_base_s",
                     "webhook_backoff_max_s", "watch_poll_interval_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{PREFIX}{name.upper()} must be positive")
        if self.auth_cache_ttl_s < 0:
            raise ValueError("LOYALTY_AUTH_CACHE_TTL_S must not be negative")
        if self.programme_cache_ttl_s < 0:
            raise ValueError("LOYALTY_PROGRAMME_CACHE_TTL_S must not be negative")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("set both LOYALTY_TLS_CERT_FILE and LOYALTY_TLS_KEY_FILE, or neither")
        for name in ("grpc_addr", "metrics_addr"):
            split_host_port(getattr(self, name), PREFIX + name.upper())

    @staticmethod
    def env_names() -> dict[str, Any]:
        """Every variable name with its default, for the README and its test."""
        return {PREFIX + f.name.upper(): f.default for f in dataclasses.fields(Settings)}


def split_host_port(addr: str, name: str = "address") -> tuple[str, int]:
    """'127.0.0.1:50051' -> ('127.0.0.1', 50051); '[::1]:0' -> ('::1', 0)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{name} must be HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


def _parse(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
        return raw
    except ValueError as err:
        raise ValueError(f"{name}={raw!r}: {err}") from None
