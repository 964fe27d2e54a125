"""A programme made with only a name, a currency and a conversion rate behaves as a retailer expects
(enabled, points may pay the whole order), and a quote says why points cannot pay when they cannot."""

import grpc
import pytest

from loyalty.v1 import checkout_pb2, common_pb2, member_pb2, membership_pb2, membership_pb2_grpc, programme_pb2
from tests.grpc.conftest import basket, new_id, refusal


def create(api, explicit_fields=(), **fields) -> programme_pb2.Programme:
    """CreateProgramme with only ``fields`` set (none of Api.programme's defaults)."""
    fields = {"name": f"bare {new_id()}", "currency_code": "EUR", "point_value_minor": 100, **fields}
    return api.programmes.CreateProgramme(programme_pb2.CreateProgrammeRequest(
        request_id=new_id(), programme=programme_pb2.Programme(**fields),
        explicit_fields={"paths": list(explicit_fields)})).programme


def quote(api, programme_id: str, member_id: str, lines=(("bar", 1, 10_000),), points: int = 50):
    return api.checkout.Quote(checkout_pb2.QuoteRequest(
        programme_id=programme_id, member=common_pb2.MemberRef(member_id=member_id), lines=basket(list(lines)),
        requested_points=points))


def test_a_programme_given_only_name_currency_and_rate_enrols_and_lets_points_pay_the_whole_order(api):
    p = create(api)
    assert (p.enabled, p.order_pay_share_bps, p.default_pay_share_bps) == (True, 10_000, 10_000)
    assert (p.default_cashback_bps, p.hold_ttl_seconds, p.require_confirmation) == (0, 900, False)
    assert p.compatibility == programme_pb2.COMPATIBILITY_POINTS_AFTER_DISCOUNTS
    assert p.negative_balance_policy == programme_pb2.NEGATIVE_BALANCE_POLICY_REFUSE
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 150)
    answer = quote(api, p.programme_id, m.member_id, points=150)
    # 100.00 of goods, a point worth 1.00: the 150 points may pay all 100.
    assert (answer.pricing.points_max, answer.pricing.points_applied) == (100, 100)
    assert answer.points_blocked == checkout_pb2.POINTS_BLOCKED_UNSPECIFIED


def test_explicit_fields_create_a_disabled_programme_or_one_whose_points_pay_nothing(api):
    disabled = create(api, ["enabled"], enabled=False)
    assert disabled.enabled is False
    with pytest.raises(grpc.RpcError) as err:
        api.enrol(disabled.programme_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "programme_disabled")
    earn_only = create(api, ["order_pay_share_bps"], default_cashback_bps=500)
    assert (earn_only.enabled, earn_only.order_pay_share_bps, earn_only.default_pay_share_bps) == (True, 0, 10_000)
    # A field named explicitly with a non-zero value is taken as given, as without the mask.
    shared = create(api, ["default_pay_share_bps"], default_pay_share_bps=2_500)
    assert shared.default_pay_share_bps == 2_500


def test_explicit_fields_may_name_only_the_fields_whose_unset_value_is_not_zero(api, rows):
    before = rows.count()
    with pytest.raises(grpc.RpcError) as err:
        create(api, ["enabled", "default_cashback_bps"])
    assert refusal(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    assert rows.count() == before


def blocked(api, programme: programme_pb2.Programme, points: int = 50, lines=(("bar", 1, 10_000),),
            deactivate_with: grpc.Channel | None = None) -> int:
    """points_blocked of a quote for a new member of ``programme`` holding ``points`` (deactivated
    over ``deactivate_with`` when given); points_max must be 0 then."""
    m = api.enrol(programme.programme_id)
    if points:
        api.accrue(programme.programme_id, m.member_id, points)
    if deactivate_with:
        membership_pb2_grpc.MembershipServiceStub(deactivate_with).ChangeMemberStatus(
            membership_pb2.ChangeMemberStatusRequest(request_id=new_id(), programme_id=programme.programme_id,
                                                     member_id=m.member_id, status=member_pb2.MEMBER_STATUS_DEACTIVATED,
                                                     comment="test"))
    answer = quote(api, programme.programme_id, m.member_id, lines)
    assert answer.pricing.points_max == 0
    return answer.points_blocked


def test_a_deactivated_member(api, channel):
    assert blocked(api, create(api), deactivate_with=channel) == checkout_pb2.POINTS_BLOCKED_MEMBER_DEACTIVATED


def test_a_member_who_has_not_confirmed_the_phone(api):
    assert blocked(api, create(api, require_confirmation=True)) == checkout_pb2.POINTS_BLOCKED_MEMBER_NOT_CONFIRMED


def test_a_member_with_no_points(api):
    assert blocked(api, create(api), points=0) == checkout_pb2.POINTS_BLOCKED_NO_POINTS_AVAILABLE


def test_an_order_pay_share_of_zero(api):
    assert blocked(api, create(api, ["order_pay_share_bps"])) == checkout_pb2.POINTS_BLOCKED_ORDER_PAY_SHARE_ZERO


def test_categories_whose_pay_share_is_zero(api):
    p = create(api, ["default_pay_share_bps"], category_rules=[programme_pb2.CategoryRule(category="tobacco")])
    lines = (("bar", 1, 10_000), ("tobacco", 1, 5_000))
    assert blocked(api, p, lines=lines) == checkout_pb2.POINTS_BLOCKED_CATEGORY_PAY_SHARE_ZERO


def test_a_basket_worth_less_than_one_point(api):
    # A point is worth 1.00; 10 % of a 5.00 basket is 0.50.
    p = create(api, order_pay_share_bps=1_000)
    assert blocked(api, p, lines=(("bar", 1, 500),)) == checkout_pb2.POINTS_BLOCKED_NOTHING_PAYABLE
