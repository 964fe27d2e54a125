"""Citus: the schema distributed by member when the database runs Citus (docs/scale-out.md).

One set of migrations serves both: they make every table distributable, and after applying them
``migrate`` calls :func:`distribute` on Citus, which makes each table not yet in Citus' metadata
  - a look-up (``LOOKUPS``): distributed by its looked-up value, so a claim goes to one shard;
  - a member-owned table (``member_id`` in its primary key): distributed by ``member_id`` and
    colocated with ``member``, so one member's rows of every table live on one shard and a write
    about one member runs there;
  - any other table (programmes, levels, keys, jobs, webhooks, event types): a reference table,
    copied to every node, which member-owned tables may join and reference.
Tables are taken referenced-first (foreign keys). The migrations' own version table stays on the
coordinator. A table a later migration adds is distributed by the same rules the next time it runs.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

# The per-programme unique values, each a table distributed by the value (migration 0023, the
# idempotency keys of 0001 and the imported rows' external ids of 0022).
LOOKUPS = {"member_phone": "phone", "member_card": "card_number", "order_key": "order_id",
           "idempotency_key": "request_id", "member_import": "external_id"}
MEMBER_COLUMN = "member_id"
# The table every member-owned table is colocated with.
MEMBER_TABLE = "member"
MODES = ("auto", "on", "off")


class DistributionError(RuntimeError):
    """The setting asks for Citus where there is none, or is not one of ``MODES``."""


# One row when the database has the citus extension.
CITUS_INSTALLED = "SELECT true FROM pg_extension WHERE extname = 'citus'"


async def is_citus(conn: Any) -> bool:
    cur = await conn.execute(CITUS_INSTALLED)
    return await cur.fetchone() is not None


async def wanted(conn: Any, mode: str) -> bool:
    """Whether to distribute: ``auto`` when the database has the citus extension, ``on`` always
    (refused without it), ``off`` never."""
    if mode not in MODES:
        raise DistributionError(f"database_distribution must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return False
    found = await is_citus(conn)
    if mode == "on" and not found:
        raise DistributionError("database_distribution is 'on' but the database has no citus extension")
    return found


async def _undistributed(conn: Any, local: set[str]) -> list[tuple[str, bool]]:
    """(table, has member_id in its primary key) for the schema's tables Citus has not distributed
    yet, each after the tables it references."""
    cur = await conn.execute(
        """SELECT c.relname,
                  EXISTS (SELECT FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                                  AND a.attnum = ANY(i.indkey)
                          WHERE i.indrelid = c.oid AND i.indisprimary AND a.attname = %s),
                  coalesce((SELECT array_agg(DISTINCT r.relname) FROM pg_constraint f
                            JOIN pg_class r ON r.oid = f.confrelid
                            WHERE f.conrelid = c.oid AND f.contype = 'f' AND f.confrelid <> c.oid), '{}')
           FROM pg_class c
           WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'p')
             AND NOT c.relispartition
             -- A table created with a key to a reference table is a Citus local table already
             -- (partmethod n, repmodel s): still to be distributed.
             AND NOT EXISTS (SELECT FROM pg_dist_partition d WHERE d.logicalrelid = c.oid
                             AND NOT (d.partmethod = 'n' AND d.repmodel = 's'))
           ORDER BY c.relname""",
        (MEMBER_COLUMN,),
    )
    rows = {name: (member_owned, set(refs)) for name, member_owned, refs in await cur.fetchall() if name not in local}
    ordered: list[tuple[str, bool]] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done or name not in rows:
            return
        done.add(name)
        for ref in sorted(rows[name][1]):
            visit(ref)
        ordered.append((name, rows[name][0]))

    visit(MEMBER_TABLE)  # first of the member-owned tables: the others are colocated with it
    for name in rows:
        visit(name)
    # Reference tables before everything distributed: a member-owned table may reference them.
    return sorted(ordered, key=lambda t: t[1] or t[0] in LOOKUPS)


async def distribute(conn: Any, *, local: set[str]) -> list[str]:
    """Distribute every table Citus does not know yet (see the module's rules), in the caller's
    transaction; the tables distributed, as ``name:kind``. ``local`` stays on the coordinator."""
    # DDL and distribution in one transaction: Citus must then use one connection per node.
    await conn.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
    # The ledger's and history's append-only triggers run on each shard, where they read only their
    # member's own colocated row (docs/scale-out.md).
    await conn.execute("SET LOCAL citus.enable_unsafe_triggers TO on")
    tables = await _undistributed(conn, local)
    # Citus refuses a foreign key from a local table to a distributed one (and the reverse), so the
    # keys between the tables distributed here are dropped first and added again after.
    cur = await conn.execute(
        """SELECT f.conrelid::regclass::text, f.conname, pg_get_constraintdef(f.oid) FROM pg_constraint f
           WHERE f.contype = 'f' AND f.conrelid::regclass::text = ANY(%(t)s)
             AND f.confrelid::regclass::text = ANY(%(t)s)
             AND f.confrelid::regclass::text <> ALL(%(ref)s)""",
        {"t": [t for t, _ in tables], "ref": [t for t, member_owned in tables if not member_owned and t not in LOOKUPS]},
    )
    keys = await cur.fetchall()
    for table, name, _ in keys:
        await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    done = []
    for table, member_owned in tables:
        if table in LOOKUPS:
            await conn.execute("SELECT create_distributed_table(%s, %s, colocate_with => 'none')",
                               (table, LOOKUPS[table]))
            kind = f"by {LOOKUPS[table]}"
        elif member_owned:
            colocate = "default" if table == MEMBER_TABLE else MEMBER_TABLE
            await conn.execute("SELECT create_distributed_table(%s, %s, colocate_with => %s)",
                               (table, MEMBER_COLUMN, colocate))
            kind = f"by {MEMBER_COLUMN}"
        else:
            await conn.execute("SELECT create_reference_table(%s)", (table,))
            kind = "reference"
        log.info("distributed %s (%s)", table, kind, extra={"event": "table_distributed", "table": table,
                                                             "kind": kind})
        done.append(f"{table}:{kind}")
    for table, name, definition in keys:
        await conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    return done
