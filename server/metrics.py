"""Prometheus metrics, defined once against an injectable registry, and the /metrics endpoint."""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from loyalty_core.settings import split_host_port

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
        self.build_info.labels(version=version(), calc_impl=calc_impl()).set(1)

    def watch_pool(self, stats: Callable[[], dict[str, int]]) -> None:
        """Read the pool's numbers at scrape time (no background task to keep them fresh)."""
        self.pool_size.set_function(lambda: stats()["size"])
        self.pool_max.set_function(lambda: stats()["max_size"])
        self.pool_in_use.set_function(lambda: stats()["in_use"])
        self.pool_waiting.set_function(lambda: stats()["waiting"])


def version() -> str:
    try:
        return metadata.version("loyalty-core")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def calc_impl() -> str:
    """Which twin of the calculation loaded: "cython" or "python".

    TODO(calc): read what the calc selector module records once it is on main.
    """
    try:
        import loyalty_core._fastcalc  # noqa: F401
    except ImportError:
        return "python"
    return "cython"


def start_metrics_server(addr: str, registry: CollectorRegistry) -> tuple[Any, int]:
    """Serve /metrics on addr in a daemon thread; return (server, bound port) — port 0 picks one."""
    host, port = split_host_port(addr, "LOYALTY_METRICS_ADDR")
    httpd, _thread = start_http_server(port, addr=host, registry=registry)
    return httpd, httpd.server_port


def stop_metrics_server(httpd: Any) -> None:
    httpd.shutdown()
    httpd.server_close()
