"""A first end-to-end slice: programme, enrol, accrue, quote, checkout, capture, cancel."""

from tests.grpc.conftest import checkout_request, new_id
from loyalty.v1 import checkout_pb2, programme_pb2


def test_the_720_order_paying_7_in_points_earns_on_713(api):
    p = api.programme(default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 7)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 72_000)], points=7)
    assert order.pricing.points_applied == 7
    assert order.pricing.money_due_minor == 71_300
    assert order.hold.points == 7
    assert api.balance(p.programme_id, m.member_id).held_points == 7
    done = api.capture(p.programme_id, order.order_id)
    assert done.spent_points == 7
    assert done.earned_points == 71  # 10% of 713.00 is 71.30, a point is 1.00, rounded down
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.held_points, b.spent_total_points, b.earned_total_points) == (71, 0, 7, 7 + 71)
