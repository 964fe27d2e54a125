"""Privileges by status and the discount rules, without a database."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_core import membership
from tests.membership.samples import LADDER, NOW


@dataclass
class Range:
    customer_group: str
    min_purchases_minor: int
    discount_bps: int


@dataclass
class Programme:
    discount_ranges: list[Range] = field(default_factory=list)


@dataclass
class Member:
    status: str = membership.ACTIVE
    customer_group: str = ""
    personal_discount_bps: int = 0
    accumulative_discount_bps: int = 0
    purchases_total_minor: int = 0
    level_id: str | None = None
    offboarded_at: object = None


# -- privileges by status ------------------------------------------------------------------

def test_active_member_pays_earns_counts_and_gets_the_level_discount() -> None:
    got = membership.privileges(Member(level_id="silver"), Programme(), LADDER, NOW)
    assert (got.may_pay_with_points, got.earns, got.purchases_count) == (True, True, True)
    assert (got.discount_bps, got.discount_source, got.order_pay_share_bps) == (1000, "level", 2000)


def test_not_confirmed_member_earns_and_counts_but_cannot_pay_and_gets_no_level_discount() -> None:
    got = membership.privileges(Member(status="not_confirmed", level_id="silver", personal_discount_bps=300),
                                Programme(), LADDER, NOW)
    assert (got.may_pay_with_points, got.earns, got.purchases_count) == (False, True, True)
    assert (got.discount_bps, got.discount_source) == (300, "personal")


def test_not_confirmed_member_earns_at_the_level_cashback() -> None:
    got = membership.privileges(Member(status="not_confirmed", level_id="gold"), Programme(), LADDER, NOW)
    assert (got.cashback_bps, dict(got.category_cashback_bps), dict(got.category_pay_share_bps)) == (
        700, {"bar": 900}, {"bar": 1500})


@pytest.mark.parametrize("member", [Member(status="deactivated", personal_discount_bps=500, level_id="silver"),
                                    Member(offboarded_at="yesterday", personal_discount_bps=500)])
def test_deactivated_or_offboarded_member_gets_nothing(member: Member) -> None:
    assert membership.privileges(member, Programme(), LADDER, NOW) == membership.NOTHING


# -- discounts -----------------------------------------------------------------------------

def test_personal_5_and_accumulative_7_give_7_from_the_accumulative_rule() -> None:
    ranges = [Range("", 0, 0), Range("", 50_000, 700)]
    got = membership.privileges(Member(personal_discount_bps=500, purchases_total_minor=60_000),
                                Programme(ranges), [], NOW)
    assert (got.discount_bps, got.discount_source) == (700, "accumulative")


def test_a_tie_goes_to_the_personal_discount() -> None:
    assert membership.best_discount(700, 700, 700) == (700, "personal")
    assert membership.best_discount(0, 0, 0) == (0, "none")


def test_an_event_discount_competes_for_active_members_only_and_loses_ties() -> None:
    assert membership.best_discount(700, 0, 0, 700) == (700, "personal")
    assert membership.best_discount(0, 0, 700, 701) == (701, "event")
    active = membership.privileges(Member(personal_discount_bps=300), Programme(), LADDER, NOW, 1_200)
    assert (active.discount_bps, active.discount_source) == (1_200, "event")
    not_confirmed = membership.privileges(Member(status="not_confirmed", personal_discount_bps=300), Programme(),
                                          LADDER, NOW, 1_200)
    assert (not_confirmed.discount_bps, not_confirmed.discount_source) == (300, "personal")


def test_group_ranges_apply_to_their_group_only_and_general_ranges_to_all() -> None:
    ranges = [Range("", 10_000, 300), Range("vip", 10_000, 900), Range("staff", 0, 1500)]
    assert membership.accumulative_rate(ranges, "vip", 10_000) == 900
    assert membership.accumulative_rate(ranges, "", 10_000) == 300
    assert membership.accumulative_rate(ranges, "vip", 9_999) == 0


def test_lowered_ranges_never_lower_the_rate_reached() -> None:
    assert membership.reached_rate(700, [Range("", 50_000, 500)], "", 60_000) == 700
    assert membership.reached_rate(700, [Range("", 50_000, 900)], "", 60_000) == 900


@given(st.lists(st.tuples(st.sampled_from(["", "a", "b"]), st.integers(0, 10**9), st.integers(0, 10_000)), max_size=8),
       st.sampled_from(["", "a", "b"]), st.integers(0, 10**9), st.integers(0, 10**9))
def test_accumulative_rate_never_falls_as_purchases_grow(raw, group, total, more) -> None:
    ranges = [Range(*r) for r in raw]
    assert membership.accumulative_rate(ranges, group, total + more) >= membership.accumulative_rate(ranges, group, total)


