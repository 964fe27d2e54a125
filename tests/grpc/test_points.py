"""Manual points, history pages and filters, who/where/why on movements, the expiry run, verification."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import points_pb2, points_pb2_grpc
from loyalty_core.service import points
from loyalty_core.store.db import Database
from tests.fixtures.keys import BearerKey
from tests.grpc.conftest import Api, new_id, refusal

DAY_S = 86_400


def test_accrual_picks_its_expiry_and_is_active_at_once(api, clock):
    p = api.programme(point_lifetime_days=100)
    m = api.enrol(p.programme_id)
    at = timestamp_pb2.Timestamp(seconds=clock.now_us() // 10**6 + 3 * DAY_S)
    for expiry in ({}, {"lifetime_days": 7}, {"expire_time": at}, {"never": True}, {"programme_default": True}):
        api.accrue(p.programme_id, m.member_id, 1, **({"expiry": expiry} if expiry else {}))
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.pending_points) == (5, 0)
    assert [(x.expire_time.ToSeconds() - b.as_of_time.ToSeconds()) // DAY_S for x in b.burn_outs] == [3, 7]
    clock.advance(days=101)
    run = api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))
    assert (run.lots_expired, run.points_expired) == (4, 4)
    assert api.balance(p.programme_id, m.member_id).active_points == 1


def test_movements_record_who_where_why_and_the_correlation_id(api, make_key, channel_with):
    p = api.programme()
    m = api.enrol(p.programme_id)
    # The actor is the name of the API key that made the call.
    name, key = make_key(name=f"back-office-{new_id()[:8]}")
    office = Api(channel_with(key=key))
    moved = office.points.AccruePoints(points_pb2.AccruePointsRequest(
        request_id="r-1", programme_id=p.programme_id, member_id=m.member_id, points=3, comment="sorry",
        context={"store_id": "s1", "terminal_id": "t9", "reason_code": "goodwill"})).movement
    assert (moved.actor, moved.store_id, moved.terminal_id, moved.reason_code, moved.correlation_id, moved.comment) \
        == (name, "s1", "t9", "goodwill", "r-1", "sorry")
    spent = office.points.RedeemPoints(points_pb2.RedeemPointsRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, points=1),
        metadata=[("x-correlation-id", "corr-7")]).movement
    assert (spent.actor, spent.correlation_id, spent.points) == (name, "corr-7", -1)


def test_history_pages_newest_first_filtered_by_kind_and_time(api, clock):
    p = api.programme()
    m = api.enrol(p.programme_id)
    for i in range(5):
        api.accrue(p.programme_id, m.member_id, 10 + i)
        clock.advance(days=1)
    api.redeem(p.programme_id, m.member_id, 3)
    all_ = api.history(p.programme_id, m.member_id)
    assert [x.points for x in all_] == [-3, 14, 13, 12, 11, 10]
    pages, token = [], ""
    while True:
        page = api.points.ListPointsHistory(points_pb2.ListPointsHistoryRequest(
            programme_id=p.programme_id, member_id=m.member_id, page_size=4, page_token=token))
        pages.append([x.movement_id for x in page.movements])
        token = page.next_page_token
        if not token:
            break
    assert [len(x) for x in pages] == [4, 2]
    assert sum(pages, []) == [x.movement_id for x in all_]
    assert [x.points for x in api.history(p.programme_id, m.member_id, "SPENT")] == [-3]
    start = all_[3].create_time
    end = all_[1].create_time
    window = api.points.ListPointsHistory(points_pb2.ListPointsHistoryRequest(
        programme_id=p.programme_id, member_id=m.member_id, start_time=start, end_time=end)).movements
    assert [x.points for x in window] == [13, 12]


def test_the_expiry_run_is_safe_twice_and_from_two_servers_at_once(api, grpc_server, clock, make_key):
    p = api.programme()
    members = [api.enrol(p.programme_id) for _ in range(6)]
    for m in members:
        api.accrue(p.programme_id, m.member_id, 7, expiry={"lifetime_days": 1})
    clock.advance(days=2)
    _name, key = make_key()

    def run(_):
        with grpc.insecure_channel(grpc_server.address) as raw:
            ch = grpc.intercept_channel(raw, BearerKey(key))
            return points_pb2_grpc.PointsServiceStub(ch).RunExpiry(
                points_pb2.RunExpiryRequest(programme_id=p.programme_id), timeout=30)

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(run, range(2)))
    assert sum(r.points_expired for r in runs) == 6 * 7
    assert sum(r.lots_expired for r in runs) == 6
    assert run(0).points_expired == 0
    for m in members:
        b = api.balance(p.programme_id, m.member_id)
        assert (b.active_points, b.expired_total_points) == (0, 7)


def test_verify_finds_a_lot_that_disagrees_with_the_ledger(api, database_url):
    p = api.programme()
    m = api.enrol(p.programme_id)
    lot = api.accrue(p.programme_id, m.member_id, 5).lots[0].lot_id
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE lot SET remaining = 4 WHERE lot_id = %s", (int(lot),))
    try:
        found = api.points.VerifyLedger(points_pb2.VerifyLedgerRequest(programme_id=p.programme_id))
        assert found.members_checked == 1 and found.lots_checked == 1
        assert sorted(d.invariant for d in found.disagreements) == [
            "balance_equals_sum_of_lots", "lot_remaining_equals_allocations"]
        assert all(d.member_id == m.member_id for d in found.disagreements)
        cli = subprocess.run([sys.executable, "-m", "server", "verify"], capture_output=True, text=True,
                             env={"LOYALTY_DATABASE_URL": database_url, "PATH": ""}, timeout=60)
        assert cli.returncode == 1, cli.stderr
        assert "lot_remaining_equals_allocations" in cli.stdout
    finally:
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE lot SET remaining = 5 WHERE lot_id = %s", (int(lot),))
    cli = subprocess.run([sys.executable, "-m", "server", "verify"], capture_output=True, text=True,
                         env={"LOYALTY_DATABASE_URL": database_url, "PATH": ""}, timeout=60)
    assert cli.returncode == 0, cli.stdout + cli.stderr


def test_a_manual_redemption_refuses_more_than_the_balance(api):
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 2)
    with pytest.raises(grpc.RpcError) as err:
        api.redeem(p.programme_id, m.member_id, 3)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "points_must_not_exceed_balance")


async def test_the_expiry_run_reads_its_due_members_a_batch_at_a_time_and_misses_none(api, clock, database_url):
    # Seven due members read two at a time from the run's cursor, on a pool of one connection
    # (the cursor has a connection of its own, so the members' transactions are not starved).
    p = api.programme()
    members = [api.enrol(p.programme_id) for _ in range(7)]
    for m in members:
        api.accrue(p.programme_id, m.member_id, 3, expiry={"lifetime_days": 1})
    clock.advance(days=2)
    async with Database(database_url, pool_min_size=1, pool_max_size=1) as db:
        done = await points.run_expiry(db, clock, p.programme_id, None, batch=2)
    assert (done.lots_expired, done.points_expired) == (7, 7 * 3)
    for m in members:
        assert api.balance(p.programme_id, m.member_id).expired_total_points == 3
