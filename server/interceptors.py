"""The one interceptor every RPC of ours passes: fail fast while the database is away, domain
errors to rich statuses, metrics, and one JSON access-log line."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from loyalty_core import errors
from server import status
from server.health import Health
from server.metrics import Metrics

log = logging.getLogger("loyalty.access")
errlog = logging.getLogger(__name__)

# Only our own services are wrapped; health and reflection pass untouched.
OUR_PACKAGE_PREFIX = "/loyalty."

_UNAVAILABLE = errors.Unavailable("database_unavailable", "the database cannot be reached now; retry later")


def member_id_of(request: Any) -> str | None:
    """The member a request is about, when it names one by id (``member_id`` or ``member.member_id``).

    Phones and card numbers in a request are never logged: only this id is."""
    value = getattr(request, "member_id", None)
    if not value:
        value = getattr(getattr(request, "member", None), "member_id", None)
    return str(value) if isinstance(value, (str, int)) and value else None


class ServerInterceptor(aio.ServerInterceptor):
    def __init__(self, metrics: Metrics, health: Health | None) -> None:
        self.metrics = metrics
        self.health = health

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(OUR_PACKAGE_PREFIX):
            return handler
        service, _, name = method[1:].rpartition("/")
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(handler.unary_unary, method, service, name),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(handler.unary_stream, method, service, name),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client-streaming kinds: none in our protos

    def _wrap_unary(self, behavior: Callable[..., Any], method: str, service: str, name: str) -> Callable[..., Any]:
        async def wrapped(request: Any, context: aio.ServicerContext) -> Any:
            call = _Call(self, method, service, name, "unary", request)
            try:
                self._gate()
                result = behavior(request, context)
                if inspect.isawaitable(result):
                    result = await result
                call.code = _code_of(context)
                return result
            except BaseException as exc:  # noqa: BLE001 - translated or re-raised below
                await call.fail(exc, context)
            finally:
                call.done()

        return wrapped

    def _wrap_stream(self, behavior: Callable[..., Any], method: str, service: str, name: str) -> Callable[..., Any]:
        async def wrapped(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            call = _Call(self, method, service, name, "server_stream", request)
            try:
                self._gate()
                async for item in behavior(request, context):
                    yield item
                call.code = _code_of(context)
            except BaseException as exc:  # noqa: BLE001
                await call.fail(exc, context)
            finally:
                call.done()

        return wrapped

    def _gate(self) -> None:
        # While the probe says the database is away, answer at once rather than after the pool
        # time-out: callers retry UNAVAILABLE with backoff.
        if self.health is not None and not self.health.ready:
            raise _UNAVAILABLE


class _Call:
    """Bookkeeping of one RPC: in-flight gauge, counters, histogram, access log."""

    __slots__ = ("icpt", "method", "service", "name", "type", "request", "t0", "code", "error", "recorded")

    def __init__(self, icpt: ServerInterceptor, method: str, service: str, name: str, type_: str, request: Any):
        self.icpt, self.method, self.service, self.name, self.type = icpt, method, service, name, type_
        self.request = request
        self.t0 = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.error: str | None = None
        self.recorded = False
        m = icpt.metrics
        m.started.labels(type_, service, name).inc()
        m.in_flight.labels(service, name).inc()

    async def fail(self, exc: BaseException, context: aio.ServicerContext) -> None:
        """Turn ``exc`` into the call's status (raises the abort, or re-raises ``exc``).

        abort() sends the status at once, so the call is recorded before it: a client that
        scrapes /metrics right after its call finds it counted."""
        if isinstance(exc, errors.LoyaltyError):
            st = status.to_status(exc)
            self.code, self.error = st.code, exc.code
            self.done()
            await context.abort_with_status(st)
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            self.code = grpc.StatusCode.CANCELLED
            raise exc
        if isinstance(exc, aio.AbortError):  # the servicer aborted by itself: keep its code
            self.code = _code_of(context, grpc.StatusCode.UNKNOWN)
            raise exc
        if isinstance(exc, NotImplementedError):  # the generated base servicer's answer
            self.code = grpc.StatusCode.UNIMPLEMENTED
            self.done()
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
        self.code, self.error = grpc.StatusCode.INTERNAL, type(exc).__name__
        errlog.error("unexpected exception in %s", self.method, exc_info=exc,
                     extra={"event": "rpc_internal_error", "method": self.method})
        self.done()
        await context.abort_with_status(status.internal_status())

    def done(self) -> None:
        if self.recorded:
            return
        self.recorded = True
        elapsed = time.perf_counter() - self.t0
        m = self.icpt.metrics
        code = self.code.name
        m.in_flight.labels(self.service, self.name).dec()
        m.handled.labels(self.type, self.service, self.name, code).inc()
        m.handling_seconds.labels(self.type, self.service, self.name, code).observe(elapsed)
        extra: dict[str, Any] = {"event": "rpc", "method": self.method, "grpc_code": code,
                                 "duration_ms": round(elapsed * 1000, 3)}
        member = member_id_of(self.request)
        if member:
            extra["member_id"] = member
        if self.error:
            extra["error"] = self.error
        log.info("rpc", extra=extra)


def _code_of(context: aio.ServicerContext, default: grpc.StatusCode = grpc.StatusCode.OK) -> grpc.StatusCode:
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    # Some grpcio versions return the cygrpc integer code; map it back.
    return next((c for c in grpc.StatusCode if c.value[0] == code), default)
