"""A write's unit of work: one transaction that claims the idempotency key, reads what the use case
declared with the claim in one round trip, runs the use case's steps and stores their result, or
stores their refusal so that a retry stays refused.

Use cases declare what they read (``send_reads``: queries sent now, read later, ``store.later.Later``)
and say what they do with it (``work``); they never send, claim or commit themselves.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from loyalty_core import errors, observe
from loyalty_core.model import from_json, to_json
from loyalty_core.store import idempotency, members
from loyalty_core.store.db import Database

T = TypeVar("T")
R = TypeVar("R")

# The scope of writes that are about no programme yet.
PROGRAMMES_SCOPE = "programmes"


@dataclasses.dataclass(frozen=True)
class Key:
    """The idempotency key a write claims (AIP-155), with the fingerprint of its request."""

    scope: str
    request_id: str
    method: str
    fingerprint: bytes
    now: int


@dataclasses.dataclass(frozen=True)
class UnitOfWork(Generic[R]):
    """One attempt of the transaction, the claim granted: its connection (in pipeline mode: what
    nobody reads goes with the next read or the COMMIT) and the declared reads, sent after the
    claim, so they run after it."""

    conn: Any
    reads: R


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


def _replay(outcome: idempotency.StoredOutcome, key: Key, result_type: type[T]) -> T:
    observe.idempotent_replay(key.method)
    if outcome.fingerprint != key.fingerprint:
        raise errors.IdempotencyConflict(
            "idempotency_key_reused_with_different_request",
            "this request_id was used before with a different request; use a new request_id",
            field="request_id",
        )
    if outcome.outcome == "refused":
        r = outcome.result
        raise errors.CODES[r["code"]](r["code"], r["message"], field=r["field"], **r["details"])
    return from_json(result_type, outcome.result)


async def no_reads(conn: Any) -> None:
    return None


async def run(
    db: Database,
    key: Key,
    *,
    request: Any,
    result_type: type[T],
    work: Callable[[UnitOfWork[R]], Awaitable[tuple[T, str | None]]],
    send_reads: Callable[[Any], Awaitable[R]] = no_reads,  # type: ignore[assignment]
) -> T:
    """``work`` (returning the result and the member it touched) once per key.

    BEGIN, the claim and the declared reads travel in one round trip; the reads are looked at only
    once the claim is granted (a replay never looks at them). The same key and request give the
    stored answer; a different request under the key is refused. A business refusal
    (FailedPrecondition) rolls the work back and is stored in a transaction of its own, so a retry
    stays refused; malformed requests and NotFound are not stored. A serialization failure re-runs
    the whole attempt (``Database.run_in_pipeline``), reads included."""

    async def attempt(conn: Any) -> T:
        claim = await idempotency.send_claim(conn, key.scope, key.request_id, key.method, key.fingerprint, key.now)
        reads = await send_reads(conn)
        earlier = await claim.get()
        if earlier is not None:
            return _replay(earlier, key, result_type)
        result, member_id = await work(UnitOfWork(conn, reads))
        await idempotency.finish(conn, key.scope, key.request_id, to_json(result), member_id)
        return result

    try:
        return await db.run_in_pipeline(attempt)
    except errors.FailedPrecondition as refusal:
        kept = _refusal_json(refusal)

        async def keep(conn: Any) -> idempotency.StoredOutcome | None:
            member_id = await _member_named(conn, key.scope, request)
            return await idempotency.refuse(conn, key.scope, key.request_id, key.method, key.fingerprint, kept,
                                            member_id, key.now)

        earlier = await db.run_in_transaction(keep)
        if earlier is None:
            raise
        # Another request with this key finished first (it met a different state): its answer stands.
        return _replay(earlier, key, result_type)
