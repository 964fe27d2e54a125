"""Every write's envelope: claim the idempotency key, run the effect, store its result or its refusal."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from loyalty_core import errors, observe
from loyalty_core.clock import US_PER_S
from loyalty_core.model import from_json, to_json
from loyalty_core.store import idempotency, members
from loyalty_core.store.db import Database

T = TypeVar("T")

# The scope of writes that are about no programme yet.
PROGRAMMES_SCOPE = "programmes"
# Request fields that hold a secret, at any depth. A fingerprint is a fast hash: with a secret in
# it, the stored row would confirm a guess of a 6-digit code in a fraction of a second, bypassing
# the secret's own scrypt hash. So a fingerprint says only whether a secret was given; a retry
# under the same request_id with another secret gets the first answer.
SECRET_FIELDS = frozenset({"card_secret", "code", "spend_code"})


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


# The request fields that name a member, at any depth (a MemberRef, an enrolment).
_MEMBER_FIELDS = ("member_id", "phone", "card_number")


def _member_fields(data: Any, found: dict[str, list[str]]) -> dict[str, list[str]]:
    if isinstance(data, dict):
        for k, v in data.items():
            if k in _MEMBER_FIELDS and isinstance(v, str) and v:
                found[k].append(v)
            else:
                _member_fields(v, found)
    elif isinstance(data, list):
        for v in data:
            _member_fields(v, found)
    return found


async def _member_named(conn: Any, scope: str, request: Any) -> str | None:
    """The member a refused request names by id, phone or card (None for none, or one not enrolled):
    kept with the refusal, so that erasing the member wipes this key too, whose fingerprint hashes
    the phone or card. Successful writes name their member themselves."""
    found = _member_fields(to_json(request), {k: [] for k in _MEMBER_FIELDS})
    if not any(found.values()) or scope == PROGRAMMES_SCOPE:
        return None
    ids = []
    for value in found["member_id"]:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return await members.named(conn, scope, ids, found["phone"], found["card_number"])


def _refusal_json(err: errors.LoyaltyError) -> dict[str, Any]:
    return {"code": err.code, "message": err.message, "field": err.field, "details": err.details}


def _replay(outcome: idempotency.StoredOutcome, fp: bytes, result_type: type[T]) -> T:
    if outcome.fingerprint != fp:
        raise errors.IdempotencyConflict(
            "idempotency_key_reused_with_different_request",
            "this request_id was used before with a different request; use a new request_id",
            field="request_id",
        )
    if outcome.outcome == "refused":
        r = outcome.result
        raise errors.CODES[r["code"]](r["code"], r["message"], field=r["field"], **r["details"])
    return from_json(result_type, outcome.result)


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
    """Run ``effect(conn)`` (returning the result and the member it touched) once per request_id.

    The same key and request give the stored answer; a different request under the key is refused.
    A business refusal (FailedPrecondition) rolls the effect back and is stored in a transaction
    of its own, so a retry stays refused; malformed requests and NotFound are not stored.

    With ``send_reads``, what it returns for the reads it sent (``store.later.Later``) is given to
    ``effect(conn, sent)``: the reads travel with BEGIN and the claim in one round trip, are sent
    after the claim (so they run after it, as if sent once it was granted) and are read only once
    the claim is (a replay never looks at them).
    """
    request_id = request.request_id
    fp = fingerprint(method, request)

    async def attempt(conn: Any) -> T:
        # The whole transaction runs in pipeline mode (Database.run_in_pipeline): statements whose
        # results nobody reads (BEGIN, most writes, the stored result, COMMIT) go to the server with
        # the next read or at the end, instead of one round trip each.
        claim = await idempotency.send_claim(conn, scope, request_id, method, fp, now)
        sent = await send_reads(conn) if send_reads is not None else None
        earlier = await claim.get()
        if earlier is not None:
            observe.idempotent_replay(method)
            return _replay(earlier, fp, result_type)
        result, member_id = await (effect(conn) if send_reads is None else effect(conn, sent))
        await idempotency.finish(conn, scope, request_id, to_json(result), member_id)
        return result

    try:
        return await db.run_in_pipeline(attempt)
    except errors.FailedPrecondition as refusal:
        kept = _refusal_json(refusal)

        async def keep(conn: Any) -> idempotency.StoredOutcome | None:
            member_id = await _member_named(conn, scope, request)
            return await idempotency.refuse(conn, scope, request_id, method, fp, kept, member_id, now)

        earlier = await db.run_in_transaction(keep)
        if earlier is None:
            raise
        # Another request with this key finished first (it met a different state): its answer stands.
        observe.idempotent_replay(method)
        return _replay(earlier, fp, result_type)


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
