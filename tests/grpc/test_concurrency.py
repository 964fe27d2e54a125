"""Concurrency: spends on one member serialise on its lock and never overdraw; other members go on."""

import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import psycopg

from loyalty.v1 import checkout_pb2_grpc, points_pb2, points_pb2_grpc
from tests.fixtures.keys import BearerKey
from tests.grpc.conftest import checkout_request, new_id, refusal, until_not_busy


def test_64_concurrent_holds_and_spends_on_one_member_never_overdraw(api, grpc_server, make_key):
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 100)
    _name, key = make_key()

    def spend(i):
        with grpc.insecure_channel(grpc_server.address) as raw:
            ch = grpc.intercept_channel(raw, BearerKey(key))
            try:
                if i % 2:
                    until_not_busy(checkout_pb2_grpc.CheckoutServiceStub(ch).Checkout,
                                   checkout_request(p.programme_id, m.member_id, [("bar", 1, 1_000)], points=3),
                                   timeout=30)
                else:
                    points_pb2_grpc.PointsServiceStub(ch).RedeemPoints(points_pb2.RedeemPointsRequest(
                        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, points=3),
                        timeout=30)
                return 3
            except grpc.RpcError as err:
                assert refusal(err) == (grpc.StatusCode.FAILED_PRECONDITION, "points_must_not_exceed_balance")
                return 0

    with ThreadPoolExecutor(64) as pool:
        taken = sum(pool.map(spend, range(64)))
    assert taken == 99  # 33 of the 64 fit in 100 points
    b = api.balance(p.programme_id, m.member_id)
    assert b.active_points + b.held_points + b.spent_total_points == 100
    assert b.active_points == 1


def test_a_locked_member_does_not_block_another(api, grpc_server, database_url):
    p = api.programme()
    locked, free = api.enrol(p.programme_id), api.enrol(p.programme_id)
    for m in (locked, free):
        api.accrue(p.programme_id, m.member_id, 10)
    with psycopg.connect(database_url) as conn, ThreadPoolExecutor(1) as pool:
        conn.execute("SELECT 1 FROM member WHERE member_id = %s FOR UPDATE", (locked.member_id,))
        waiting = pool.submit(api.redeem, p.programme_id, locked.member_id, 1)
        started = time.monotonic()
        api.redeem(p.programme_id, free.member_id, 1)
        assert time.monotonic() - started < 2
        assert not waiting.done()
        conn.rollback()
        assert waiting.result(timeout=10).points == -1
