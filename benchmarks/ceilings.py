"""The ceilings: what this machine does with no loyalty-core in the way (bare RPC, one SELECT, a checkout tx)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import psycopg
from psycopg import sql

# Own schema in the benchmark database, so the ceilings never touch loyalty-core's tables.
SCHEMA = "bench_ceiling"

# The checkout's transaction shape, reduced to what costs: lock one member row, insert the
# order (with a priced basket as jsonb, as loyalty-core stores it), the hold and a ledger row,
# and update the member. Two round trips, the least a real checkout can do: the lock's result
# must come back before anything is computed, then every write and COMMIT go in one pipeline.
LOCK = f"SELECT member_no, balance, held FROM {SCHEMA}.member WHERE member_no = %s FOR UPDATE"
INSERT_ORDER = (f"INSERT INTO {SCHEMA}.orders (member_no, order_no, pricing, created_at) "
                "VALUES (%s, nextval('bench_ceiling.order_no'), %s::jsonb, now()) RETURNING order_no")
INSERT_HOLD = (f"INSERT INTO {SCHEMA}.hold (member_no, order_no, points, created_at) "
               "VALUES (%s, currval('bench_ceiling.order_no'), %s, now())")
INSERT_MOVEMENT = (f"INSERT INTO {SCHEMA}.movement (member_no, kind, points, held_delta, created_at) "
                   "VALUES (%s, 'held', %s, %s, now())")
UPDATE_MEMBER = f"UPDATE {SCHEMA}.member SET held = held + %s, balance = balance - %s WHERE member_no = %s"
SELECT_MEMBER = f"SELECT member_no, balance, held FROM {SCHEMA}.member WHERE member_no = %s"

# A priced basket of about the size loyalty-core keeps per order (15 lines of pricing).
PRICING_JSON = ('{"lines": [' + ", ".join(
    f'{{"line_id": "{i}", "sku": "SKU-{i:06d}", "category": "grocery", "quantity": 2, "gross_minor": 1998, '
    '"net_minor": 1898, "points": 0, "money_due_minor": 1898, "earned_points": 94}'
    for i in range(15)) + '], "net_minor": 28470, "earned_points": 1410}')


def setup_schema(url: str, members: int) -> None:
    """(Re)create the ceiling tables with ``members`` member rows, each with a large balance."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        conn.execute(f"""
            CREATE TABLE {SCHEMA}.member (
                member_no bigint PRIMARY KEY, balance bigint NOT NULL, held bigint NOT NULL,
                phone text NOT NULL UNIQUE, enrolled_at timestamptz NOT NULL DEFAULT now());
            CREATE SEQUENCE {SCHEMA}.order_no;
            CREATE TABLE {SCHEMA}.orders (
                member_no bigint NOT NULL, order_no bigint PRIMARY KEY, pricing jsonb NOT NULL,
                created_at timestamptz NOT NULL);
            CREATE TABLE {SCHEMA}.hold (
                member_no bigint NOT NULL, order_no bigint NOT NULL, points bigint NOT NULL,
                created_at timestamptz NOT NULL, PRIMARY KEY (member_no, order_no));
            CREATE TABLE {SCHEMA}.movement (
                member_no bigint NOT NULL, movement_id bigint GENERATED ALWAYS AS IDENTITY,
                kind text NOT NULL, points bigint NOT NULL, held_delta bigint NOT NULL,
                created_at timestamptz NOT NULL, PRIMARY KEY (member_no, movement_id));
        """)
        conn.execute(f"""INSERT INTO {SCHEMA}.member (member_no, balance, held, phone)
                         SELECT n, 1000000000, 0, '+1555' || lpad(n::text, 7, '0')
                         FROM generate_series(0, %s - 1) AS n""", (members,))
        conn.execute(f"ANALYZE {SCHEMA}.member")


def drop_schema(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))


def pool_kwargs() -> dict[str, object]:
    # As loyalty-core's Database configures its pool: autocommit, statements prepared on first use.
    return {"autocommit": True, "prepare_threshold": 0}


async def select_member(conn: psycopg.AsyncConnection, member_no: int) -> None:
    cur = await conn.execute(SELECT_MEMBER, (member_no,))
    await cur.fetchone()


async def checkout_tx(conn: psycopg.AsyncConnection, member_no: int) -> None:
    """The checkout's transaction in two round trips (see LOCK above)."""
    points = 10
    async with conn.pipeline():
        async with conn.transaction():
            cur = await conn.execute(LOCK, (member_no,))
            row = await cur.fetchone()  # flushes BEGIN + the lock: round trip one
            if row is None:
                raise LookupError(f"ceiling member {member_no} is missing")
            await conn.execute(INSERT_ORDER, (member_no, PRICING_JSON))
            await conn.execute(INSERT_HOLD, (member_no, points))
            await conn.execute(INSERT_MOVEMENT, (member_no, -points, points))
            await conn.execute(UPDATE_MEMBER, (points, points, member_no))
        # leaving the transaction queues COMMIT; leaving the pipeline syncs: round trip two


async def serve(port: int, stub_dir: str, url: str | None, pool_size: int, response_bytes: int) -> None:
    """One ceiling server process; several may share the port (SO_REUSEPORT), like loyalty-core's workers."""
    from grpc import aio
    from psycopg_pool import AsyncConnectionPool

    from benchmarks import protogen

    pb, pb_grpc = protogen.load(stub_dir)
    reply = pb.Payload(body=b"r" * response_bytes)
    pool = None
    if url:
        pool = AsyncConnectionPool(url, min_size=pool_size, max_size=pool_size, open=False, kwargs=pool_kwargs())
        await pool.open(wait=True, timeout=30)

    class Ceiling(pb_grpc.CeilingServiceServicer):
        async def Bare(self, request, context):  # noqa: N802 (gRPC's names)
            return reply

        async def Select(self, request, context):  # noqa: N802
            async with pool.connection() as conn:
                await select_member(conn, request.member_no)
            return reply

        async def CheckoutTx(self, request, context):  # noqa: N802
            async with pool.connection() as conn:
                await checkout_tx(conn, request.member_no)
            return reply

    server = aio.server(options=[("grpc.so_reuseport", 1)])
    pb_grpc.add_CeilingServiceServicer_to_server(Ceiling(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") != port:
        raise RuntimeError(f"ceiling server could not bind 127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)  # the runner waits for this line from every worker
    await stop.wait()
    await server.stop(1)
    if pool is not None:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceilings", description="one ceiling server worker")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument("--response-bytes", type=int, default=1000)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.port, args.stubs, args.database_url, args.pool_size, args.response_bytes))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
