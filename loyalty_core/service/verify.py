"""Verify the ledger: every invariant of docs/ledger.md, for every member and lot, by a few SQL queries."""

from __future__ import annotations

from loyalty_core.model import Verification
from loyalty_core.service import checks
from loyalty_core.store import verify as store
from loyalty_core.store.db import Database


async def verify(db: Database, programme_id: str = "") -> Verification:
    """Disagreements between movements, lots, holds and the members' counters (empty when all agree)."""
    scope = checks.uuid_arg(programme_id, "programme_id") if programme_id else None
    async with db.transaction() as conn:
        # One snapshot for every query, so a write committing meanwhile cannot look like a disagreement.
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        found = await store.disagreements(conn, scope)
        members, lots = await store.counts(conn, scope)
    return Verification(members, lots, tuple(found))
