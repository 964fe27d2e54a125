"""A till holds points and disappears: the expiry run releases the hold once its lifetime is over,
and a late capture of it is refused, clearly."""

from __future__ import annotations

import grpc
import pytest

from loyalty.v1 import checkout_pb2, points_pb2
from tests.faults.helpers import (
    Stubs,
    accrue,
    assert_ledger_clean,
    balance,
    capture_request,
    checkout_request,
    create_programme,
    enrol,
    reason,
)

HOLD_TTL_S = 600


def test_an_abandoned_hold_is_released_by_the_expiry_run_and_a_late_capture_refused(channel, clock, grpc_server):
    stubs = Stubs(channel)
    gauge = grpc_server.registry.get_sample_value
    programme = create_programme(stubs, hold_ttl_seconds=HOLD_TTL_S)
    member = enrol(stubs, programme)
    accrue(stubs, programme, member, 1_000)
    held = stubs.checkout.Checkout(checkout_request(programme, member, "gone-1", 500, 300), timeout=10)
    assert held.order.hold.points == 300
    assert held.order.hold.expire_time.ToMicroseconds() == clock.now_us() + HOLD_TTL_S * 1_000_000
    got = balance(stubs, programme, member)
    assert (got.active_points, got.held_points) == (700, 300)
    assert gauge("loyalty_open_held_points", {"programme_id": programme}) == 300

    # Just before its lifetime ends the hold is still the till's.
    clock.advance(seconds=HOLD_TTL_S - 1)
    run = stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=programme), timeout=10)
    assert run.holds_released == 0
    assert gauge("loyalty_oldest_open_hold_age_seconds", {"programme_id": programme}) == HOLD_TTL_S - 1

    clock.advance(seconds=2)
    assert gauge("loyalty_expiry_lag_seconds") >= 1  # overdue, and the SRE can see it
    run = stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=programme), timeout=10)
    assert (run.holds_released, run.points_released) == (1, 300)
    got = balance(stubs, programme, member)
    assert (got.active_points, got.held_points, got.spent_total_points) == (1_000, 0, 0)
    assert gauge("loyalty_open_holds", {"programme_id": programme}) is None
    # The lag is the whole database's: holds other tests of the session left open are overdue too
    # at this clock, so the run over every programme is what brings it to 0.
    stubs.points.RunExpiry(points_pb2.RunExpiryRequest(), timeout=30)
    assert gauge("loyalty_expiry_lag_seconds") == 0

    # A second run finds nothing left to do.
    again = stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=programme), timeout=10)
    assert (again.holds_released, again.points_released) == (0, 0)

    # The till comes back and captures: refused, naming the rule, and nothing is spent.
    with pytest.raises(grpc.RpcError) as late:
        stubs.checkout.Capture(capture_request(programme, "gone-1"), timeout=10)
    assert late.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(late.value) == "hold_expired"
    assert "hold" in late.value.details()
    order = stubs.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=programme, order_id="gone-1"),
                                    timeout=10).order
    assert order.state == checkout_pb2.ORDER_STATE_CANCELLED
    got = balance(stubs, programme, member)
    assert (got.active_points, got.held_points, got.spent_total_points) == (1_000, 0, 0)

    history = stubs.points.ListPointsHistory(points_pb2.ListPointsHistoryRequest(
        programme_id=programme, member_id=member), timeout=10).movements
    kinds = [m.kind for m in history]
    assert kinds.count(points_pb2.MOVEMENT_KIND_HELD) == 1
    assert kinds.count(points_pb2.MOVEMENT_KIND_RELEASED) == 1
    assert points_pb2.MOVEMENT_KIND_SPENT not in kinds
    assert_ledger_clean(stubs, programme)


def test_a_hold_within_its_lifetime_survives_the_expiry_run(channel, clock):
    stubs = Stubs(channel)
    programme = create_programme(stubs, hold_ttl_seconds=HOLD_TTL_S)
    member = enrol(stubs, programme)
    accrue(stubs, programme, member, 1_000)
    stubs.checkout.Checkout(checkout_request(programme, member, "slow-1", 500, 200), timeout=10)
    clock.advance(seconds=HOLD_TTL_S // 2)
    stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=programme), timeout=10)
    captured = stubs.checkout.Capture(capture_request(programme, "slow-1"), timeout=10)
    assert captured.spent_points == 200
    assert_ledger_clean(stubs, programme)
