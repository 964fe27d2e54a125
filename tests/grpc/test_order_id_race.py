"""Issue 11, defect 10: one order id checked out by 16 members at once is taken by exactly one of them;
every other gets ALREADY_EXISTS, never INTERNAL."""

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from loyalty.v1 import checkout_pb2
from tests.fixtures.keys import BearerKey
from tests.fixtures.server import ServerThread, make_test_settings
from tests.grpc.conftest import Api, checkout_request, new_id, refusal, until_not_busy

RACERS = 16


@pytest.fixture
def wide_api(database_url, clock, make_key):
    """A server whose pool has a connection for every racer, so their transactions overlap."""
    server = ServerThread(make_test_settings(database_url, pool_min_size=RACERS, pool_max_size=RACERS), clock).start()
    try:
        with grpc.insecure_channel(server.address) as ch:
            yield Api(grpc.intercept_channel(ch, BearerKey(make_key()[1])))
    finally:
        server.stop()


def test_defect_10_one_order_id_from_16_members_at_once_is_taken_once(wide_api):
    api = wide_api
    p = api.programme()
    members = [api.enrol(p.programme_id) for _ in range(RACERS)]
    for m in members:
        api.accrue(p.programme_id, m.member_id, 10)
    order_id = new_id()
    start = threading.Barrier(RACERS)

    def checkout(member_id):
        request = checkout_request(p.programme_id, member_id, [("bar", 1, 1_000)], points=5, order_id=order_id)
        start.wait()
        try:
            return until_not_busy(api.checkout.Checkout, request, timeout=30).order.member_id
        except grpc.RpcError as err:
            return refusal(err)

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(checkout, [m.member_id for m in members]))
    winners = [a for a in answers if isinstance(a, str)]
    assert len(winners) == 1
    assert [a for a in answers if not isinstance(a, str)] == [
        (grpc.StatusCode.ALREADY_EXISTS, "order_already_checked_out")] * (RACERS - 1)
    order = api.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=p.programme_id, order_id=order_id)).order
    assert order.member_id == winners[0]
    # The losers hold nothing.
    assert sorted(api.balance(p.programme_id, m.member_id).held_points for m in members) == [0] * 15 + [5]
