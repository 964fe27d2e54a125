"""LoyaltyClient (sync) and AsyncLoyaltyClient (grpc.aio): every loyalty.v1 service behind one channel,
with retries that are safe by idempotency key."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc

from loyalty.v1 import (
    certificate_pb2_grpc, checkout_pb2_grpc, event_bonus_pb2_grpc, events_pb2_grpc, member_import_pb2_grpc,
    member_pb2_grpc,
    membership_pb2_grpc, points_pb2_grpc, programme_pb2_grpc,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried.

    Only codes that say "the same request may succeed later" are retried. A write is
    retried with the request_id of its first attempt, so the server applies it once even
    when an earlier attempt did land (DEADLINE_EXCEEDED after commit).
    """

    attempts: int = 5
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 1.0
    retry_codes: frozenset[grpc.StatusCode] = frozenset(
        {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
    )

    def retries(self, err: grpc.RpcError, attempt: int) -> bool:
        """Whether a call that failed with ``err`` on attempt ``attempt`` (1-based) is tried again."""
        return err.code() in self.retry_codes and attempt < self.attempts

    def backoff_s(self, attempt: int) -> float:
        """Full-jitter exponential backoff before retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1)))


def ensure_request_id(request: Any) -> Any:
    """Give a write request a fresh request_id when the caller left it empty; reads pass through."""
    if "request_id" in type(request).DESCRIPTOR.fields_by_name and not request.request_id:
        request.request_id = str(uuid.uuid4())
    return request


def call_with_retry(
    rpc: Callable[..., Any],
    request: Any,
    policy: RetryPolicy,
    *,
    timeout: float,
    metadata: Sequence[tuple[str, str]] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """Call a unary RPC, retrying under the policy with one request_id for every attempt."""
    ensure_request_id(request)
    for attempt in range(1, policy.attempts + 1):
        try:
            return rpc(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            if not policy.retries(err, attempt):
                raise
            sleep(policy.backoff_s(attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


async def call_with_retry_async(
    rpc: Callable[..., Awaitable[Any]],
    request: Any,
    policy: RetryPolicy,
    *,
    timeout: float,
    metadata: Sequence[tuple[str, str]] = (),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Any:
    """call_with_retry for grpc.aio stubs: the same policy and one request_id, waiting without blocking."""
    ensure_request_id(request)
    for attempt in range(1, policy.attempts + 1):
        try:
            return await rpc(request, timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            if not policy.retries(err, attempt):
                raise
            await sleep(policy.backoff_s(attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


# The generated stubs' streaming methods, sync and grpc.aio: passed through unwrapped.
_STREAMS = (grpc.UnaryStreamMultiCallable, grpc.aio.UnaryStreamMultiCallable, grpc.StreamStreamMultiCallable,
            grpc.aio.StreamStreamMultiCallable)


class _RetryingStub:
    """Presents the generated stub's methods, each retried under the policy."""

    def __init__(self, stub: Any, policy: RetryPolicy, timeout_s: float, sleep: Callable[[float], None]) -> None:
        self._stub = stub
        self._policy = policy
        self._timeout_s = timeout_s
        self._sleep = sleep

    def __getattr__(self, name: str) -> Callable[..., Any]:
        rpc = getattr(self._stub, name)
        if isinstance(rpc, _STREAMS):
            # A stream (WatchEvents, PostSales, ImportMembers) as generated: no deadline of a unary
            # call, and the caller resumes it (from its last cursor; by sending its items again,
            # each idempotent) rather than retrying it.
            return cast(Callable[..., Any], rpc)

        def call(request: Any, *, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()) -> Any:
            return call_with_retry(
                rpc, request, self._policy, timeout=timeout or self._timeout_s, metadata=metadata, sleep=self._sleep
            )

        call.__name__ = name
        return call


class _AsyncRetryingStub(_RetryingStub):
    """Presents the generated grpc.aio stub's methods as coroutines, each retried under the policy."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        rpc = getattr(self._stub, name)
        if isinstance(rpc, _STREAMS):
            return cast(Callable[..., Any], rpc)

        async def call(request: Any, *, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()) -> Any:
            return await call_with_retry_async(
                rpc, request, self._policy, timeout=timeout or self._timeout_s, metadata=metadata, sleep=self._sleep
            )

        call.__name__ = name
        return call


# Attribute -> generated stub class, for both flavours. Every service of loyalty.v1 is here
# (tests/clients/test_client.py checks it against the protos).
SERVICES: dict[str, type] = {
    "programmes": programme_pb2_grpc.ProgrammeServiceStub,
    "members": member_pb2_grpc.MemberServiceStub,
    "membership": membership_pb2_grpc.MembershipServiceStub,
    "checkout": checkout_pb2_grpc.CheckoutServiceStub,
    "points": points_pb2_grpc.PointsServiceStub,
    "events": events_pb2_grpc.EventServiceStub,
    "event_bonus": event_bonus_pb2_grpc.EventBonusServiceStub,
    "member_import": member_import_pb2_grpc.MemberImportServiceStub,
    "certificates": certificate_pb2_grpc.CertificateServiceStub,
}


class _BearerAuth(grpc.AuthMetadataPlugin):
    """Sends the API key as ``authorization: Bearer <key>`` on every call."""

    def __init__(self, api_key: str) -> None:
        self._header = (("authorization", f"Bearer {api_key}"),)

    def __call__(self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback) -> None:
        callback(self._header, None)


class _BearerInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                         grpc.StreamStreamClientInterceptor):
    """The same header on a plaintext channel, where gRPC refuses call credentials (unary calls and
    streams alike)."""

    def __init__(self, api_key: str) -> None:
        self._header = ("authorization", f"Bearer {api_key}")

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return continuation(details._replace(metadata=metadata), request)

    intercept_unary_stream = intercept_unary_unary
    intercept_stream_stream = intercept_unary_unary


class _AsyncBearerInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """The header on a plaintext grpc.aio channel."""

    def __init__(self, api_key: str) -> None:
        self._header = ("authorization", f"Bearer {api_key}")

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return await continuation(details._replace(metadata=metadata), request)


class _AsyncBearerStreamInterceptor(grpc.aio.UnaryStreamClientInterceptor):
    """The header on a plaintext grpc.aio channel's streams (WatchEvents): grpc.aio files each
    interceptor under one kind of call only, so streams have their own."""

    def __init__(self, api_key: str) -> None:
        self._header = ("authorization", f"Bearer {api_key}")

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), self._header]
        return await continuation(details._replace(metadata=metadata), request)


class _AsyncBearerBidiInterceptor(grpc.aio.StreamStreamClientInterceptor):
    """The header on a plaintext grpc.aio channel's streams both ways (PostSales, ImportMembers)."""

    def __init__(self, api_key: str) -> None:
        self._stream = _AsyncBearerStreamInterceptor(api_key)

    async def intercept_stream_stream(self, continuation: Any, details: Any, request_iterator: Any) -> Any:
        return await self._stream.intercept_unary_stream(continuation, details, request_iterator)


def _call_credentials(api_key: str | None, root_certificates: bytes | None) -> grpc.ChannelCredentials:
    credentials = grpc.ssl_channel_credentials(root_certificates)
    if api_key:
        credentials = grpc.composite_channel_credentials(credentials, grpc.metadata_call_credentials(_BearerAuth(api_key)))
    return credentials


@dataclass(frozen=True)
class _Transport:
    """How open_channel and open_aio_channel connect: TLS or not, and the channel options."""

    secure: bool
    options: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, root_certificates: bytes | None, tls: bool, server_name: str | None) -> _Transport:
        secure = tls or root_certificates is not None
        if server_name and not secure:
            raise ValueError("server_name names the certificate a TLS server must present: it needs TLS")
        return cls(secure, (("grpc.ssl_target_name_override", server_name),) if server_name else ())


def open_channel(
    target: str, *, api_key: str | None = None, root_certificates: bytes | None = None, tls: bool = False,
    server_name: str | None = None,
) -> grpc.Channel:
    """A channel to loyalty-core: TLS when ``tls`` or root certificates are given (without them, the
    system's trusted roots), plaintext otherwise (loopback, tests). ``server_name`` is the name the
    server's certificate must carry when it is not the target's host (an address, a tunnel)."""
    transport = _Transport.of(root_certificates, tls, server_name)
    if transport.secure:
        return grpc.secure_channel(target, _call_credentials(api_key, root_certificates), transport.options)
    channel = grpc.insecure_channel(target)
    return grpc.intercept_channel(channel, _BearerInterceptor(api_key)) if api_key else channel


def open_aio_channel(
    target: str, *, api_key: str | None = None, root_certificates: bytes | None = None, tls: bool = False,
    server_name: str | None = None,
) -> grpc.aio.Channel:
    """open_channel for grpc.aio: call it inside the event loop that will use the channel."""
    transport = _Transport.of(root_certificates, tls, server_name)
    if transport.secure:
        return grpc.aio.secure_channel(target, _call_credentials(api_key, root_certificates), transport.options)
    interceptors = ([_AsyncBearerInterceptor(api_key), _AsyncBearerStreamInterceptor(api_key),
                     _AsyncBearerBidiInterceptor(api_key)] if api_key else None)
    return grpc.aio.insecure_channel(target, interceptors=interceptors)


class LoyaltyClient:
    """Every loyalty.v1 service on one channel; each attribute has its generated stub's methods.

    >>> client = LoyaltyClient("127.0.0.1:50051", api_key="...")
    >>> client.checkout.Quote(checkout_pb2.QuoteRequest(...))
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        channel: grpc.Channel | None = None,
        api_key: str | None = None,
        root_certificates: bytes | None = None,
        tls: bool = False,
        server_name: str | None = None,
        timeout_s: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if (target is None) == (channel is None):
            raise ValueError("give either a target or a channel")
        self.channel = channel or open_channel(cast(str, target), api_key=api_key, root_certificates=root_certificates,
                                               tls=tls, server_name=server_name)

        def wrap(stub_cls: type) -> Any:
            return _RetryingStub(stub_cls(self.channel), retry, timeout_s, sleep)

        self.programmes = cast(programme_pb2_grpc.ProgrammeServiceStub, wrap(SERVICES["programmes"]))
        self.members = cast(member_pb2_grpc.MemberServiceStub, wrap(SERVICES["members"]))
        self.membership = cast(membership_pb2_grpc.MembershipServiceStub, wrap(SERVICES["membership"]))
        self.checkout = cast(checkout_pb2_grpc.CheckoutServiceStub, wrap(SERVICES["checkout"]))
        self.points = cast(points_pb2_grpc.PointsServiceStub, wrap(SERVICES["points"]))
        self.events = cast(events_pb2_grpc.EventServiceStub, wrap(SERVICES["events"]))
        self.event_bonus = cast(event_bonus_pb2_grpc.EventBonusServiceStub, wrap(SERVICES["event_bonus"]))
        self.member_import = cast(member_import_pb2_grpc.MemberImportServiceStub, wrap(SERVICES["member_import"]))
        self.certificates = cast(certificate_pb2_grpc.CertificateServiceStub, wrap(SERVICES["certificates"]))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> LoyaltyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLoyaltyClient:
    """LoyaltyClient for grpc.aio: the same attributes, each method a coroutine.

    >>> async with AsyncLoyaltyClient("127.0.0.1:50051", api_key="...") as client:
    ...     await client.checkout.Quote(checkout_pb2.QuoteRequest(...))
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        channel: grpc.aio.Channel | None = None,
        api_key: str | None = None,
        root_certificates: bytes | None = None,
        tls: bool = False,
        server_name: str | None = None,
        timeout_s: float = 5.0,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if (target is None) == (channel is None):
            raise ValueError("give either a target or a channel")
        self.channel = channel or open_aio_channel(
            cast(str, target), api_key=api_key, root_certificates=root_certificates, tls=tls, server_name=server_name
        )

        def wrap(stub_cls: type) -> Any:
            return _AsyncRetryingStub(stub_cls(self.channel), retry, timeout_s, cast(Any, sleep))

        # The generated stubs type their methods as sync; on an aio channel each returns an awaitable.
        self.programmes = cast(programme_pb2_grpc.ProgrammeServiceStub, wrap(SERVICES["programmes"]))
        self.members = cast(member_pb2_grpc.MemberServiceStub, wrap(SERVICES["members"]))
        self.membership = cast(membership_pb2_grpc.MembershipServiceStub, wrap(SERVICES["membership"]))
        self.checkout = cast(checkout_pb2_grpc.CheckoutServiceStub, wrap(SERVICES["checkout"]))
        self.points = cast(points_pb2_grpc.PointsServiceStub, wrap(SERVICES["points"]))
        self.events = cast(events_pb2_grpc.EventServiceStub, wrap(SERVICES["events"]))
        self.event_bonus = cast(event_bonus_pb2_grpc.EventBonusServiceStub, wrap(SERVICES["event_bonus"]))
        self.member_import = cast(member_import_pb2_grpc.MemberImportServiceStub, wrap(SERVICES["member_import"]))
        self.certificates = cast(certificate_pb2_grpc.CertificateServiceStub, wrap(SERVICES["certificates"]))

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> AsyncLoyaltyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
