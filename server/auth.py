"""Authentication and rights: the API key in each call's metadata, checked against server.rights,
with verified keys cached in-process, and the authenticated caller published for the servicers."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import grpc
from grpc import aio

from loyalty_core import errors, observe
from loyalty_core.store import keys
from loyalty_core.store.db import Database
from server import limits, rights

AUTHORIZATION = "authorization"
BEARER = "bearer "

# The caller of the RPC being handled. Every RPC runs in its own task, so a value set here is
# seen by that RPC's servicer only.
_caller: ContextVar[keys.ApiKey | None] = ContextVar("loyalty_caller", default=None)


def current_caller() -> keys.ApiKey | None:
    """The authenticated key of the RPC being handled; None outside an RPC (jobs, the CLI)."""
    return _caller.get()


class KeyCache:
    """Verified keys (and unknown ones) for ``ttl_s``: no database round trip per RPC, and a
    revoked key stops working within ``ttl_s`` on every server.

    Only strings shaped like our keys are looked up or cached, so junk credentials cost neither a
    query nor memory; the cache is bounded by ``max_entries`` all the same.
    """

    def __init__(self, db: Database, ttl_s: float, *, max_entries: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[bytes, tuple[float, keys.ApiKey | None]] = {}

    async def lookup(self, key: str) -> keys.ApiKey | None:
        if len(key) != keys.KEY_LENGTH or not key.startswith(keys.KEY_PREFIX):
            return None
        digest = keys.hash_key(key)
        now = self._monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self.db.transaction() as conn:
            found = await keys.find_by_hash(conn, digest)
        if len(self._entries) >= self.max_entries:
            self._entries = {d: e for d, e in self._entries.items() if e[0] > now}
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[digest] = (now + self.ttl_s, found)
        return found


def bearer_key(metadata: Any) -> str | None:
    """The key of an ``authorization: Bearer <key>`` header, or None when there is none."""
    for name, value in metadata or ():
        if name == AUTHORIZATION and isinstance(value, str):
            if value[: len(BEARER)].lower() == BEARER:
                return value[len(BEARER):].strip()
            return None
    return None


class AuthInterceptor(aio.ServerInterceptor):
    """Runs inside ``server.interceptors.ServerInterceptor``, so its refusals become rich statuses
    and are counted like any other; a refused call reaches no servicer and writes nothing.

    In order: credential (UNAUTHENTICATED), right (PERMISSION_DENIED), request limits
    (INVALID_ARGUMENT), programme (PERMISSION_DENIED); then the servicer runs under the
    server-side time limit with the caller published in ``current_caller()`` and the server's
    metrics as the observer of what the domain does.
    """

    def __init__(self, cache: KeyCache, *, rpc_time_limit_s: float, observer: observe.Observer) -> None:
        self.cache = cache
        self.rpc_time_limit_s = rpc_time_limit_s
        self.observer = observer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or rights.is_public(method):
            return handler
        if not handler.unary_unary:
            # Every RPC of ours is unary; a streaming one would need its own guard, and until it
            # has one it is not served (UNIMPLEMENTED) rather than served unguarded.
            return None
        return grpc.unary_unary_rpc_method_handler(
            self._guard(handler.unary_unary, method, rights.rule_for(method)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _guard(self, behavior: Callable[..., Any], method: str, rule: rights.Rule | None) -> Callable[..., Any]:
        async def guarded(request: Any, context: aio.ServicerContext) -> Any:
            caller = await self._authenticate(context)
            if rule is None or not (caller.rights & rule.rights):
                raise errors.PermissionDenied(
                    "right_not_granted", f"key {caller.name!r} has no right that allows {method}",
                    needs=",".join(sorted(rule.rights)) if rule else "",
                )
            limits.check(request)
            _check_programme(caller, request, rule.programme_field)
            token = _caller.set(caller)
            try:
                limit = asyncio.timeout(self.rpc_time_limit_s)
                try:
                    with observe.observed_by(self.observer, programme_label(request, rule.programme_field)):
                        async with limit:
                            result = behavior(request, context)
                            # The generated base servicer's methods (UNIMPLEMENTED) are plain functions.
                            return await result if inspect.isawaitable(result) else result
                except TimeoutError:
                    if not limit.expired():
                        raise
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        f"the server stops any call after {self.rpc_time_limit_s:g} s; its effect, if "
                        "any, can be read back or the write retried with the same request_id",
                    )
            finally:
                _caller.reset(token)

        return guarded

    async def _authenticate(self, context: aio.ServicerContext) -> keys.ApiKey:
        key = bearer_key(context.invocation_metadata())
        if not key:
            raise errors.Unauthenticated(
                "credential_missing", "send an API key as 'authorization: Bearer <key>' metadata"
            )
        caller = await self.cache.lookup(key)
        if caller is None:
            raise errors.Unauthenticated("credential_unknown", "the API key is unknown or revoked")
        return caller


def programme_label(request: Any, programme_field: str) -> str:
    """The programme a request is about, in canonical form, for the metrics; "" for none or many."""
    if programme_field == rights.EVERY_PROGRAMME:
        return ""
    programme_id = rights.programme_of(request, programme_field)
    try:
        return str(uuid.UUID(programme_id))
    except ValueError:
        return ""


def _check_programme(caller: keys.ApiKey, request: Any, programme_field: str) -> None:
    if caller.all_programmes:
        return
    if programme_field == rights.EVERY_PROGRAMME:
        raise errors.PermissionDenied(
            "programme_not_granted", f"key {caller.name!r} is limited to some programmes; this call needs "
            "a key for every programme"
        )
    programme_id = rights.programme_of(request, programme_field)
    if not caller.may_act_on(programme_id):
        # An empty programme_id means "every programme" where it is optional (expiry, verify).
        raise errors.PermissionDenied(
            "programme_not_granted",
            f"key {caller.name!r} may not act on programme {programme_id or '(every programme)'!r}",
            field=programme_field,
        )
