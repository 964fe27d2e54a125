"""What identifies a write (its key and request fingerprint) and the envelope of writes that work on a bare
connection; the transaction itself is the unit of work (``store.unit_of_work``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from loyalty_core.clock import US_PER_S
from loyalty_core.model import to_json
from loyalty_core.store import idempotency, unit_of_work
from loyalty_core.store.db import Database

T = TypeVar("T")

# The scope of writes that are about no programme yet.
PROGRAMMES_SCOPE = unit_of_work.PROGRAMMES_SCOPE
# Request fields that hold a secret, at any depth. A fingerprint is a fast hash: with a secret in
# it, the stored row would confirm a guess of a 6-digit code in a fraction of a second, bypassing
# the secret's own scrypt hash. So a fingerprint says only whether a secret was given; a retry
# under the same request_id with another secret gets the first answer.
SECRET_FIELDS = frozenset({"card_secret", "code", "spend_code", "certificate_codes"})


def _without_secrets(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: (bool(v) if k in SECRET_FIELDS else _without_secrets(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [_without_secrets(v) for v in data]
    return data


def fingerprint(method: str, request: Any) -> bytes:
    """sha256 of the method and the canonical request, without what describes the call rather than
    the request (the key itself and the correlation id: a retry may carry a new one) and without
    the values of SECRET_FIELDS."""
    data = _without_secrets(to_json(request))
    data.pop("request_id", None)
    if isinstance(data.get("context"), dict):
        data["context"].pop("correlation_id", None)
    canonical = json.dumps([method, data], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


def write_key(method: str, scope: str, request: Any, now: int) -> unit_of_work.Key:
    """The idempotency key ``request`` claims, with its fingerprint."""
    return unit_of_work.Key(scope, request.request_id, method, fingerprint(method, request), now)


async def run_write(
    db: Database,
    *,
    method: str,
    scope: str,
    request: Any,
    result_type: type[T],
    now: int,
    effect: Callable[..., Awaitable[tuple[T, str | None]]],
    send_reads: Callable[[Any], Awaitable[Any]] | None = None,
) -> T:
    """Run ``effect(conn)`` (returning the result and the member it touched) once per request_id, in a
    unit of work (``store.unit_of_work.run``: the claim, the stored result or refusal, replays).

    With ``send_reads``, what it returns for the reads it sent (``store.later.Later``) is given to
    ``effect(conn, sent)``: the reads travel with BEGIN and the claim in one round trip.
    """
    key = write_key(method, scope, request, now)

    async def work(unit: unit_of_work.UnitOfWork[Any]) -> tuple[T, str | None]:
        return await (effect(unit.conn) if send_reads is None else effect(unit.conn, unit.reads))

    return await unit_of_work.run(db, key, request=request, result_type=result_type, work=work,
                                  send_reads=send_reads or unit_of_work.no_reads)


async def purge(db: Database, now: int, *, retention_days: int, batch_size: int, max_batches: int) -> int:
    """Delete the idempotency keys older than ``retention_days`` before ``now``, ``batch_size`` per
    transaction and at most ``max_batches`` transactions (0: until none is left); how many went.

    Each batch commits on its own, so a run stopped half-way has kept what it did and the next run
    goes on from the oldest key left; a replay within the window is never affected."""
    before = now - retention_days * 86_400 * US_PER_S
    purged = batches = 0
    while not max_batches or batches < max_batches:
        deleted = await db.run_in_transaction(idempotency.purge_batch, before, batch_size)
        purged += deleted
        batches += 1
        if deleted < batch_size:
            break
    return purged
