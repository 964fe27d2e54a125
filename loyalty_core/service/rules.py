"""The programme and its levels a sale prices with: this process's copy while it is current.

Quotes take the copy as it is (at most ``LOYALTY_PROGRAMME_CACHE_TTL_S`` old). Writes check it:
the statement that locks the member also reads the programme's revision, which every change to
the programme or its levels raises (migration 0004), so a write prices with exactly what the
database holds, and reads the programme and levels only when the copy is missing or of another
revision. That saves a write two statements of its pipeline, and their decoding.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from loyalty_core.levels import Level
from loyalty_core.model import Programme
from loyalty_core.service.members import found_programme
from loyalty_core.store import membership, programmes
from loyalty_core.store.db import Database
from loyalty_core.store.later import Later


@dataclasses.dataclass(frozen=True)
class Rules:
    programme: Programme
    levels: list[Level]
    # The programme's revision when it was read (its levels were read after it, so they are at
    # least as new: a copy whose levels are newer is read again at its next use, never trusted stale).
    revision: int


@dataclasses.dataclass(frozen=True)
class SentRules:
    """This process's copy, or the reads sent for the rows (the programme first, then its levels)."""

    programme_id: str
    copy: Rules | None
    programme: Later[tuple[Programme, int] | None] | None = None
    levels: Later[list[membership.StoredLevel]] | None = None
    generation: int = 0


async def send(conn: Any, db: Database, programme_id: str) -> SentRules:
    """The copy when this process has one, else the reads, sent now (they share the round trip of
    whatever is sent with them in pipeline mode)."""
    copy = db.programmes.get(programme_id)
    if copy is not None:
        return SentRules(programme_id, copy)
    return await _send_reads(conn, db, programme_id)


async def _send_reads(conn: Any, db: Database, programme_id: str) -> SentRules:
    # A change this process commits after this point forgets the entry, and put() then keeps
    # nothing of what these reads return.
    generation = db.programmes.generation()
    return SentRules(programme_id, None, await programmes.send_get_revised(conn, programme_id),
                     await membership.send_levels_of(conn, programme_id), generation)


async def read(conn: Any, db: Database, sent: SentRules, revision: int | None) -> Rules:
    """The rules at ``revision`` (what the member's lock read; None when no member matched, which
    reads the rows so that a missing programme is told apart from a missing member)."""
    if sent.copy is not None:
        if sent.copy.revision == revision:
            return sent.copy
        sent = await _send_reads(conn, db, sent.programme_id)  # one more round trip, after a change
    return await _received(db, sent)


async def read_any(db: Database, sent: SentRules) -> Rules:
    """The rules for a quote: the copy whatever its revision, else the rows."""
    return sent.copy if sent.copy is not None else await _received(db, sent)


async def _received(db: Database, sent: SentRules) -> Rules:
    assert sent.programme is not None and sent.levels is not None
    found = await sent.programme.get()
    programme = found_programme(found[0] if found else None)
    assert found is not None
    rules = Rules(programme, [s.level for s in await sent.levels.get()], found[1])
    db.programmes.put(sent.programme_id, rules, sent.generation)
    return rules
