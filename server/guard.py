"""The one wrapper every RPC of ours runs in: fail fast while the database is away, authenticate,
check rights, limits and programme, run the servicer under the server-side time limit (a unary
call; a stream has none), turn domain errors into rich statuses, count the call and write its
access-log line. Unary and server-streaming methods pass the same checks (``Guard._admit``) and
end the same way (``_refusal``, ``_abort``).

It is applied to each servicer method once, when the services are registered, rather than as
``grpc.aio`` interceptors: an interceptor runs per call, awaits the handler lookup and builds a
new method handler and closure each time, which cost about a tenth of a Quote's server CPU. Here
everything that depends only on the method (its rule, its metric children) is looked up once.
Health and reflection are not ours and are registered unwrapped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from loyalty_core import errors, observe
from server import limits, rights, status
from server.auth import KeyCache, authenticate, check_programme, programme_label, publish_caller
from server.health import Health
from server.metrics import Metrics

log = logging.getLogger("loyalty.access")
errlog = logging.getLogger(__name__)

_UNAVAILABLE = errors.Unavailable("database_unavailable", "the database cannot be reached now; retry later")
_OK = grpc.StatusCode.OK
# What server.services' parser hands the guard for a request whose bytes do not parse.
UNDECODABLE = object()
_UNDECODABLE_REFUSAL = errors.InvalidArgument("request_not_decodable", "request could not be decoded")


def member_id_of(request: Any) -> str | None:
    """The member a request is about, when it names one by id (``member_id`` or ``member.member_id``).

    Phones and card numbers in a request are never logged: only this id is."""
    value = getattr(request, "member_id", None)
    if not value:
        value = getattr(getattr(request, "member", None), "member_id", None)
    return str(value) if isinstance(value, (str, int)) and value else None


class Guard:
    """Wraps servicer methods; one per server (its metrics, health, key cache and time limit)."""

    def __init__(self, metrics: Metrics, health: Health | None, keys: KeyCache, *, rpc_time_limit_s: float) -> None:
        self.metrics = metrics
        self.health = health
        self.keys = keys
        self.rpc_time_limit_s = rpc_time_limit_s

    def wrap(self, method: str, behavior: Callable[[Any, aio.ServicerContext], Awaitable[Any]]) -> Callable[..., Any]:
        """``behavior`` (a unary-unary servicer method) guarded, as the method ``method`` ("/pkg.Service/Name")."""
        stats = _MethodStats(self.metrics, method, "unary")
        rule = rights.rule_for(method)
        guard = self

        async def guarded(request: Any, context: aio.ServicerContext) -> Any:
            t0 = time.perf_counter()
            stats.begin()
            try:
                caller = await guard._admit(method, rule, request, context)
                limit = asyncio.timeout(guard.rpc_time_limit_s)
                try:
                    with publish_caller(caller), \
                            observe.observed_by(guard.metrics, programme_label(request, rule.programme_field)):
                        async with limit:
                            result = await behavior(request, context)
                except TimeoutError:
                    if not limit.expired():
                        raise
                    refusal: Any = grpc.StatusCode.DEADLINE_EXCEEDED, (
                        f"the server stops any call after {guard.rpc_time_limit_s:g} s; its effect, if any, "
                        "can be read back or the write retried with the same request_id")
                    error = None
                else:
                    stats.end(_code_of(context), None, t0, request)
                    return result
            except (asyncio.CancelledError, GeneratorExit):
                stats.end(grpc.StatusCode.CANCELLED, None, t0, request)
                raise
            except aio.AbortError:  # the servicer aborted by itself: keep its code
                stats.end(_code_of(context, grpc.StatusCode.UNKNOWN), None, t0, request)
                raise
            except Exception as exc:  # noqa: BLE001 - sorted by _refusal: ours, unimplemented, or a bug
                refusal, error = _refusal(method, exc)
            await _abort(context, refusal, error, stats, t0, request)

        guarded.__name__ = guarded.__qualname__ = method.rpartition("/")[2]
        return guarded

    def wrap_stream(self, method: str, behavior: Callable[[Any, aio.ServicerContext], AsyncIterator[Any]]
                    ) -> Callable[..., AsyncIterator[Any]]:
        """``behavior`` (a unary-stream servicer method) guarded as ``wrap`` guards a unary one: the
        same checks before the first response, the same status, metrics and access-log line at the
        end. A stream has no server-side time limit: it holds no connection or lock between
        responses, and its client decides how long to watch."""
        stats = _MethodStats(self.metrics, method, "server_stream")
        rule = rights.rule_for(method)
        guard = self

        async def guarded(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            async def start() -> tuple[Any, str, AsyncIterator[Any]]:
                caller = await guard._admit(method, rule, request, context)
                return caller, programme_label(request, rule.programme_field), behavior(request, context).__aiter__()

            async for response in guard._stream(stats, context, request, start):
                yield response

        guarded.__name__ = guarded.__qualname__ = method.rpartition("/")[2]
        return guarded

    def wrap_bidi(self, method: str, behavior: Callable[[AsyncIterator[Any], aio.ServicerContext], AsyncIterator[Any]]
                  ) -> Callable[..., AsyncIterator[Any]]:
        """``behavior`` (a stream-stream servicer method) guarded: the database and the caller's right
        checked once, before the first request is read; each request's limits and programme checked
        as it arrives. ``behavior`` reads a stream whose items are the requests, or, for a request
        that failed those checks, the LoyaltyError that refused it (the servicer answers it in its
        place: one bad request does not end the stream). Its metrics and log line name no programme
        or member: a stream's requests may name many."""
        stats = _MethodStats(self.metrics, method, "bidi_stream")
        rule = rights.rule_for(method)
        guard = self

        async def guarded(requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
            async def start() -> tuple[Any, str, AsyncIterator[Any]]:
                caller = await guard._admit(method, rule, None, context)
                assert rule is not None  # _admit refused a method without one

                async def admitted() -> AsyncIterator[Any]:
                    async for request in requests:
                        if request is UNDECODABLE:
                            yield _UNDECODABLE_REFUSAL
                            continue
                        try:
                            guard._admit_request(caller, rule, request)
                        except errors.LoyaltyError as refusal:
                            yield refusal
                        else:
                            yield request

                return caller, "", behavior(admitted(), context).__aiter__()

            async for response in guard._stream(stats, context, None, start):
                yield response

        guarded.__name__ = guarded.__qualname__ = method.rpartition("/")[2]
        return guarded

    async def _stream(self, stats: _MethodStats, context: aio.ServicerContext, request: Any,
                      start: Callable[[], Awaitable[tuple[Any, str, AsyncIterator[Any]]]]) -> AsyncIterator[Any]:
        """A streaming call's responses, from ``start`` (the checks, then the caller, the programme's
        label and the servicer's responses), ended with the status, metrics and log line of ``wrap``."""
        t0 = time.perf_counter()
        stats.begin()
        try:
            caller, programme, responses = await start()
            while True:
                # The caller and the observer are published around each step, not across a
                # yield: gRPC may resume (or cancel) the stream from another task's context.
                with publish_caller(caller), observe.observed_by(self.metrics, programme):
                    try:
                        response = await responses.__anext__()
                    except StopAsyncIteration:
                        break
                yield response
        except (asyncio.CancelledError, GeneratorExit):
            stats.end(grpc.StatusCode.CANCELLED, None, t0, request)
            raise
        except aio.AbortError:
            stats.end(_code_of(context, grpc.StatusCode.UNKNOWN), None, t0, request)
            raise
        except Exception as exc:  # noqa: BLE001 - sorted by _refusal, as for a unary call
            refusal, error = _refusal(stats.method, exc)
        else:
            stats.end(_code_of(context), None, t0, request)
            return
        await _abort(context, refusal, error, stats, t0, request)

    async def _admit(self, method: str, rule: rights.Rule | None, request: Any,
                     context: aio.ServicerContext) -> Any:
        """The checks before any servicer runs: the database is up, the request parsed, the caller
        is known and has a right to the method and its programme, every field within its limit."""
        if self.health is not None and not self.health.ready:
            # While the probe says the database is away, answer at once rather than after
            # the pool time-out: callers retry UNAVAILABLE with backoff.
            raise _UNAVAILABLE
        if request is UNDECODABLE:
            errlog.warning("request to %s could not be decoded", method,
                           extra={"event": "rpc_undecodable", "method": method})
            raise _UNDECODABLE_REFUSAL
        caller = await authenticate(self.keys, context)
        if rule is None or not (caller.rights & rule.rights):
            raise errors.PermissionDenied(
                "right_not_granted", f"key {caller.name!r} has no right that allows {method}",
                needs=",".join(sorted(rule.rights)) if rule else "")
        if request is not None:  # a stream's requests are checked one by one (wrap_bidi)
            self._admit_request(caller, rule, request)
        return caller

    @staticmethod
    def _admit_request(caller: Any, rule: rights.Rule, request: Any) -> None:
        """One request's checks once its caller is admitted: every field within its limit, and the
        programme it names one the caller's key may act on."""
        limits.check(request)
        check_programme(caller, request, rule.programme_field)


def _refusal(method: str, exc: Exception) -> tuple[Any, str | None]:
    """The status for an exception out of a servicer, and the error code the access log names."""
    if isinstance(exc, errors.LoyaltyError):
        return status.to_status(exc), exc.code
    if isinstance(exc, NotImplementedError):  # the generated base servicer's answer
        return (grpc.StatusCode.UNIMPLEMENTED, "method not implemented"), None
    # Anything else is our bug: INTERNAL, logged.
    errlog.error("unexpected exception in %s", method, exc_info=exc,
                 extra={"event": "rpc_internal_error", "method": method})
    return status.internal_status(), type(exc).__name__


async def _abort(context: aio.ServicerContext, refusal: Any, error: str | None, stats: _MethodStats, t0: float,
                 request: Any) -> None:
    # abort() sends the status at once, so the call is recorded before it: a client that
    # scrapes /metrics right after its call finds it counted.
    if isinstance(refusal, tuple):
        stats.end(refusal[0], error, t0, request)
        await context.abort(*refusal)
    stats.end(refusal.code, error, t0, request)
    await context.abort_with_status(refusal)


class _MethodStats:
    """One method's metric children, looked up once (``labels()`` takes a lock and walks the label
    values at every call), and the access-log line of each call."""

    __slots__ = ("method", "service", "name", "grpc_type", "metrics", "started", "in_flight", "by_code")

    def __init__(self, metrics: Metrics, method: str, grpc_type: str) -> None:
        self.method = method
        self.service, _, self.name = method[1:].rpartition("/")
        self.grpc_type = grpc_type
        self.metrics = metrics
        self.started = metrics.started.labels(grpc_type, self.service, self.name)
        self.in_flight = metrics.in_flight.labels(self.service, self.name)
        self.by_code: dict[grpc.StatusCode, tuple[Any, Any]] = {}

    def begin(self) -> None:
        self.started.inc()
        self.in_flight.inc()

    def end(self, code: grpc.StatusCode, error: str | None, t0: float, request: Any) -> None:
        elapsed = time.perf_counter() - t0
        self.in_flight.dec()
        children = self.by_code.get(code)
        if children is None:
            m = self.metrics
            children = self.by_code[code] = (
                m.handled.labels(self.grpc_type, self.service, self.name, code.name),
                m.handling_seconds.labels(self.grpc_type, self.service, self.name, code.name))
        children[0].inc()
        children[1].observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            extra: dict[str, Any] = {"event": "rpc", "method": self.method, "grpc_code": code.name,
                                     "duration_ms": round(elapsed * 1000, 3)}
            member = member_id_of(request)
            if member:
                extra["member_id"] = member
            if error:
                extra["error"] = error
            log.info("rpc", extra=extra)


def _code_of(context: aio.ServicerContext, default: grpc.StatusCode = _OK) -> grpc.StatusCode:
    code = context.code()
    if code is None:
        return default
    if isinstance(code, grpc.StatusCode):
        return code
    # Some grpcio versions return the cygrpc integer code; map it back.
    return next((c for c in grpc.StatusCode if c.value[0] == code), default)
