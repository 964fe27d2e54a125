"""Idempotency keys (AIP-155): claimed in the effect's transaction, the result stored beside the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from loyalty_core.store.convert import to_dt
from loyalty_core.store.db import on_citus
from loyalty_core.store.later import Later


@dataclass(frozen=True)
class StoredOutcome:
    """What an earlier request with the same key left: its fingerprint, outcome and result."""

    fingerprint: bytes
    outcome: str
    result: Any


async def claim(
    conn: Any, scope: str, request_id: str, method: str, fingerprint: bytes, now: int
) -> StoredOutcome | None:
    """Claim the key for this transaction; None when claimed, else what the earlier request left.

    A transaction that already holds the key makes this INSERT wait until it commits or rolls
    back, so concurrent replays see one effect. The stored row is read by a second statement:
    a statement's snapshot predates the commit it waited for.
    """
    return await (await send_claim(conn, scope, request_id, method, fingerprint, now)).get()


async def send_claim(
    conn: Any, scope: str, request_id: str, method: str, fingerprint: bytes, now: int
) -> Later[StoredOutcome | None]:
    """``claim`` sent now and read later, so the statements sent after it share its round trip in
    pipeline mode (they run after it: a waiting claim makes them wait too)."""
    cur = await conn.execute(
        "INSERT INTO idempotency_key (scope, request_id, method, fingerprint, outcome, result, created_at)"
        " VALUES (%s, %s, %s, %s, 'done', 'null', %s) ON CONFLICT DO NOTHING RETURNING true",
        (scope, request_id, method, fingerprint, to_dt(now)),
    )

    async def read(cur: Any) -> StoredOutcome | None:
        if await cur.fetchone():
            return None
        return await stored(conn, scope, request_id)

    return Later(cur, read)


async def stored(conn: Any, scope: str, request_id: str) -> StoredOutcome:
    cur = await conn.execute(
        "SELECT fingerprint, outcome, result FROM idempotency_key WHERE scope = %s AND request_id = %s",
        (scope, request_id),
    )
    fingerprint, outcome, result = await cur.fetchone()
    return StoredOutcome(bytes(fingerprint), outcome, result)


async def finish(conn: Any, scope: str, request_id: str, result: Any, member_id: str | None) -> None:
    """Store the result of the claimed key's effect, in the same transaction as the effect."""
    await conn.execute(
        "UPDATE idempotency_key SET result = %s, member_id = %s WHERE scope = %s AND request_id = %s",
        (Jsonb(result), member_id, scope, request_id),
    )


async def refuse(
    conn: Any, scope: str, request_id: str, method: str, fingerprint: bytes, refusal: Any, member_id: str | None,
    now: int,
) -> StoredOutcome | None:
    """Store a business refusal under the key; when the key got stored meanwhile, what is stored."""
    cur = await conn.execute(
        "INSERT INTO idempotency_key (scope, request_id, method, fingerprint, outcome, result, member_id, created_at)"
        " VALUES (%s, %s, %s, %s, 'refused', %s, %s, %s) ON CONFLICT DO NOTHING RETURNING true",
        (scope, request_id, method, fingerprint, Jsonb(refusal), member_id, to_dt(now)),
    )
    if await cur.fetchone():
        return None
    return await stored(conn, scope, request_id)


# What an erased member's keys keep (docs/trust.md "Members' data"): claimed, so a late retry is refused as a reused
# key rather than run again, but no sha256 of a request that held the phone or card, and no result.
ERASED_FINGERPRINT = bytes(32)


async def erase_member(conn: Any, member_id: str) -> int:
    """Wipe the fingerprints and results of the member's keys; how many there were."""
    cur = await conn.execute(
        "WITH done AS (UPDATE idempotency_key SET fingerprint = %s, result = 'null' WHERE member_id = %s RETURNING 1)"
        " SELECT count(*) FROM done",
        (ERASED_FINGERPRINT, member_id),
    )
    return int((await cur.fetchone())[0])


async def purge_batch(conn: Any, before: int, limit: int) -> int:
    """Delete up to ``limit`` keys created before ``before``, oldest first; how many went. Rows some
    transaction holds are skipped (a later batch takes them). On Citus, whose keys are spread over
    shards by request id, the oldest keys are found on every shard at once and deleted there; a held
    one is waited for (SKIP LOCKED needs the rows on one shard), which for a key older than the
    retention is a retry of it at most."""
    skip_locked = "" if await on_citus(conn) else " FOR UPDATE SKIP LOCKED"
    cur = await conn.execute(
        "DELETE FROM idempotency_key k WHERE (k.scope, k.request_id) IN (SELECT scope, request_id FROM idempotency_key"
        f" WHERE created_at < %s ORDER BY created_at LIMIT %s{skip_locked})",
        (to_dt(before), limit),
    )
    return int(cur.rowcount)
