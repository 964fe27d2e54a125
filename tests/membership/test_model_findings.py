"""What the executable model (tests/faults/model/) found where the rules meet, beyond issue 11's
list: each finding as its own named test."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from loyalty.v1 import checkout_pb2, member_pb2, membership_pb2, programme_pb2
from tests.grpc.conftest import new_id, refusal
from tests.membership.conftest import Members
from tests.membership.test_scenarios import quote


def test_points_instead_of_discounts_shows_no_discount_rate_where_points_replaced_it(api: Members) -> None:
    # Pricing.discount_bps is "the order discount rate applied": where points pay instead of the
    # discount, none is applied, so the till must not show the member's 10% beside a 0 discount.
    p = api.programme(compatibility=programme_pb2.COMPATIBILITY_POINTS_INSTEAD_OF_DISCOUNTS)
    m = api.enrol(p.programme_id)
    api.membership.SetPersonalDiscount(membership_pb2.SetPersonalDiscountRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, discount_bps=1_000,
        comment="staff"))
    api.accrue(p.programme_id, m.member_id, 5)
    with_points = quote(api, p.programme_id, m.member_id, [("bar", 1, 10_000)], points=5)
    assert (with_points.order_discount_minor, with_points.points_applied) == (0, 5)
    assert (with_points.discount_bps, with_points.discount_source) == (0, checkout_pb2.DISCOUNT_SOURCE_NONE)
    without = quote(api, p.programme_id, m.member_id, [("bar", 1, 10_000)])
    assert (without.order_discount_minor, without.discount_bps, without.discount_source) == (
        1_000, 1_000, checkout_pb2.DISCOUNT_SOURCE_PERSONAL)
    # The order records what the quote said: no rate where the points replaced it.
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 10_000)], points=5)
    captured = api.capture(p.programme_id, order.order_id).order.pricing
    assert (captured.order_discount_minor, captured.discount_bps, captured.discount_source) == (
        0, 0, checkout_pb2.DISCOUNT_SOURCE_NONE)


def test_a_second_offboarding_is_refused_like_every_other_write(api: Members) -> None:
    # docs/ledger.md: every write to an off-boarded member is refused (member_offboarded); a second
    # off-boarding would add a second "offboarded" entry to the member's history.
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.members.OffboardMember(member_pb2.OffboardMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, comment="moved away"))
    with pytest.raises(grpc.RpcError) as err:
        api.members.OffboardMember(member_pb2.OffboardMemberRequest(
            request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, comment="again"))
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "member_offboarded")
    history = api.membership.ListMemberHistory(membership_pb2.ListMemberHistoryRequest(
        programme_id=p.programme_id, member_id=m.member_id)).events
    assert [e.kind for e in history].count("offboarded") == 1


def test_an_erased_member_keeps_the_name_of_a_level_only_their_group_saw(api: Members, channel_with: Any) -> None:
    # Erasure takes the customer group with the personal data but leaves the level (docs/trust.md):
    # the card still names the level the member holds, though their ladder no longer shows it.
    p = api.programme()
    api.level(p.programme_id, "Everyone", 1)
    api.level(p.programme_id, "Club", 2, customer_group="vip")
    m = api.enrol(p.programme_id, customer_group="vip")
    assert api.member(p.programme_id, m.member_id).level_name == "Club"
    Members(channel_with("privacy")).members.EraseMember(member_pb2.EraseMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id))
    erased = api.member(p.programme_id, m.member_id)
    assert (erased.customer_group, erased.level_name) == ("", "Club")
