"""Refunds over gRPC: per line, repeated, never beyond the order; take-back, return and the policies."""

import grpc
import pytest

from loyalty.v1 import checkout_pb2, programme_pb2
from tests.grpc.conftest import new_id, refusal


def refund(api, p, order_id, *lines):
    return api.checkout.Refund(checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=p.programme_id, order_id=order_id,
        lines=[checkout_pb2.RefundLine(line_id=i, quantity=q) for i, q in lines]))


def bought(api, p, lines, points=0, accrued=0):
    """A member who bought ``lines`` (paying ``points`` out of ``accrued``), captured."""
    m = api.enrol(p.programme_id)
    if accrued:
        api.accrue(p.programme_id, m.member_id, accrued)
    order = api.checkout_order(p.programme_id, m.member_id, lines, points=points)
    return m, api.capture(p.programme_id, order.order_id)


def test_repeated_partial_refunds_take_back_in_proportion_and_never_more_than_was_earned(api):
    p = api.programme(default_cashback_bps=1_000)
    m, done = bought(api, p, [("bar", 3, 1_000)])
    assert done.earned_points == 3
    takes = [refund(api, p, done.order.order_id, ("1", 1)).refund for _ in range(3)]
    assert [r.clawback_points for r in takes] == [1, 1, 1]
    assert [r.money_minor for r in takes] == [1_000, 1_000, 1_000]
    with pytest.raises(grpc.RpcError) as err:
        refund(api, p, done.order.order_id, ("1", 1))
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "refund_must_not_exceed_captured")
    assert api.balance(p.programme_id, m.member_id).active_points == 0


def test_a_refund_of_7_units_of_3_points_each_rounds_down_until_the_last(api):
    p = api.programme(default_cashback_bps=1_000, point_value_minor=1)
    m, done = bought(api, p, [("bar", 7, 3)])  # 21 minor units earn 2 points
    assert done.earned_points == 2
    got = [refund(api, p, done.order.order_id, ("1", k)).refund.clawback_points for k in (3, 3, 1)]
    assert got == [0, 1, 1]  # floor(2*3/7)=0, floor(2*6/7)-0=1, 2-1=1: never more than earned


def test_a_whole_refund_returns_spent_points_to_their_lots_when_the_programme_says_so(api):
    p = api.programme(default_cashback_bps=1_000, refund_returns_spent_points=True)
    m, done = bought(api, p, [("bar", 1, 5_000), ("tickets", 1, 5_000)], points=20, accrued=20)
    assert (done.spent_points, done.earned_points) == (20, 8)
    r = refund(api, p, done.order.order_id).refund
    assert (r.returned_points, r.clawback_points, r.money_minor) == (20, 8, 8_000)
    (returned,) = api.history(p.programme_id, m.member_id, "REFUND_RETURN")
    (held,) = api.history(p.programme_id, m.member_id, "HELD")
    assert api.lots_of(returned) == {lot: -pts for lot, pts in api.lots_of(held).items()}
    b = api.balance(p.programme_id, m.member_id)
    assert b.active_points == 20
    with pytest.raises(grpc.RpcError) as err:
        refund(api, p, done.order.order_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "refund_must_not_exceed_captured")


def test_the_orders_own_pending_lot_is_taken_back_first(api):
    p = api.programme(default_cashback_bps=1_000, activation_delay_days=7)
    m, done = bought(api, p, [("bar", 1, 10_000)], accrued=50)
    assert done.earned_points == 10
    r = refund(api, p, done.order.order_id, ("1", 1)).refund
    assert r.clawback_points == 10
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.pending_points) == (50, 0)


@pytest.mark.parametrize("policy, status, reason", [
    (programme_pb2.NEGATIVE_BALANCE_POLICY_REFUSE, grpc.StatusCode.FAILED_PRECONDITION, "clawback_exceeds_balance"),
    (programme_pb2.NEGATIVE_BALANCE_POLICY_TAKE_AVAILABLE, None, ""),
    (programme_pb2.NEGATIVE_BALANCE_POLICY_DEBT, None, ""),
])
def test_points_already_spent_follow_the_negative_balance_policy(api, rows, policy, status, reason):
    p = api.programme(default_cashback_bps=1_000, negative_balance_policy=policy, debt_limit_points=100)
    m, done = bought(api, p, [("bar", 1, 10_000)])
    api.accrue(p.programme_id, m.member_id, 3)
    api.redeem(p.programme_id, m.member_id, 11)
    before = rows.count()
    if status is not None:
        with pytest.raises(grpc.RpcError) as err:
            refund(api, p, done.order.order_id)
        assert refusal(err.value) == (status, reason)
        assert {k: v for k, v in rows.count().items() if k != "idempotency_key"} == \
            {k: v for k, v in before.items() if k != "idempotency_key"}
        return
    r = refund(api, p, done.order.order_id).refund
    b = api.balance(p.programme_id, m.member_id)
    assert (r.clawback_points, b.active_points) == (2, 0)
    if policy == programme_pb2.NEGATIVE_BALANCE_POLICY_TAKE_AVAILABLE:
        assert (r.shortfall_points, r.debt_points, b.debt_points) == (8, 0, 0)
        return
    assert (r.shortfall_points, r.debt_points, b.debt_points) == (0, 8, 8)
    # Future earnings repay the debt first.
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 12_000)])
    assert api.capture(p.programme_id, order.order_id).earned_points == 12
    b = api.balance(p.programme_id, m.member_id)
    assert (b.debt_points, b.active_points) == (0, 4)
    assert [x.points for x in api.history(p.programme_id, m.member_id, "DEBT_REPAID")] == [8]


def test_a_debt_beyond_the_limit_is_refused(api):
    p = api.programme(default_cashback_bps=1_000, negative_balance_policy=programme_pb2.NEGATIVE_BALANCE_POLICY_DEBT,
                      debt_limit_points=5)
    m, done = bought(api, p, [("bar", 1, 10_000)])
    api.redeem(p.programme_id, m.member_id, 10)
    with pytest.raises(grpc.RpcError) as err:
        refund(api, p, done.order.order_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "debt_limit_exceeded")


def test_refund_of_an_order_not_captured_or_an_unknown_line_is_refused(api):
    p = api.programme()
    m = api.enrol(p.programme_id)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    with pytest.raises(grpc.RpcError) as err:
        refund(api, p, order.order_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "order_not_captured")
    api.capture(p.programme_id, order.order_id)
    with pytest.raises(grpc.RpcError) as err:
        refund(api, p, order.order_id, ("9", 1))
    assert refusal(err.value) == (grpc.StatusCode.NOT_FOUND, "order_line_not_found")
    with pytest.raises(grpc.RpcError) as err:
        refund(api, p, order.order_id, ("1", 2))
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "refund_must_not_exceed_captured")


def test_an_order_shows_its_lines_hold_and_refunds_and_completes_after_capture(api, clock):
    p = api.programme(default_cashback_bps=1_000)
    m, done = bought(api, p, [("bar", 2, 1_000), ("tickets", 1, 3_000)], points=10, accrued=10)
    first = refund(api, p, done.order.order_id, ("1", 1)).refund
    clock.advance(seconds=1)
    second = refund(api, p, done.order.order_id, ("2", 1)).refund
    got = api.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=p.programme_id,
                                                             order_id=done.order.order_id)).order
    assert [r.refund_id for r in got.refunds] == [first.refund_id, second.refund_id]
    assert [(x.line_id, x.quantity) for x in got.pricing.lines] == [("1", 2), ("2", 1)]
    assert (got.hold.points, got.pricing.points_applied) == (10, 10)
    completed = api.checkout.CompleteOrder(checkout_pb2.CompleteOrderRequest(
        request_id=new_id(), programme_id=p.programme_id, order_id=done.order.order_id)).order
    assert completed.state == checkout_pb2.ORDER_STATE_COMPLETED
    with pytest.raises(grpc.RpcError) as err:
        api.checkout.CompleteOrder(checkout_pb2.CompleteOrderRequest(
            request_id=new_id(), programme_id=p.programme_id, order_id=done.order.order_id))
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "order_not_captured")
