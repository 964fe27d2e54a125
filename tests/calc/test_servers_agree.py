"""A server running the pure-Python reference and one running the compiled twin answer the same
quotes, checkouts and captures identically, end to end over gRPC (the parity tests compare the
functions; this compares what a till sees). Each server is its own process, because the twin is
chosen once per process (LOYALTY_CALC_IMPL)."""

from __future__ import annotations

import random
import urllib.request
import uuid
from collections.abc import Iterator

import grpc
import pytest

from loyalty.v1 import checkout_pb2, checkout_pb2_grpc, common_pb2, member_pb2, member_pb2_grpc, points_pb2
from loyalty.v1 import points_pb2_grpc, programme_pb2, programme_pb2_grpc
from tests.fixtures.keys import BearerKey
from tests.fixtures.server import ServerProcess

CATEGORIES = ("grocery", "bar", "tickets")


@pytest.fixture(scope="module")
def servers(database_url: str) -> Iterator[dict[str, ServerProcess]]:
    started = {impl: ServerProcess({"LOYALTY_DATABASE_URL": database_url, "LOYALTY_CALC_IMPL": impl}).start()
               for impl in ("python", "cython")}
    try:
        yield {impl: server.wait_serving() for impl, server in started.items()}
    finally:
        for server in started.values():
            server.terminate()


def calc_impl_of(server: ServerProcess) -> str:
    """The twin the server says it loaded (its loyalty_build_info metric's label)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as resp:
        line = next(x for x in resp.read().decode().splitlines() if x.startswith("loyalty_build_info{"))
    return line.split('calc_impl="', 1)[1].split('"', 1)[0]


def new_id() -> str:
    return uuid.uuid4().hex


def basket(rng: random.Random) -> list[checkout_pb2.BasketLine]:
    lines = []
    for i in range(rng.randint(1, 30)):
        quantity = rng.choice((1, 1, 2, 3, 6))
        price = rng.choice((0, 1, 99, rng.randrange(50, 5_000), rng.randrange(1, 10**9)))
        discount = rng.randrange(0, quantity * price + 1) if rng.random() < 0.2 else 0
        lines.append(checkout_pb2.BasketLine(line_id=str(i + 1), sku=f"sku-{i}", category=rng.choice(CATEGORIES),
                                             quantity=quantity, unit_price_minor=price, line_discount_minor=discount))
    return lines


def test_both_twins_price_hold_and_capture_alike(servers: dict[str, ServerProcess], make_key) -> None:
    assert {impl: calc_impl_of(server) for impl, server in servers.items()} == {"python": "python", "cython": "cython"}
    _, key = make_key()
    channels = {impl: grpc.intercept_channel(grpc.insecure_channel(s.address), BearerKey(key))
                for impl, s in servers.items()}
    setup = channels["cython"]
    programme = programme_pb2_grpc.ProgrammeServiceStub(setup).CreateProgramme(programme_pb2.CreateProgrammeRequest(
        request_id=new_id(), programme=programme_pb2.Programme(
            name=f"twins {new_id()}", enabled=True, currency_code="EUR", point_value_minor=7,
            order_pay_share_bps=4_000, default_cashback_bps=333, default_pay_share_bps=10_000,
            category_rules=[programme_pb2.CategoryRule(category="bar", cashback_bps=1_000, pay_share_bps=10_000),
                            programme_pb2.CategoryRule(category="tickets", cashback_bps=50, pay_share_bps=1_000)],
            hold_ttl_seconds=600, discounted_items_earn=True))).programme
    # One member per twin with the same lots (several, so the burn-out order matters).
    members = {}
    for impl in channels:
        m = member_pb2_grpc.MemberServiceStub(setup).EnrolMember(member_pb2.EnrolMemberRequest(
            request_id=new_id(), programme_id=programme.programme_id,
            phone=f"+1555{uuid.uuid4().int % 10**7:07d}")).member
        for points, days in ((1_000, 30), (250, 10), (4_000, 400)):
            points_pb2_grpc.PointsServiceStub(setup).AccruePoints(points_pb2.AccruePointsRequest(
                request_id=new_id(), programme_id=programme.programme_id, member_id=m.member_id, points=points,
                expiry=points_pb2.Expiry(lifetime_days=days)))
        members[impl] = m.member_id

    rng = random.Random(20261123)
    priced = 0
    for _ in range(60):
        lines = basket(rng)
        requested = rng.choice((0, 1, 100, 5_000, 10**6))
        answers = {}
        for impl, ch in channels.items():
            stub = checkout_pb2_grpc.CheckoutServiceStub(ch)
            ref = common_pb2.MemberRef(member_id=members[impl])
            try:
                answers[impl] = stub.Quote(checkout_pb2.QuoteRequest(
                    programme_id=programme.programme_id, member=ref, lines=lines, requested_points=requested))
            except grpc.RpcError as err:
                answers[impl] = (err.code(), err.details())
        python, cython = answers["python"], answers["cython"]
        if isinstance(python, tuple):
            assert python == cython  # the same refusal (an amount past int64, say)
            continue
        python.pricing.member_id = cython.pricing.member_id = ""
        assert python == cython
        priced += 1
    assert priced >= 30  # most baskets are priced, not refused

    # A hold draws from the lots that expire first and a capture earns on the money part: same on both.
    done = {}
    for impl, ch in channels.items():
        stub = checkout_pb2_grpc.CheckoutServiceStub(ch)
        order = stub.Checkout(checkout_pb2.CheckoutRequest(
            request_id=new_id(), programme_id=programme.programme_id, order_id=new_id(),
            member=common_pb2.MemberRef(member_id=members[impl]), lines=basket(random.Random(7)),
            requested_points=1_100)).order
        captured = stub.Capture(checkout_pb2.CaptureRequest(request_id=new_id(), programme_id=programme.programme_id,
                                                            order_id=order.order_id, points=900))
        balance = member_pb2_grpc.MemberServiceStub(ch).GetBalance(member_pb2.GetBalanceRequest(
            programme_id=programme.programme_id, member_id=members[impl])).balance
        done[impl] = (order.hold.points, captured.spent_points, captured.earned_points,
                      [b.points for b in balance.burn_outs], balance.active_points, balance.burning_points)
    assert done["python"] == done["cython"]
    assert done["cython"][0] == 1_100 and done["cython"][1] == 900
