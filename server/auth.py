"""Authentication: the API key in each call's metadata, verified keys cached in-process, the
programme a key may act on, and the authenticated caller published for the servicers
(``server.guard`` runs these steps for every RPC, against ``server.rights``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from grpc import aio

from loyalty_core import errors
from loyalty_core.store import keys
from loyalty_core.store.db import Database
from server import rights

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


async def authenticate(cache: KeyCache, context: aio.ServicerContext) -> keys.ApiKey:
    """The caller's key, verified (UNAUTHENTICATED when missing, unknown or revoked)."""
    key = bearer_key(context.invocation_metadata())
    if not key:
        raise errors.Unauthenticated("credential_missing", "send an API key as 'authorization: Bearer <key>' metadata")
    caller = await cache.lookup(key)
    if caller is None:
        raise errors.Unauthenticated("credential_unknown", "the API key is unknown or revoked")
    return caller


@contextmanager
def publish_caller(caller: keys.ApiKey) -> Iterator[None]:
    """``current_caller()`` is ``caller`` inside the block (the servicer's run)."""
    token = _caller.set(caller)
    try:
        yield
    finally:
        _caller.reset(token)


def programme_label(request: Any, programme_field: str) -> str:
    """The programme a request is about, in canonical form, for the metrics; "" for none or many."""
    if programme_field == rights.EVERY_PROGRAMME:
        return ""
    programme_id = rights.programme_of(request, programme_field)
    try:
        return str(uuid.UUID(programme_id))
    except ValueError:
        return ""


def check_programme(caller: keys.ApiKey, request: Any, programme_field: str) -> None:
    """PERMISSION_DENIED unless the key may act on the programme the request names."""
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
