"""Quote, checkout, capture, cancel over gRPC: the seeds' scenarios and the hold's life."""

import grpc
import pytest

from loyalty.v1 import checkout_pb2, common_pb2, points_pb2, programme_pb2
from tests.grpc.conftest import basket, new_id, refusal

DAY_S = 86_400


def test_a_720_order_paying_7_in_points_leaves_713_to_pay_and_earns_on_713_only(api):
    p = api.programme(default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 7)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 72_000)], points=7)
    assert (order.pricing.points_applied, order.pricing.points_money_minor) == (7, 700)
    assert order.pricing.money_due_minor == 71_300
    assert order.hold.points == 7
    assert api.balance(p.programme_id, m.member_id).held_points == 7
    done = api.capture(p.programme_id, order.order_id)
    assert done.spent_points == 7
    assert done.earned_points == 71  # 10% of 713.00 is 71.30 points of 1.00, rounded down
    assert done.order.state == checkout_pb2.ORDER_STATE_CAPTURED
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.held_points, b.spent_total_points, b.earned_total_points) == (71, 0, 7, 7 + 71)


def test_with_points_capped_at_10_percent_a_100_ticket_takes_at_most_10_in_points(api):
    p = api.programme(order_pay_share_bps=1_000)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 50)
    q = api.checkout.Quote(checkout_pb2.QuoteRequest(
        programme_id=p.programme_id, member=common_pb2.MemberRef(member_id=m.member_id),
        lines=basket([("tickets", 1, 10_000)]), requested_points=50)).pricing
    assert (q.points_max, q.points_applied, q.points_money_minor, q.money_due_minor) == (10, 10, 1_000, 9_000)
    with pytest.raises(grpc.RpcError) as err:
        api.checkout_order(p.programme_id, m.member_id, [("tickets", 1, 10_000)], points=11)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "points_must_not_exceed_payable_limit")
    order = api.checkout_order(p.programme_id, m.member_id, [("tickets", 1, 10_000)], points=10)
    assert (order.pricing.points_applied, order.pricing.money_due_minor) == (10, 9_000)


def test_a_quote_writes_nothing(api, rows):
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 5)
    before = rows.count()
    q = api.checkout.Quote(checkout_pb2.QuoteRequest(
        programme_id=p.programme_id, member=common_pb2.MemberRef(phone=m.phone),
        lines=basket([("bar", 2, 500)]), requested_points=5, currency_code="EUR")).pricing
    assert (q.points_applied, q.money_due_minor, q.earned_points) == (5, 500, 0)
    assert rows.count() == before


def test_a_spend_takes_from_the_lot_that_expires_first_and_expiry_burns_only_what_is_left(api, clock):
    p = api.programme()
    m = api.enrol(p.programme_id)
    late = api.accrue(p.programme_id, m.member_id, 30, expiry={"lifetime_days": 60})
    clock.advance(days=1)
    soon = api.accrue(p.programme_id, m.member_id, 20, expiry={"lifetime_days": 10})
    clock.advance(days=1)
    never = api.accrue(p.programme_id, m.member_id, 5, expiry={"never": True})
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.burning_points) == (55, 20)
    assert [(x.expire_time.ToSeconds() - clock.now_us() // 10**6, x.points) for x in b.burn_outs] == [(9 * DAY_S, 20)]

    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 2_500)], points=25)
    (held,) = api.history(p.programme_id, m.member_id, "HELD")
    assert api.lots_of(held) == {soon.lots[0].lot_id: -20, late.lots[0].lot_id: -5}
    api.capture(p.programme_id, order.order_id)

    clock.advance(days=9)
    run = api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))
    assert (run.lots_expired, run.points_expired) == (0, 0)  # the soon-expiring lot was spent whole
    clock.advance(days=30)
    b = api.balance(p.programme_id, m.member_id)
    assert [x.points for x in b.burn_outs] == [25]  # what is left of the 60-day lot, within 30 days
    clock.advance(days=20)
    run = api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))
    assert (run.lots_expired, run.points_expired) == (1, 25)
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.expired_total_points, b.burning_points) == (5, 25, 0)  # the never-expiring lot
    assert never.lots[0].points == 5



def test_a_capture_may_spend_fewer_points_than_held_and_earns_on_the_money_part(api):
    p = api.programme(default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    first = api.accrue(p.programme_id, m.member_id, 10, expiry={"lifetime_days": 5})
    second = api.accrue(p.programme_id, m.member_id, 10, expiry={"lifetime_days": 50})
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 10_000)], points=15)
    done = api.capture(p.programme_id, order.order_id, points=12)
    assert (done.spent_points, done.order.pricing.points_applied, done.order.pricing.money_due_minor) == (12, 12, 8_800)
    assert done.earned_points == 8  # 10% of 88.00
    # The 3 points not spent go back to the lot they came from last: the one that expires later.
    (released,) = api.history(p.programme_id, m.member_id, "RELEASED")
    assert api.lots_of(released) == {second.lots[0].lot_id: 3}
    assert released.points == 3
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.held_points, b.spent_total_points) == (8 + 8, 0, 12)
    assert first.lots[0].lot_id not in api.lots_of(released)


def test_cancel_gives_the_hold_back_to_the_very_lots_it_came_from(api):
    p = api.programme()
    m = api.enrol(p.programme_id)
    a = api.accrue(p.programme_id, m.member_id, 4, expiry={"lifetime_days": 3})
    b = api.accrue(p.programme_id, m.member_id, 4, expiry={"lifetime_days": 4})
    api.accrue(p.programme_id, m.member_id, 4, expiry={"lifetime_days": 5})
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)], points=6)
    done = api.checkout.Cancel(checkout_pb2.CancelRequest(request_id=new_id(), programme_id=p.programme_id,
                                                          order_id=order.order_id))
    assert done.released_points == 6
    assert done.order.state == checkout_pb2.ORDER_STATE_CANCELLED
    (released,) = api.history(p.programme_id, m.member_id, "RELEASED")
    assert api.lots_of(released) == {a.lots[0].lot_id: 4, b.lots[0].lot_id: 2}
    assert api.balance(p.programme_id, m.member_id).active_points == 12
    with pytest.raises(grpc.RpcError) as err:
        api.capture(p.programme_id, order.order_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "hold_not_open")


def test_a_hold_past_its_lifetime_is_released_by_the_expiry_run_and_a_late_capture_is_refused(api, clock):
    p = api.programme(hold_ttl_seconds=60)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 10)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)], points=10)
    clock.advance(seconds=61)
    with pytest.raises(grpc.RpcError) as err:
        api.capture(p.programme_id, order.order_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "hold_expired")
    run = api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))
    assert (run.holds_released, run.points_released) == (1, 10)
    again = api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))
    assert (again.holds_released, again.points_released) == (0, 0)
    with pytest.raises(grpc.RpcError) as err:
        api.capture(p.programme_id, order.order_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "hold_expired")
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.held_points) == (10, 0)
    got = api.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=p.programme_id, order_id=order.order_id))
    assert got.order.state == checkout_pb2.ORDER_STATE_CANCELLED


def test_earned_points_are_pending_until_the_activation_delay_passes(api, clock):
    p = api.programme(default_cashback_bps=1_000, activation_delay_days=14, point_lifetime_days=365)
    m = api.enrol(p.programme_id)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 50_000)])
    assert api.capture(p.programme_id, order.order_id).earned_points == 50
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.pending_points) == (0, 50)
    with pytest.raises(grpc.RpcError) as err:
        api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)], points=1)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "points_must_not_exceed_balance")
    clock.advance(days=14)
    run = api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))
    assert (run.lots_activated, run.points_activated) == (1, 50)
    assert len(api.history(p.programme_id, m.member_id, "ACTIVATED")) == 1
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.pending_points) == (50, 0)
    assert api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id)).lots_activated == 0


def test_a_not_confirmed_member_earns_but_cannot_pay(api):
    p = api.programme(require_confirmation=True, welcome_bonus_points=20)
    m = api.enrol(p.programme_id)
    q = api.checkout.Quote(checkout_pb2.QuoteRequest(
        programme_id=p.programme_id, member=common_pb2.MemberRef(member_id=m.member_id),
        lines=basket([("bar", 1, 10_000)]), requested_points=20)).pricing
    assert (q.points_max, q.points_applied, q.earned_points) == (0, 0, 10)
    with pytest.raises(grpc.RpcError) as err:
        api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 10_000)], points=5)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "member_not_confirmed")


def test_a_programme_change_reaches_this_servers_quotes_at_once(api):
    """Quotes read the programme from a per-process cache; this process's own change forgets it."""
    p = api.programme(order_pay_share_bps=1_000)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 50)

    def points_max() -> int:
        return api.checkout.Quote(checkout_pb2.QuoteRequest(
            programme_id=p.programme_id, member=common_pb2.MemberRef(member_id=m.member_id),
            lines=basket([("tickets", 1, 10_000)]), requested_points=50)).pricing.points_max

    assert points_max() == 10
    api.programmes.UpdateProgramme(programme_pb2.UpdateProgrammeRequest(
        request_id=new_id(), programme=programme_pb2.Programme(programme_id=p.programme_id, order_pay_share_bps=2_000),
        update_mask={"paths": ["order_pay_share_bps"]}))
    assert points_max() == 20
