"""The outbox's SQL: events written with the change that makes them, and read in commit-safe order.

Writing: ``CTE`` is a pair of data-modifying CTEs that a change's own statement carries (the
ledger's post, a history entry, an order's capture), so the event costs no statement of its own;
``CTE_MANY`` is the same for the changes of many members in one statement.
It takes the member's ``outbox_member`` row (created on first use) for the member's next sequence
numbers and stamps the events with ``tx = greatest(own xid, the member's last tx)``.

Reading: ``page_after`` returns events after a cursor ``(tx, position)`` in that order, and only
those with ``tx`` below ``pg_snapshot_xmin`` of the reading statement's snapshot: every
transaction below it has ended, and any event still to commit carries a tx at or above it, so it
sorts after everything returned. A member's events sort in their sequence order because each
write's tx is at least its predecessor's (the row lock orders the writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from loyalty_core.events import EVENT_TYPES, NewEvent
from loyalty_core.store.convert import to_dt, to_us

# Parameters: %(outbox_member)s (uuid), %(outbox_events)s (jsonb array of {type, version, payload}),
# %(outbox_now)s (timestamptz). Writes nothing for an empty array.
CTE = """outbox_seq AS (
    INSERT INTO outbox_member AS o (member_id, last_seq, last_tx)
    SELECT %(outbox_member)s, n, pg_current_xact_id()
    FROM (SELECT jsonb_array_length(%(outbox_events)s) AS n) c WHERE n > 0
    ON CONFLICT (member_id) DO UPDATE SET last_seq = o.last_seq + excluded.last_seq,
                                          last_tx = greatest(o.last_tx, excluded.last_tx)
    RETURNING last_seq, last_tx, jsonb_array_length(%(outbox_events)s) AS n
), outbox_rows AS (
    INSERT INTO outbox_event (member_id, seq, programme_id, event_id, type, payload_version, payload, created_at, tx)
    SELECT %(outbox_member)s, s.last_seq - s.n + x.i, (SELECT programme_id FROM member WHERE member_id = %(outbox_member)s),
           gen_random_uuid(), x.e->>'type', (x.e->>'version')::int, x.e->'payload', %(outbox_now)s, s.last_tx
    FROM outbox_seq s, jsonb_array_elements(%(outbox_events)s) WITH ORDINALITY AS x(e, i)
    ORDER BY x.i  -- positions in sequence order
    RETURNING 1
)"""


# ``CTE`` for the events of many members in one statement (a batch job's), from a CTE named
# ``outbox_in`` (member_id, i, n, e): each event, its position i (1..n) among its member's n events.
# Parameters: %(outbox_now)s.
CTE_MANY = """outbox_seq AS (
    INSERT INTO outbox_member AS o (member_id, last_seq, last_tx)
    SELECT member_id, max(n), pg_current_xact_id() FROM outbox_in GROUP BY member_id
    ON CONFLICT (member_id) DO UPDATE SET last_seq = o.last_seq + excluded.last_seq,
                                          last_tx = greatest(o.last_tx, excluded.last_tx)
    RETURNING member_id, last_seq, last_tx
), outbox_rows AS (
    INSERT INTO outbox_event (member_id, seq, programme_id, event_id, type, payload_version, payload, created_at, tx)
    SELECT x.member_id, s.last_seq - x.n + x.i, m.programme_id, gen_random_uuid(), x.e->>'type',
           (x.e->>'version')::int, x.e->'payload', %(outbox_now)s, s.last_tx
    FROM outbox_in x JOIN outbox_seq s USING (member_id) JOIN member m USING (member_id)
    ORDER BY x.member_id, x.i  -- positions in each member's sequence order
    RETURNING 1
)"""


def event_json(event: NewEvent) -> dict[str, Any]:
    return {"type": event.type, "version": EVENT_TYPES[event.type], "payload": dict(event.payload)}


def params(member_id: str, now: int, events: Sequence[NewEvent]) -> dict[str, Any]:
    """``CTE``'s parameters for ``events`` of one member at ``now``."""
    return {
        "outbox_member": member_id, "outbox_now": to_dt(now),
        "outbox_events": Jsonb([event_json(e) for e in events]),
    }


async def write(conn: Any, member_id: str, now: int, events: Sequence[NewEvent]) -> None:
    """``events`` in a statement of their own, for a change whose statements cannot carry ``CTE``."""
    if events:
        await conn.execute(f"WITH {CTE} SELECT count(*) FROM outbox_rows", params(member_id, now, events))


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the stream: everything at or before ``(tx, position)`` has been read."""

    tx: int
    position: int

    def token(self) -> str:
        return f"{self.tx}-{self.position}"


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event_id: str
    type: str
    payload_version: int
    payload: dict[str, Any]
    created_at: int
    programme_id: str
    member_id: str
    seq: int
    cursor: Cursor


_EVENT_COLUMNS = ("event_id::text, type, payload_version, payload, created_at, programme_id::text, member_id::text,"
                  " seq, tx::text::bigint, position")
# The oldest transaction still running as the reading statement sees it: events below it are final.
_SAFE = "tx < pg_snapshot_xmin(pg_current_snapshot())"


def _event(row: Sequence[Any]) -> StoredEvent:
    created: datetime = row[4]
    return StoredEvent(row[0], row[1], row[2], row[3], to_us(created) or 0, row[5], row[6], row[7],
                       Cursor(row[8], row[9]))


async def page_after(conn: Any, after: Cursor, limit: int, *, programme_id: str | None = None,
                     types: Sequence[str] = ()) -> list[StoredEvent]:
    """Up to ``limit`` final events after ``after``, in stream order, of one programme (None: all)
    and of ``types`` (empty: all)."""
    cur = await conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM outbox_event"
        f" WHERE {_SAFE} AND (tx, position) > (%(tx)s::text::xid8, %(position)s)"
        " AND (%(programme)s::uuid IS NULL OR programme_id = %(programme)s::uuid)"
        " AND (cardinality(%(types)s::text[]) = 0 OR type = ANY(%(types)s::text[]))"
        " ORDER BY tx, position LIMIT %(limit)s",
        {"tx": after.tx, "position": after.position, "programme": programme_id, "types": list(types),
         "limit": limit},
    )
    return [_event(r) for r in await cur.fetchall()]


async def head(conn: Any) -> Cursor:
    """The cursor before every event not final yet: a reader starting here gets only what commits from now."""
    cur = await conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    return Cursor((await cur.fetchone())[0], 0)


async def events_by_key(conn: Any, keys: Sequence[tuple[str, int]]) -> list[StoredEvent]:
    """The events of ``keys`` ((member_id, seq)) that are still kept, in stream order."""
    cur = await conn.execute(
        f"SELECT {_EVENT_COLUMNS} FROM outbox_event"
        " WHERE (member_id, seq) IN (SELECT * FROM unnest(%s::uuid[], %s::bigint[])) ORDER BY tx, position",
        ([k[0] for k in keys], [k[1] for k in keys]),
    )
    return [_event(r) for r in await cur.fetchall()]
