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


async def _claim_and_work(conn: Any, key: Key, result_type: type[T],
                          work: Callable[[UnitOfWork[R]], Awaitable[tuple[T, str | None]]],
                          send_reads: Callable[[Any], Awaitable[R]]) -> T:
    """One write's steps in the transaction on ``conn``: the claim with the declared reads (one
    round trip), the stored answer on a replay, else the work and its result stored under the key."""
    claim = await idempotency.send_claim(conn, key.scope, key.request_id, key.method, key.fingerprint, key.now)
    reads = await send_reads(conn)
    earlier = await claim.get()
    if earlier is not None:
        return _replay(earlier, key, result_type)
    result, member_id = await work(UnitOfWork(conn, reads))
    await idempotency.finish(conn, key.scope, key.request_id, to_json(result), member_id)
    return result


async def _keep_refusal(conn: Any, key: Key, request: Any,
                        refusal: errors.FailedPrecondition) -> idempotency.StoredOutcome | None:
    """Store ``refusal`` under the key, so that a retry stays refused; None when stored, else what
    another request with the key left first (it met a different state: its answer stands)."""
    member_id = await _member_named(conn, key.scope, request)
    return await idempotency.refuse(conn, key.scope, key.request_id, key.method, key.fingerprint,
                                    _refusal_json(refusal), member_id, key.now)


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

    try:
        return await db.run_in_pipeline(_claim_and_work, key, result_type, work, send_reads)
    except errors.FailedPrecondition as refusal:
        earlier = await db.run_in_transaction(_keep_refusal, key, request, refusal)
        if earlier is None:
            raise
        return _replay(earlier, key, result_type)


@dataclasses.dataclass(frozen=True)
class Write(Generic[T, R]):
    """One write of a batch (``run_many``): what ``run`` takes for it."""

    key: Key
    request: Any
    result_type: type[T]
    work: Callable[[UnitOfWork[R]], Awaitable[tuple[T, str | None]]]
    send_reads: Callable[[Any], Awaitable[R]]


async def _roll_back_to_savepoint(conn: Any) -> None:
    """Undo the write since its savepoint, in pipeline mode. psycopg forgets every statement it
    prepared when it reads a ROLLBACK's answer and deallocates them on the server at the end of the
    next execute; read at a sync or a fetch, a statement prepared by that next execute would be
    deallocated too while psycopg still counts it prepared. So the answer is read at a sync of its
    own, then an unprepared statement's execute sends the deallocation before anything is prepared
    again (a round trip, on a refused write only)."""
    await conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
    async with conn.pipeline() as pipeline:
        await pipeline.sync()
    await conn.execute("SELECT 1", prepare=False)


_SAVEPOINT = "unit_of_work"


async def run_many(db: Database, writes: list[Write[Any, Any]]) -> list[Any]:
    """Each of ``writes`` as ``run`` would do it, all in one transaction: per write its result or
    the domain error that refused it (a LoyaltyError, returned, not raised), in order.

    Each write runs inside a savepoint, sent in the pipeline with its claim (no round trip of its
    own): a refusal rolls back that write alone, its refusal stored as ``run`` stores it, and the
    next write goes on. The writes see each other's effects in order, so writes about one member
    apply in the order given. A serialization failure or deadlock re-runs the whole batch; any other
    database error ends it (the caller decides what to do with its writes)."""

    async def attempt(conn: Any) -> list[Any]:
        outcomes: list[Any] = []
        for w in writes:
            await conn.execute(f"SAVEPOINT {_SAVEPOINT}")
            try:
                outcomes.append(await _claim_and_work(conn, w.key, w.result_type, w.work, w.send_reads))
                await conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
                continue
            except errors.FailedPrecondition as refusal:
                await _roll_back_to_savepoint(conn)
                earlier = await _keep_refusal(conn, w.key, w.request, refusal)
                try:
                    outcomes.append(refusal if earlier is None else _replay(earlier, w.key, w.result_type))
                except errors.LoyaltyError as replayed:
                    outcomes.append(replayed)
            except errors.LoyaltyError as err:
                await _roll_back_to_savepoint(conn)
                outcomes.append(err)
            await conn.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        return outcomes

    return await db.run_in_pipeline(attempt)
