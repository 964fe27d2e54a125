"""TLS for the gRPC port: on when LOYALTY_TLS_CERT_FILE and LOYALTY_TLS_KEY_FILE are both set."""

from __future__ import annotations

from pathlib import Path

import grpc
from grpc import aio

from loyalty_core.settings import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The port's credentials from the PEM files, or None for plaintext (both settings unset).

    The files are read once at start-up; a renewed certificate takes effect on restart.
    """
    if not settings.tls_cert_file and not settings.tls_key_file:
        return None
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise ValueError("set both LOYALTY_TLS_CERT_FILE and LOYALTY_TLS_KEY_FILE, or neither")
    cert = Path(settings.tls_cert_file).read_bytes()
    key = Path(settings.tls_key_file).read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


def add_port(server: aio.Server, settings: Settings) -> int:
    """Bind LOYALTY_GRPC_ADDR, with TLS when configured; the bound port (0 when binding failed)."""
    credentials = server_credentials(settings)
    if credentials is None:
        return server.add_insecure_port(settings.grpc_addr)
    return server.add_secure_port(settings.grpc_addr, credentials)
