"""Level rules without a database: validation, qualification, rising, the review, progress, manual changes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loyalty_core import errors, levels
from loyalty_core.levels import Level, LevelCategoryRule, Purchase
from tests.membership.samples import BRONZE, DAY, GOLD, LADDER, NOW, SILVER, visits


# -- level validation ----------------------------------------------------------------------

def test_category_spend_parts_must_not_add_up_to_more_than_the_total() -> None:
    with pytest.raises(errors.InvalidArgument) as err:
        levels.validate_level(replace(GOLD, category_spend_needed={"bar": 60_000, "tickets": 50_000}))
    assert err.value.code == "category_share_must_not_exceed_total"
    assert levels.validate_level(replace(GOLD, category_spend_needed={"bar": 60_000, "tickets": 40_000}))


@pytest.mark.parametrize("change", [dict(name=""), dict(priority=0), dict(discount_bps=10_001),
                                    dict(spend_needed_minor=-1), dict(privilege="free_lunch"),
                                    dict(category_rules=(LevelCategoryRule("bar", 1), LevelCategoryRule("bar", 2)))])
def test_a_level_that_cannot_work_is_refused(change: dict) -> None:
    with pytest.raises(errors.InvalidArgument):
        levels.validate_level(replace(GOLD, **change))


# -- qualification -------------------------------------------------------------------------

def test_20_visits_in_30_days_lift_a_member_to_the_level_that_needs_them() -> None:
    assert levels.level_after_purchase(LADDER, "bronze", visits(19), NOW) is None
    assert levels.level_after_purchase(LADDER, "bronze", visits(20), NOW) == SILVER


def test_visits_older_than_the_period_do_not_count() -> None:
    old = visits(20, at_us=NOW - 30 * DAY + 19)  # the last one sits exactly on the period's start
    assert levels.visits_within(old, 30, NOW) == 19


def test_a_member_rises_to_the_highest_level_met_and_skips_rungs() -> None:
    bought = visits(20, amount=5_000, category="bar")  # 100 000 in total, all in the bar
    assert levels.level_after_purchase(LADDER, None, bought, NOW) == GOLD


def test_the_category_part_of_a_requirement_must_be_met_too() -> None:
    bought = visits(10, amount=10_000, category="tickets")
    assert not levels.meets(GOLD, bought, NOW)
    assert levels.meets(GOLD, bought + [Purchase(NOW, 30_000, {"bar": 30_000})], NOW)


def test_a_purchase_never_lowers_a_level() -> None:
    assert levels.level_after_purchase(LADDER, "gold", [], NOW) is None


def test_a_missed_period_drops_a_member_one_level() -> None:
    assigned = NOW - 31 * DAY
    assert levels.level_after_review(LADDER, "gold", assigned, [], NOW) == SILVER
    assert levels.level_after_review(LADDER, "silver", assigned, visits(20), NOW) is None
    assert levels.level_after_review(LADDER, "silver", assigned, visits(19), NOW) == BRONZE
    assert levels.level_after_review(LADDER, "bronze", assigned, [], NOW) is None


def test_a_level_is_judged_only_after_a_whole_period_and_once_per_as_of() -> None:
    assert levels.level_after_review(LADDER, "gold", NOW - 29 * DAY, [], NOW) is None
    assert levels.level_after_review(LADDER, "gold", NOW, [], NOW) is None


def test_progress_shows_the_next_level_and_the_spend_still_needed() -> None:
    got = levels.progress(LADDER, "silver", visits(3, amount=10_000), NOW)
    assert (got.next_level, got.next_level_spend_needed_minor) == (GOLD, 70_000)
    assert levels.progress(LADDER, "gold", [], NOW) == levels.LevelProgress(None, 0)


def test_group_levels_are_only_open_to_their_group() -> None:
    staff = Level("staff", "p", "Staff", 4, customer_group="staff")
    assert [lv.level_id for lv in levels.ladder([staff, *LADDER], "")] == ["bronze", "silver", "gold"]
    assert levels.ladder([staff, *LADDER], "staff")[-1] == staff


def test_a_manual_level_may_not_be_below_what_the_purchases_qualify_for() -> None:
    bought = visits(20, amount=10_000)  # Silver's 20 visits; Gold lacks its bar spend
    with pytest.raises(errors.FailedPrecondition) as err:
        levels.check_manual_level(LADDER, "bronze", bought, NOW)
    assert (err.value.code, err.value.details["qualified_level_id"]) == ("level_below_member_spend", "silver")
    assert levels.check_manual_level(LADDER, "silver", bought, NOW) == SILVER
    assert levels.check_manual_level(LADDER, "gold", bought, NOW) == GOLD
    with pytest.raises(errors.NotFound):
        levels.check_manual_level(LADDER, "platinum", bought, NOW)
