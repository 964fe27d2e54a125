"""The gRPC server: ``build_server`` wires it, ``serve`` runs it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
from typing import Any

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from loyalty_core import observe
from loyalty_core.clock import SystemClock
from loyalty_core.scheduler import Scheduler
from loyalty_core.service.jobs import scheduled_jobs
from loyalty_core.settings import Settings, split_host_port
from loyalty_core.store import embedded
from loyalty_core.store.db import Database
from server import services, tls
from server.auth import KeyCache
from server.deps import Deps
from server.guard import Guard
from server.metrics import start_metrics_server, stop_metrics_server

log = logging.getLogger(__name__)

# Put a limit on everything: a request larger than this is refused before it is parsed.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def build_server(settings: Settings, deps: Deps) -> tuple[aio.Server, int]:
    """A configured, bound, not yet started server and its port. Call it inside the event loop
    that will run the server; then ``await deps.health.start()`` and ``await server.start()``."""
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1),  # several worker processes may share one port
        ],
    )
    guard = Guard(deps.metrics, deps.health, KeyCache(deps.db, settings.auth_cache_ttl_s),
                  rpc_time_limit_s=settings.rpc_time_limit_s)
    names = services.register_all(server, deps, guard)
    deps.health.add_services(names)
    health_pb2_grpc.add_HealthServicer_to_server(deps.health.servicer, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    port = tls.add_port(server, settings)
    if port == 0:
        raise RuntimeError(f"could not bind LOYALTY_GRPC_ADDR={settings.grpc_addr}")
    return server, port


async def serve(settings: Settings, *, stop_event: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop_event``), then stop in order:
    health NOT_SERVING, stop accepting, in-flight calls get ``shutdown_grace_s``, close the pool,
    stop the embedded database."""
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_event.set)

    pg: embedded.EmbeddedPostgres | None = None
    url = settings.database_url
    if not url:
        pg = await asyncio.to_thread(embedded.start, settings.data_dir)
        url = pg.url
    db = Database.from_settings(settings, url)
    httpd: Any = None
    try:
        await db.open(wait=False)
        deps = Deps(settings=settings, db=db, clock=SystemClock())
        server, port = build_server(settings, deps)
        httpd, metrics_port = start_metrics_server(settings.metrics_addr, deps.registry)
        await deps.health.start()  # NOT_SERVING before the port answers
        await server.start()
        log.info("serving", extra={"event": "serving", "grpc_port": port, "metrics_port": metrics_port,
                                   "embedded": pg is not None})
        jobs_stop = asyncio.Event()
        jobs = asyncio.create_task(run_jobs(deps, jobs_stop)) if settings.jobs_enabled else None
        await stop_event.wait()

        log.info("stopping", extra={"event": "stopping", "grace_s": settings.shutdown_grace_s})
        jobs_stop.set()  # a running job finishes its bounded run, or is cancelled below mid-transaction
        await deps.health.shutdown()
        await server.stop(settings.shutdown_grace_s)
        if jobs is not None:
            # Cancelled, its open transaction rolls back and what it left stays due for the next runner.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(jobs, settings.shutdown_grace_s)
    finally:
        if httpd is not None:
            stop_metrics_server(httpd)
        await db.close()
        if pg is not None:
            await asyncio.to_thread(pg.stop)
        log.info("stopped", extra={"event": "stopped"})


async def run_jobs(deps: Deps, stop: asyncio.Event) -> None:
    """This replica's share of the scheduled jobs (``loyalty_core.scheduler``), reported to its metrics."""
    settings = deps.settings
    scheduler = Scheduler(deps.db, scheduled_jobs(settings, deps.db, deps.clock), tick_s=settings.job_tick_s,
                          runner=f"{socket.gethostname()}:{os.getpid()}")
    with observe.observed_by(deps.metrics):
        await scheduler.run(stop)


def worker_count(settings: Settings) -> int:
    """LOYALTY_WORKERS, where 0 means one per core."""
    return settings.workers or os.cpu_count() or 1


def serve_workers(settings: Settings) -> int:
    """``serve`` in ``LOYALTY_WORKERS`` processes sharing the gRPC port (``grpc.so_reuseport``; the
    kernel spreads connections, not calls, over them), each with its own pool. One worker runs in
    this process, and so does the embedded PostgreSQL (no LOYALTY_DATABASE_URL), which is for
    development. With several, this process passes SIGTERM/SIGINT on and stops them all if one
    exits; worker i serves metrics on the metrics port + i (each process has its own counters)."""
    count = worker_count(settings)
    if count == 1 or not settings.database_url:
        asyncio.run(serve(settings))
        return 0
    host, port = split_host_port(settings.grpc_addr, "LOYALTY_GRPC_ADDR")
    if port == 0:  # every worker must bind the same port: choose it here
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
    m_host, m_port = split_host_port(settings.metrics_addr, "LOYALTY_METRICS_ADDR")
    ctx = multiprocessing.get_context("spawn")  # no fork: grpc's threads and the pool must start fresh
    children = []
    for i in range(count):
        child = dataclasses.replace(settings, workers=1, grpc_addr=_join(host, port),
                                    metrics_addr=_join(m_host, m_port + i if m_port else 0))
        proc = ctx.Process(target=_worker_main, args=(child, i), name=f"loyalty-worker-{i}")
        proc.start()
        children.append(proc)
    log.info("workers started", extra={"event": "workers_started", "workers": count, "grpc_port": port})
    stopping = 0

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = signum
        for proc in children:
            if proc.is_alive() and proc.pid:
                os.kill(proc.pid, signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Wait for any worker to end, then stop the others: a worker that died is not restarted here
    # (the supervisor above this process decides that).
    while all(proc.is_alive() for proc in children):
        multiprocessing.connection.wait([proc.sentinel for proc in children], timeout=1.0)
    if not stopping:
        stop(signal.SIGTERM, None)
    for proc in children:
        proc.join(settings.shutdown_grace_s + 5)
        if proc.is_alive():
            proc.kill()
            proc.join()
    # A worker the signal reached before its loop took over ends by the signal itself: still clean.
    clean = {0, -signal.SIGTERM, -signal.SIGINT}
    return 0 if stopping and all(proc.exitcode in clean for proc in children) else 1


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _worker_main(settings: Settings, index: int) -> None:
    from server import logs

    logs.configure(settings.log_level)
    log.info("worker starting", extra={"event": "worker_starting", "worker": index})
    asyncio.run(serve(settings))
