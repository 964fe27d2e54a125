"""PostSale over gRPC (issue 17, offline sales): a sale the till made offline, checked out and
captured in one call, paid from the lots as they are now, earned and counted at the sale's time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalty.v1 import checkout_pb2, common_pb2
from tests.grpc.conftest import Api, Rows, basket, new_id, refusal
from tests.membership.conftest import Members

DAY_US = 86_400 * 10**6
BAR = [("bar", 1, 10_000)]


def post_sale_request(programme_id: str, member_id: str, lines: list[tuple[str, int, int]], sale_time_us: int,
                      points: int = 0, order_id: str | None = None, **fields: Any) -> checkout_pb2.PostSaleRequest:
    sale_time = timestamp_pb2.Timestamp()
    sale_time.FromMicroseconds(sale_time_us)
    return checkout_pb2.PostSaleRequest(
        request_id=new_id(), programme_id=programme_id, order_id=order_id or new_id(),
        member=common_pb2.MemberRef(member_id=member_id), lines=basket(lines), requested_points=points,
        sale_time=sale_time, **fields)


def post_sale(api: Members, *args: Any, **fields: Any) -> checkout_pb2.PostSaleResponse:
    return api.checkout.PostSale(post_sale_request(*args, **fields))


def refused(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, dict[str, str], list[str]]:
    """(code, reason, ErrorInfo metadata, BadRequest field paths) of a refused call."""
    with pytest.raises(grpc.RpcError) as err:
        call()
    code, reason = refusal(err.value)
    metadata: dict[str, str] = {}
    fields: list[str] = []
    for detail in rpc_status.from_call(err.value).details:
        info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
        if detail.Unpack(info):
            metadata = dict(info.metadata)
        elif detail.Unpack(bad):
            fields = [v.field for v in bad.field_violations]
    return code, reason, metadata, fields


@pytest.fixture
def api(channel_with: Callable[..., grpc.Channel]) -> Members:
    return Members(channel_with())


def test_a_posted_sale_prices_spends_and_earns_as_checkout_then_capture(api: Members, clock: Any) -> None:
    p = api.programme(default_cashback_bps=1_000, point_lifetime_days=40)
    online, offline = api.enrol(p.programme_id), api.enrol(p.programme_id)
    for m in (online, offline):
        api.accrue(p.programme_id, m.member_id, 50, expiry={"never": True})
    order = api.checkout_order(p.programme_id, online.member_id, BAR, points=20)
    captured = api.capture(p.programme_id, order.order_id)
    sold_at = clock.now_us() - 2 * DAY_US
    posted = post_sale(api, p.programme_id, offline.member_id, BAR, sold_at, points=20)

    assert (posted.spent_points, posted.earned_points) == (captured.spent_points, captured.earned_points) == (20, 8)
    mine, theirs = posted.order.pricing, captured.order.pricing
    assert (mine.points_applied, mine.money_due_minor, mine.earned_points) == (
        theirs.points_applied, theirs.money_due_minor, theirs.earned_points)
    assert posted.order.state == checkout_pb2.ORDER_STATE_CAPTURED
    assert posted.order.create_time.ToMicroseconds() == posted.order.capture_time.ToMicroseconds() == sold_at
    b = api.balance(p.programme_id, offline.member_id)
    assert (b.active_points, b.held_points, b.spent_total_points, b.earned_total_points) == (30 + 8, 0, 20, 58)
    # The earned lot lives 40 days from the sale, not from the posting.
    (earned,) = Api.history(api, p.programme_id, offline.member_id, "EARNED")
    assert [(x.expire_time.ToMicroseconds(), x.points) for x in b.burn_outs] == []  # 38 days left: past the window
    clock.advance(days=9)
    burn = api.balance(p.programme_id, offline.member_id).burn_outs
    assert [(x.expire_time.ToMicroseconds(), x.points) for x in burn] == [(sold_at + 40 * DAY_US, 8)]
    assert earned.points == 8
    got = api.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=p.programme_id,
                                                             order_id=posted.order.order_id)).order
    assert got.capture_time.ToMicroseconds() == sold_at


def test_the_same_request_replays_and_another_request_for_the_order_is_refused(api: Members, clock: Any,
                                                                               rows: Rows) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 10)
    req = post_sale_request(p.programme_id, m.member_id, BAR, clock.now_us() - DAY_US, points=5)
    first = api.checkout.PostSale(req)
    after = rows.count()
    assert api.checkout.PostSale(req) == first
    assert rows.count() == after
    again = checkout_pb2.PostSaleRequest()
    again.CopyFrom(req)
    again.request_id = new_id()
    assert refused(lambda: api.checkout.PostSale(again))[:2] == (grpc.StatusCode.ALREADY_EXISTS,
                                                                 "order_already_checked_out")
    checked_out = api.checkout_order(p.programme_id, m.member_id, BAR)
    assert refused(lambda: post_sale(api, p.programme_id, m.member_id, BAR, clock.now_us(),
                                     order_id=checked_out.order_id))[:2] == (
        grpc.StatusCode.ALREADY_EXISTS, "order_already_checked_out")
    assert api.balance(p.programme_id, m.member_id).spent_total_points == 5


def test_points_are_drawn_from_the_lots_usable_now(api: Members, clock: Any, rows: Rows) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 30, expiry={"lifetime_days": 3})
    sold_at = clock.now_us() + DAY_US
    clock.advance(days=5)
    # The 30 points were there when the till sold; they expired before it posted.
    later = api.accrue(p.programme_id, m.member_id, 12, expiry={"lifetime_days": 50})
    before = rows.count()
    code, reason, metadata, _ = refused(lambda: post_sale(api, p.programme_id, m.member_id, BAR, sold_at, points=20))
    assert (code, reason, metadata["available"]) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                     "points_must_not_exceed_balance", "12")
    assert {k: v for k, v in rows.count().items() if k != "idempotency_key"} == {
        k: v for k, v in before.items() if k != "idempotency_key"}
    done = post_sale(api, p.programme_id, m.member_id, BAR, sold_at, points=12)
    assert done.spent_points == 12
    # Drawn as a checkout draws (a hold), spent at once.
    (held,) = Api.history(api, p.programme_id, m.member_id, "HELD")
    assert api.lots_of(held) == {later.lots[0].lot_id: -12}


def test_purchases_and_levels_count_at_the_sale_time(api: Members, clock: Any) -> None:
    p = api.programme()
    api.level(p.programme_id, "Bronze", 1)
    silver = api.level(p.programme_id, "Silver", 2, visits_needed=2, visit_period_days=10)
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, BAR)
    # Made 20 days ago: a visit outside the 10 days the level looks at.
    post_sale(api, p.programme_id, m.member_id, BAR, clock.now_us() - 20 * DAY_US)
    card = api.member(p.programme_id, m.member_id)
    assert (card.purchases_total_minor, card.level_id != silver.level_id) == (20_000, True)
    # Made 3 days ago: two visits in the last 10 days.
    post_sale(api, p.programme_id, m.member_id, BAR, clock.now_us() - 3 * DAY_US)
    card = api.member(p.programme_id, m.member_id)
    assert (card.purchases_total_minor, card.level_id) == (30_000, silver.level_id)


@pytest.mark.parametrize("shift_us,reason", [
    (1, "sale_time_in_future"), (-31 * DAY_US, "sale_time_too_old"), (None, "field_required"),
])
def test_a_sale_time_out_of_bounds_is_refused_and_writes_nothing(api: Members, clock: Any, rows: Rows,
                                                                 shift_us: int | None, reason: str) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    before = rows.count()
    req = post_sale_request(p.programme_id, m.member_id, BAR, clock.now_us() + (shift_us or 0))
    if shift_us is None:
        req.ClearField("sale_time")
    code, got, _, fields = refused(lambda: api.checkout.PostSale(req))
    assert (code, got, fields) == (grpc.StatusCode.INVALID_ARGUMENT, reason, ["sale_time"])
    assert rows.count() == before


def test_a_sale_whose_points_would_have_expired_is_refused(api: Members, clock: Any, rows: Rows) -> None:
    p = api.programme(point_lifetime_days=7)
    m = api.enrol(p.programme_id)
    before = rows.count()
    assert refused(lambda: post_sale(api, p.programme_id, m.member_id, BAR, clock.now_us() - 8 * DAY_US))[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION, "sale_older_than_point_lifetime")
    assert {k: v for k, v in rows.count().items() if k != "idempotency_key"} == {
        k: v for k, v in before.items() if k != "idempotency_key"}


def test_bad_basket_names_its_field_and_writes_nothing(api: Members, clock: Any, rows: Rows) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    before = rows.count()
    code, reason, _, fields = refused(lambda: post_sale(api, p.programme_id, m.member_id, [], clock.now_us()))
    assert (code, reason, fields) == (grpc.StatusCode.INVALID_ARGUMENT, "basket_must_not_be_empty", ["lines"])
    code, _, _, fields = refused(lambda: post_sale(api, p.programme_id, m.member_id, BAR, clock.now_us(), points=-1))
    assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["requested_points"])
    assert rows.count() == before


@pytest.mark.parametrize("right,allowed", [("pos", True), ("ecommerce", True), ("read_only", False),
                                           ("manual_points", False)])
def test_pos_and_ecommerce_may_post_sales_as_they_may_check_out(api: Members, channel_with: Callable[..., grpc.Channel],
                                                                clock: Any, right: str, allowed: bool) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    till = Members(channel_with(right))
    if allowed:
        assert post_sale(till, p.programme_id, m.member_id, BAR, clock.now_us()).order.state == (
            checkout_pb2.ORDER_STATE_CAPTURED)
    else:
        assert refused(lambda: post_sale(till, p.programme_id, m.member_id, BAR, clock.now_us()))[0] == (
            grpc.StatusCode.PERMISSION_DENIED)
