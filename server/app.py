"""The gRPC server: ``build_server`` wires it, ``serve`` runs it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from loyalty_core.clock import SystemClock
from loyalty_core.settings import Settings
from loyalty_core.store import embedded
from loyalty_core.store.db import Database
from server import services, tls
from server.auth import AuthInterceptor, KeyCache
from server.deps import Deps
from server.interceptors import ServerInterceptor
from server.metrics import start_metrics_server, stop_metrics_server

log = logging.getLogger(__name__)

# Put a limit on everything: a request larger than this is refused before it is parsed.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def build_server(settings: Settings, deps: Deps) -> tuple[aio.Server, int]:
    """A configured, bound, not yet started server and its port. Call it inside the event loop
    that will run the server; then ``await deps.health.start()`` and ``await server.start()``."""
    server = aio.server(
        # The auth interceptor runs inside the first, which turns its refusals into statuses.
        interceptors=[
            ServerInterceptor(deps.metrics, deps.health),
            AuthInterceptor(KeyCache(deps.db, settings.auth_cache_ttl_s), rpc_time_limit_s=settings.rpc_time_limit_s,
                            observer=deps.metrics),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 1),  # several worker processes may share one port
        ],
    )
    names = services.register_all(server, deps)
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
        await stop_event.wait()

        log.info("stopping", extra={"event": "stopping", "grace_s": settings.shutdown_grace_s})
        await deps.health.shutdown()
        await server.stop(settings.shutdown_grace_s)
    finally:
        if httpd is not None:
            stop_metrics_server(httpd)
        await db.close()
        if pg is not None:
            await asyncio.to_thread(pg.stop)
        log.info("stopped", extra={"event": "stopped"})
