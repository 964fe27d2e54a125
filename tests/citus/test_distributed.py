"""The schema on a real Citus cluster (coordinator and two workers): how loyalty-core distributed it,
and that a write about one member runs on that member's shard (the coordinator's own log of the
commands it sent to the workers shows it). The whole gRPC suite runs there with LOYALTY_TEST_CITUS=1
(docs/scale-out.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg

from loyalty.v1 import checkout_pb2, common_pb2, member_pb2
from loyalty_core.store import distribute, migrate
from tests.citus.conftest import RemoteCommands, Shard
from tests.grpc.conftest import Api, new_id


def _tables(url: str) -> dict[str, tuple[str, str | None, int]]:
    """table -> (Citus' method: h hash, n reference; distribution column; colocation group)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT logicalrelid::text, partmethod, column_to_column_name(logicalrelid, partkey), colocationid"
            " FROM pg_dist_partition").fetchall()
    return {t: (method, column, group) for t, method, column, group in rows}


def test_member_owned_tables_are_colocated_by_member_lookups_by_value_and_the_rest_are_reference(database_url):
    tables = _tables(database_url)
    with psycopg.connect(database_url) as conn:
        schema = {t for (t,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")}
        with_member_id = {t for (t,) in conn.execute(
            "SELECT DISTINCT table_name FROM information_schema.columns WHERE table_schema = 'public'"
            " AND column_name = 'member_id'")}
        triggered = {t for (t,) in conn.execute(
            "SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal")}
    assert set(tables) == schema  # every table but the migrations' own is Citus'
    member_group = tables["member"][2]
    for table, (method, column, group) in tables.items():
        if table in distribute.LOOKUPS:
            assert (method, column) == ("h", distribute.LOOKUPS[table]), table
            assert group != member_group, table
        elif method == "h":
            assert (column, group) == ("member_id", member_group), table
        else:
            assert method == "n", table
            assert table not in triggered, table  # reference tables carry no trigger
    distributed_by_member = {t for t, (m, c, _) in tables.items() if m == "h" and c == "member_id"}
    assert {"member", "lot", "hold", "orders", "order_line", "refund", "movement", "outbox_event"} <= distributed_by_member
    assert {"programme", "level", "api_key", "scheduled_job"} <= {t for t, (m, _, _) in tables.items() if m == "n"}
    assert with_member_id - set(distribute.LOOKUPS) - {"idempotency_key"} == distributed_by_member


def _member_shards(remote: RemoteCommands, url: str, call: Callable[[], Any]) -> tuple[set[int], set[str]]:
    """What ``call`` sent to the workers: the hash ranges of the member-colocated shards it touched,
    and the tables of the other distributed shards (look-ups) it touched. Reference tables, whose
    copy is on every node, are read beside the member's rows in the same statements."""
    offset = remote.offset()
    call()
    tables = _tables(url)
    member_group, reference_group = tables["member"][2], tables["programme"][2]
    touched: list[Shard] = remote.shards_since(offset)
    return ({s.range_start for s in touched if s.colocation_id == member_group},
            {s.table for s in touched if s.colocation_id not in (member_group, reference_group)})


def test_every_write_about_a_member_runs_on_that_members_shard(citus_api: Api, database_url, remote_commands):
    api = citus_api
    p = api.programme()
    phone = f"+1555{new_id()[:7].translate(str.maketrans('abcdef', '123456'))}"
    enrolled: list[member_pb2.Member] = []
    ranges, others = _member_shards(remote_commands, database_url, lambda: enrolled.append(api.enrol(
        p.programme_id, phone=phone)))
    member_id = enrolled[0].member_id
    with psycopg.connect(database_url) as conn:
        (home,) = conn.execute(
            "SELECT coalesce(shardminvalue::bigint, 0) FROM pg_dist_shard"
            " WHERE shardid = get_shard_id_for_distribution_column('member', %s::uuid)", (member_id,)).fetchone()
    assert ranges == {home}
    assert others <= {"idempotency_key", "member_phone", "member_card"}  # the claims of the key and phone
    order_id = new_id()
    writes: dict[str, Callable[[], Any]] = {
        "AccruePoints": lambda: api.accrue(p.programme_id, member_id, 500),
        "RedeemPoints": lambda: api.redeem(p.programme_id, member_id, 100),
        "Checkout": lambda: api.checkout_order(p.programme_id, member_id, [("grocery", 2, 1_000)], points=3,
                                               order_id=order_id),
        "Capture": lambda: api.capture(p.programme_id, order_id),
        "Refund": lambda: api.checkout.Refund(checkout_pb2.RefundRequest(
            request_id=new_id(), programme_id=p.programme_id, order_id=order_id,
            lines=[checkout_pb2.RefundLine(line_id="1", quantity=1)])),
        "Checkout by phone": lambda: api.checkout.Checkout(checkout_pb2.CheckoutRequest(
            request_id=new_id(), programme_id=p.programme_id, order_id=new_id(),
            member=common_pb2.MemberRef(phone=phone), lines=[checkout_pb2.BasketLine(
                line_id="1", sku="s", category="grocery", quantity=1, unit_price_minor=500)])),
    }
    for name, call in writes.items():
        ranges, others = _member_shards(remote_commands, database_url, call)
        assert ranges == {home}, name
        # Besides the member's shard: the idempotency key's, and the order id's or phone's look-up.
        assert others <= {"idempotency_key", "order_key", "member_phone"}, name
    assert not api.verify().disagreements


def test_a_members_shards_move_to_the_other_worker_together_and_the_member_is_served_there(
        citus_api: Api, database_url):
    api = citus_api
    p = api.programme()
    member_id = api.enrol(p.programme_id).member_id
    api.accrue(p.programme_id, member_id, 70)
    with psycopg.connect(database_url, autocommit=True) as conn:
        shard, source = conn.execute(
            "SELECT s.shardid, n.nodeid FROM pg_dist_shard s JOIN pg_dist_placement pl USING (shardid)"
            " JOIN pg_dist_node n USING (groupid)"
            " WHERE s.shardid = get_shard_id_for_distribution_column('member', %s::uuid)", (member_id,)).fetchone()
        (target,) = conn.execute(
            "SELECT nodeid FROM pg_dist_node WHERE nodeid <> %s AND shouldhaveshards AND groupid <> 0"
            " ORDER BY nodeid LIMIT 1", (source,)).fetchone()
        # block_writes: these test workers have no logical replication (wal_level = replica).
        conn.execute("SELECT citus_move_shard_placement(%s, %s, %s, 'block_writes')", (shard, source, target))
        moved = conn.execute(
            "SELECT p.logicalrelid::text, n.nodeid FROM pg_dist_shard s JOIN pg_dist_partition p USING (logicalrelid)"
            " JOIN pg_dist_placement pl USING (shardid) JOIN pg_dist_node n USING (groupid)"
            " WHERE p.colocationid = (SELECT colocationid FROM pg_dist_partition WHERE logicalrelid = 'member'::regclass)"
            " AND s.shardminvalue = (SELECT shardminvalue FROM pg_dist_shard WHERE shardid = %s)", (shard,)).fetchall()
    assert {node for _, node in moved} == {target}  # the member's rows of every table moved as one
    assert {"member", "lot", "movement", "orders"} <= {table for table, _ in moved}
    api.accrue(p.programme_id, member_id, 5)
    assert api.balance(p.programme_id, member_id).active_points == 75
    assert not api.verify().disagreements


def test_a_table_a_later_migration_adds_is_distributed_when_it_runs(citus_cluster):
    """On a database distributed already, a new member-owned table (with its key to the member) and a
    new shared table (with its key to the programme) are distributed by the same rules."""
    name = f"loyalty_citus_{new_id()[:8]}"
    url = citus_cluster.create_database(name)
    try:
        asyncio.run(migrate.migrate(url, distribution="on"))
        later = [*migrate.discover(), migrate.Migration(9999, "later", """
            CREATE TABLE later_shared (programme_id uuid NOT NULL REFERENCES programme, code text NOT NULL,
                                       PRIMARY KEY (programme_id, code));
            CREATE TABLE later_owned (member_id uuid NOT NULL REFERENCES member, n integer NOT NULL,
                                      PRIMARY KEY (member_id, n));""")]
        asyncio.run(migrate.migrate(url, later, distribution="on"))
        tables = _tables(url)
        assert tables["later_shared"][0] == "n" and tables["later_shared"][2] == tables["programme"][2]
        assert tables["later_owned"][1:] == ("member_id", tables["member"][2])
    finally:
        citus_cluster.drop_database(name)
