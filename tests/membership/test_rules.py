"""Membership rules without a database: privileges by status, discounts, level qualification."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty_core import errors, membership
from loyalty_core.membership import Level, LevelCategoryRule, Purchase

DAY = membership.US_PER_DAY
NOW = 1_000 * DAY


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


BRONZE = Level("bronze", "p", "Bronze", 1)
SILVER = Level("silver", "p", "Silver", 2, visits_needed=20, visit_period_days=30, privilege=membership.DISCOUNT,
               discount_bps=1000, pay_share_bps=2000)
GOLD = Level("gold", "p", "Gold", 3, spend_needed_minor=100_000, category_spend_needed={"bar": 30_000},
             spend_period_days=30, cashback_bps=700, category_rules=(LevelCategoryRule("bar", 900, 1500),))
LADDER = [BRONZE, SILVER, GOLD]


def visits(n: int, *, at_us: int = NOW, amount: int = 100, category: str = "tickets") -> list[Purchase]:
    return [Purchase(at_us - i, amount, {category: amount}) for i in range(n)]


# -- privileges by status ------------------------------------------------------------------

def test_active_member_pays_earns_counts_and_gets_the_level_discount() -> None:
    got = membership.privileges(Member(level_id="silver"), Programme(), LADDER, NOW)
    assert (got.may_pay_with_points, got.earns, got.purchases_count) == (True, True, True)
    assert (got.discount_bps, got.discount_source, got.pay_share_bps) == (1000, "level", 2000)


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


# -- level validation ----------------------------------------------------------------------

def test_category_spend_parts_must_not_add_up_to_more_than_the_total() -> None:
    with pytest.raises(errors.InvalidArgument) as err:
        membership.validate_level(replace(GOLD, category_spend_needed={"bar": 60_000, "tickets": 50_000}))
    assert err.value.code == "category_share_must_not_exceed_total"
    assert membership.validate_level(replace(GOLD, category_spend_needed={"bar": 60_000, "tickets": 40_000}))


@pytest.mark.parametrize("change", [dict(name=""), dict(priority=0), dict(discount_bps=10_001),
                                    dict(spend_needed_minor=-1), dict(privilege="free_lunch"),
                                    dict(category_rules=(LevelCategoryRule("bar", 1), LevelCategoryRule("bar", 2)))])
def test_a_level_that_cannot_work_is_refused(change: dict) -> None:
    with pytest.raises(errors.InvalidArgument):
        membership.validate_level(replace(GOLD, **change))


# -- qualification -------------------------------------------------------------------------

def test_20_visits_in_30_days_lift_a_member_to_the_level_that_needs_them() -> None:
    assert membership.level_after_purchase(LADDER, "bronze", visits(19), NOW) is None
    assert membership.level_after_purchase(LADDER, "bronze", visits(20), NOW) == SILVER


def test_visits_older_than_the_period_do_not_count() -> None:
    old = visits(20, at_us=NOW - 30 * DAY + 19)  # the last one sits exactly on the period's start
    assert membership.visits_within(old, 30, NOW) == 19


def test_a_member_rises_to_the_highest_level_met_and_skips_rungs() -> None:
    bought = visits(20, amount=5_000, category="bar")  # 100 000 in total, all in the bar
    assert membership.level_after_purchase(LADDER, None, bought, NOW) == GOLD


def test_the_category_part_of_a_requirement_must_be_met_too() -> None:
    bought = visits(10, amount=10_000, category="tickets")
    assert not membership.meets(GOLD, bought, NOW)
    assert membership.meets(GOLD, bought + [Purchase(NOW, 30_000, {"bar": 30_000})], NOW)


def test_a_purchase_never_lowers_a_level() -> None:
    assert membership.level_after_purchase(LADDER, "gold", [], NOW) is None


def test_a_missed_period_drops_a_member_one_level() -> None:
    assigned = NOW - 31 * DAY
    assert membership.level_after_review(LADDER, "gold", assigned, [], NOW) == SILVER
    assert membership.level_after_review(LADDER, "silver", assigned, visits(20), NOW) is None
    assert membership.level_after_review(LADDER, "silver", assigned, visits(19), NOW) == BRONZE
    assert membership.level_after_review(LADDER, "bronze", assigned, [], NOW) is None


def test_a_level_is_judged_only_after_a_whole_period_and_once_per_as_of() -> None:
    assert membership.level_after_review(LADDER, "gold", NOW - 29 * DAY, [], NOW) is None
    assert membership.level_after_review(LADDER, "gold", NOW, [], NOW) is None


def test_progress_shows_the_next_level_and_the_spend_still_needed() -> None:
    got = membership.progress(LADDER, "silver", visits(3, amount=10_000), NOW)
    assert (got.next_level, got.next_level_spend_needed_minor) == (GOLD, 70_000)
    assert membership.progress(LADDER, "gold", [], NOW) == membership.LevelProgress(None, 0)


def test_group_levels_are_only_open_to_their_group() -> None:
    staff = Level("staff", "p", "Staff", 4, customer_group="staff")
    assert [lv.level_id for lv in membership.ladder([staff, *LADDER], "")] == ["bronze", "silver", "gold"]
    assert membership.ladder([staff, *LADDER], "staff")[-1] == staff


def test_a_manual_level_may_not_need_less_than_the_member_already_spent() -> None:
    bought = visits(5, amount=10_000)
    with pytest.raises(errors.FailedPrecondition) as err:
        membership.check_manual_level(LADDER, "silver", bought, NOW)
    assert err.value.code == "level_below_member_spend"
    assert membership.check_manual_level(LADDER, "gold", bought, NOW) == GOLD
    with pytest.raises(errors.NotFound):
        membership.check_manual_level(LADDER, "platinum", bought, NOW)
