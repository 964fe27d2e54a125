"""PostSales over gRPC (issue 17, a till's backlog): a stream of offline sales answered in order,
each under PostSale's rules, many sharing a transaction, a refused sale answered in its place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from loyalty.v1 import checkout_pb2
from tests.grpc.conftest import Rows
from tests.grpc.test_post_sale import BAR, DAY_US, post_sale_request
from tests.membership.conftest import Members


@pytest.fixture
def api(channel_with: Callable[..., grpc.Channel]) -> Members:
    return Members(channel_with())


def stream(api: Members, sales: list[checkout_pb2.PostSaleRequest]) -> list[checkout_pb2.PostSalesResponse]:
    return list(api.checkout.PostSales(iter([checkout_pb2.PostSalesRequest(sale=s) for s in sales]), timeout=30))


def outcome(answer: checkout_pb2.PostSalesResponse) -> tuple[str, Any]:
    kind = answer.WhichOneof("outcome")
    if kind == "posted":
        return kind, (answer.posted.spent_points, answer.posted.earned_points)
    return kind, (grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == answer.refusal.code)),
                  answer.refusal.reason)


def test_a_backlog_is_answered_in_order_and_one_members_sales_apply_in_order(api: Members, clock: Any) -> None:
    p = api.programme(default_cashback_bps=1_000)
    first, second = api.enrol(p.programme_id), api.enrol(p.programme_id)
    sold_at = clock.now_us() - DAY_US
    # The first member's second sale pays with the 10 points its first sale earned: it can only
    # pass if the sales apply in the order sent.
    sales = [
        post_sale_request(p.programme_id, first.member_id, [("bar", 1, 10_000)], sold_at),
        post_sale_request(p.programme_id, second.member_id, BAR, sold_at + 1),
        post_sale_request(p.programme_id, first.member_id, [("bar", 1, 10_000)], sold_at + 2, points=10),
    ]
    answers = stream(api, sales)

    assert [(a.index, a.request_id) for a in answers] == [(i, s.request_id) for i, s in enumerate(sales)]
    assert [outcome(a) for a in answers] == [("posted", (0, 10)), ("posted", (0, 10)), ("posted", (10, 9))]
    b = api.balance(p.programme_id, first.member_id)
    assert (b.active_points, b.spent_total_points, b.earned_total_points) == (9, 10, 19)
    assert api.member(p.programme_id, first.member_id).purchases_total_minor == answers[0].posted.order.pricing.net_minor * 2


def test_a_bad_sale_mid_stream_is_answered_in_its_place_and_the_others_post(api: Members, clock: Any,
                                                                            rows: Rows) -> None:
    p = api.programme(default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 5, expiry={"never": True})
    now = clock.now_us()
    too_many = post_sale_request(p.programme_id, m.member_id, BAR, now, points=50)
    in_future = post_sale_request(p.programme_id, m.member_id, BAR, now + DAY_US)
    sales = [post_sale_request(p.programme_id, m.member_id, BAR, now), too_many, in_future,
             post_sale_request(p.programme_id, m.member_id, BAR, now, points=5)]
    answers = stream(api, sales)

    assert [outcome(a) for a in answers] == [
        ("posted", (0, 10)),
        ("refusal", (grpc.StatusCode.FAILED_PRECONDITION, "points_must_not_exceed_balance")),
        ("refusal", (grpc.StatusCode.INVALID_ARGUMENT, "sale_time_in_future")),
        ("posted", (5, 9)),
    ]
    # The refusal carries what PostSale's status carries: the points available, the field at fault.
    assert answers[1].refusal.metadata["available"] == "15"
    assert answers[2].refusal.field == "sale.sale_time"
    # The refused sales left no order.
    for refused in (too_many, in_future):
        with pytest.raises(grpc.RpcError) as err:
            api.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=p.programme_id,
                                                               order_id=refused.order_id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_a_replayed_stream_gives_the_same_answers_and_one_effect(api: Members, clock: Any, rows: Rows) -> None:
    p = api.programme(default_cashback_bps=1_000)
    members = [api.enrol(p.programme_id) for _ in range(3)]
    for m in members:
        api.accrue(p.programme_id, m.member_id, 20, expiry={"never": True})
    now = clock.now_us()
    sales = [post_sale_request(p.programme_id, m.member_id, BAR, now - k, points=15)
             for k in range(2) for m in members]
    first = stream(api, sales)
    written = rows.count()
    balances = [api.balance(p.programme_id, m.member_id) for m in members]

    again = stream(api, sales)

    assert again == first
    # Each member's second sale asked for 15 points of the 5 left after the first.
    assert [outcome(a)[0] for a in first] == ["posted"] * 3 + ["refusal"] * 3
    assert rows.count() == written
    assert [api.balance(p.programme_id, m.member_id) for m in members] == balances


def test_a_sale_for_a_programme_the_key_may_not_act_on_is_refused_alone(
        api: Members, channel_with: Callable[..., grpc.Channel], clock: Any) -> None:
    mine, other = api.programme(), api.programme()
    m, stranger = api.enrol(mine.programme_id), api.enrol(other.programme_id)
    till = Members(channel_with("pos", programmes=[mine.programme_id]))
    answers = stream(till, [post_sale_request(other.programme_id, stranger.member_id, BAR, clock.now_us()),
                            post_sale_request(mine.programme_id, m.member_id, BAR, clock.now_us())])

    assert [outcome(a) for a in answers] == [
        ("refusal", (grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")), ("posted", (0, 10))]


def test_a_key_without_a_sale_right_ends_the_stream(channel_with: Callable[..., grpc.Channel], api: Members,
                                                    clock: Any) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    with pytest.raises(grpc.RpcError) as err:
        stream(Members(channel_with("read_only")), [post_sale_request(p.programme_id, m.member_id, BAR,
                                                                      clock.now_us())])
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
