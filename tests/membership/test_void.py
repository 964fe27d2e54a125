"""Voiding a paid order (issue 11, seeds 001 and 002): it stops counting towards totals, the
accumulative discount and levels; points stay as they are; idempotent; its own right; in history."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from loyalty.v1 import checkout_pb2, checkout_pb2_grpc, membership_pb2, programme_pb2
from tests.grpc.conftest import Rows, new_id, refusal
from tests.membership.conftest import Members
from tests.membership.test_rules_meet import complete, refund

SEVEN_FROM_50K = [programme_pb2.DiscountRange(min_purchases_minor=50_000, discount_bps=700)]


@pytest.fixture
def rows(database_url: str) -> Rows:
    return Rows(database_url)


def void_request(programme_id: str, order_id: str, request_id: str | None = None) -> checkout_pb2.VoidOrderRequest:
    return checkout_pb2.VoidOrderRequest(request_id=request_id or new_id(), programme_id=programme_id,
                                         order_id=order_id, comment="deleted in the shop")


def void(api: Members, programme_id: str, order_id: str, request_id: str | None = None) -> checkout_pb2.VoidOrderResponse:
    return api.checkout.VoidOrder(void_request(programme_id, order_id, request_id))


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return refusal(err.value)


def test_a_voided_order_stops_counting_and_its_points_stay(api: Members) -> None:
    p = api.programme(default_cashback_bps=1_000, discount_ranges=SEVEN_FROM_50K)
    api.level(p.programme_id, "Bronze", 1)
    api.level(p.programme_id, "Silver", 2, spend_needed_minor=100_000)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 100)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 20_000)])
    big = api.buy(p.programme_id, m.member_id, [("bar", 1, 40_000)], points=100)
    card = api.member(p.programme_id, m.member_id)
    assert (card.purchases_total_minor, card.accumulative_discount_bps, card.next_level_spend_needed_minor) == (
        60_000, 700, 40_000)
    before = api.balance(p.programme_id, m.member_id)

    done = void(api, p.programme_id, big)
    assert (done.order.state, done.uncounted_minor) == (checkout_pb2.ORDER_STATE_VOIDED, 40_000)
    card = api.member(p.programme_id, m.member_id)
    # 20 000 is below the 50 000 that earned 7 %: the rate goes with the order; the level's spend too.
    assert (card.purchases_total_minor, card.accumulative_discount_bps, card.next_level_spend_needed_minor) == (
        20_000, 0, 80_000)
    after = api.balance(p.programme_id, m.member_id)
    assert (after.active_points, after.earned_total_points, after.spent_total_points) == (
        before.active_points, before.earned_total_points, before.spent_total_points)
    got = api.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=p.programme_id, order_id=big)).order
    assert got.state == checkout_pb2.ORDER_STATE_VOIDED
    events = api.history(p.programme_id, m.member_id, membership_pb2.HISTORY_TAB_ORDERS).events
    assert [(e.kind, e.comment) for e in events][:2] == [("order_voided", "deleted in the shop"),
                                                         ("purchase_uncounted", "")]


def test_a_void_is_idempotent_by_request_id_and_a_second_void_is_refused(api: Members, rows: Rows) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    order = api.buy(p.programme_id, m.member_id, [("bar", 1, 30_000)])
    key = new_id()
    first = void(api, p.programme_id, order, key)
    assert void(api, p.programme_id, order, key) == first
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 0
    counted = rows.count()
    assert refused(lambda: void(api, p.programme_id, order)) == (grpc.StatusCode.FAILED_PRECONDITION, "order_voided")
    assert {t: n - counted[t] for t, n in rows.count().items() if n != counted[t]} == {"idempotency_key": 1}
    voided = [e for e in api.history(p.programme_id, m.member_id).events if e.kind == "order_voided"]
    assert len(voided) == 1


def test_a_completed_order_is_voided_and_a_voided_one_is_never_completed(api: Members) -> None:
    p = api.programme(purchase_counts_when=programme_pb2.PURCHASE_COUNTS_WHEN_COMPLETED)
    m = api.enrol(p.programme_id)
    completed = api.buy(p.programme_id, m.member_id, [("bar", 1, 30_000)])
    complete(api, p.programme_id, completed)
    assert void(api, p.programme_id, completed).uncounted_minor == 30_000
    paid = api.buy(p.programme_id, m.member_id, [("bar", 1, 10_000)])
    # Never completed, so it never counted: nothing to take off.
    assert void(api, p.programme_id, paid).uncounted_minor == 0
    assert refused(lambda: complete(api, p.programme_id, paid)) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                                    "order_voided")
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 0


def test_a_void_after_a_partial_refund_uncounts_what_the_refund_left(api: Members) -> None:
    p = api.programme(default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    order = api.buy(p.programme_id, m.member_id, [("bar", 4, 5_000)])
    taken = refund(api, p.programme_id, order, ("1", 1)).refund
    assert taken.clawback_points == 5
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 15_000
    assert void(api, p.programme_id, order).uncounted_minor == 15_000
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 0
    # The refund's take-back stays; the void moves no points.
    assert api.balance(p.programme_id, m.member_id).active_points == 15


def test_a_refund_after_a_void_is_refused_and_writes_nothing(api: Members, rows: Rows) -> None:
    p = api.programme(default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    order = api.buy(p.programme_id, m.member_id, [("bar", 2, 5_000)])
    void(api, p.programme_id, order)
    counted = rows.count()
    assert refused(lambda: refund(api, p.programme_id, order)) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                                   "order_voided")
    assert {t: n - counted[t] for t, n in rows.count().items() if n != counted[t]} == {"idempotency_key": 1}
    assert api.balance(p.programme_id, m.member_id).active_points == 10


def test_only_a_paid_order_is_voided(api: Members) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    held = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    assert refused(lambda: void(api, p.programme_id, held.order_id)) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                                         "order_not_captured")
    assert refused(lambda: void(api, p.programme_id, "no-such-order")) == (grpc.StatusCode.NOT_FOUND,
                                                                           "order_not_found")


def test_a_void_needs_the_order_void_right(api: Members, channel_with: Callable[..., grpc.Channel]) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    order = api.buy(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    till = checkout_pb2_grpc.CheckoutServiceStub(channel_with("pos", "ecommerce", "programme_admin"))
    with pytest.raises(grpc.RpcError) as err:
        till.VoidOrder(void_request(p.programme_id, order))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    office = checkout_pb2_grpc.CheckoutServiceStub(channel_with("order_void"))
    assert office.VoidOrder(void_request(p.programme_id, order)).order.state == checkout_pb2.ORDER_STATE_VOIDED
