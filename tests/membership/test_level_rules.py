"""Issue 11, defects 5 and 6, and the level review's as_of: where levels meet the other rules (defect 7,
the manual level, is in test_levels_api.py)."""

from __future__ import annotations

import grpc
from google.protobuf import timestamp_pb2

from loyalty.v1 import checkout_pb2, common_pb2, membership_pb2
from tests.grpc.conftest import basket
from tests.membership.conftest import Members, refused

DAY_S = 86_400


def points_max(api: Members, programme_id: str, member_id: str, category: str, price: int) -> int:
    return api.checkout.Quote(checkout_pb2.QuoteRequest(
        programme_id=programme_id, member=common_pb2.MemberRef(member_id=member_id),
        lines=basket([(category, 1, price)]), requested_points=1)).pricing.points_max


def test_defect_5_a_level_rule_without_a_pay_share_takes_the_levels_share(api: Members) -> None:
    # Seed 003: each level sets what points may pay per category. The programme lets points pay 10%
    # of tickets; the level lets them pay 50% of everything, except bar, which it sets to 30%.
    p = api.programme(category_rules=[{"category": "tickets", "cashback_bps": 100, "pay_share_bps": 1_000},
                                      {"category": "bar", "cashback_bps": 100, "pay_share_bps": 1_000}])
    api.level(p.programme_id, "Gold", 1, cashback_bps=500, pay_share_bps=5_000, category_rules=[
        membership_pb2.LevelCategoryRule(category="tickets", cashback_bps=700),
        membership_pb2.LevelCategoryRule(category="bar", cashback_bps=700, pay_share_bps=3_000)])
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 1_000)
    # A 100.00 ticket, a point worth 1.00: the level's 50% is 50 points.
    assert points_max(api, p.programme_id, m.member_id, "tickets", 10_000) == 50
    assert points_max(api, p.programme_id, m.member_id, "bar", 10_000) == 30
    # A category with no rule of the level's takes the level's share too.
    assert points_max(api, p.programme_id, m.member_id, "food", 10_000) == 50


def test_defect_5_without_a_level_share_the_programmes_category_rule_applies(api: Members) -> None:
    p = api.programme(category_rules=[{"category": "tickets", "cashback_bps": 100, "pay_share_bps": 1_000}])
    api.level(p.programme_id, "Basic", 1, cashback_bps=500, category_rules=[
        membership_pb2.LevelCategoryRule(category="tickets", cashback_bps=700)])
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 1_000)
    assert points_max(api, p.programme_id, m.member_id, "tickets", 10_000) == 10


def test_defect_6_the_card_shows_spend_per_category_and_visits_still_needed(api: Members) -> None:
    p = api.programme()
    api.level(p.programme_id, "Bronze", 1)
    api.level(p.programme_id, "Regular", 2, visits_needed=3, visit_period_days=30)
    api.level(p.programme_id, "Gold", 3, spend_needed_minor=50_000, spend_period_days=365, visits_needed=3,
              visit_period_days=30, category_spend_needed=[
                  membership_pb2.CategorySpend(category="bar", spend_needed_minor=40_000),
                  membership_pb2.CategorySpend(category="tickets", spend_needed_minor=5_000)])
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("tickets", 1, 30_000)])
    card = api.member(p.programme_id, m.member_id)
    # A visits-only next level: two more visits, no spend.
    assert (card.level_name, card.next_level_name) == ("Bronze", "Regular")
    assert (card.next_level_spend_needed_minor, card.next_level_visits_needed) == (0, 2)
    assert list(card.next_level_category_spend_needed) == []
    api.buy(p.programme_id, m.member_id, [("tickets", 1, 1_000)])
    api.buy(p.programme_id, m.member_id, [("tickets", 1, 1_000)])
    card = api.member(p.programme_id, m.member_id)
    assert (card.level_name, card.next_level_name, card.next_level_visits_needed) == ("Regular", "Gold", 0)
    # 32,000 spent, all on tickets: bar still needs 40,000, which is more than the 18,000 the total
    # still lacks, so 40,000 is the spend still needed.
    assert card.next_level_spend_needed_minor == 40_000
    assert [(c.category, c.spend_needed_minor) for c in card.next_level_category_spend_needed] == [("bar", 40_000)]


def test_a_level_review_as_of_a_later_time_is_refused_and_drops_nobody(api: Members, clock) -> None:
    p = api.programme()
    api.level(p.programme_id, "Bronze", 1)
    api.level(p.programme_id, "Silver", 2, spend_needed_minor=10_000, spend_period_days=30)
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 10_000)])
    later = timestamp_pb2.Timestamp(seconds=clock.now_us() // 10**6 + 400 * DAY_S)
    code, reason = refused(lambda: api.membership.RunLevelReview(membership_pb2.RunLevelReviewRequest(
        programme_id=p.programme_id, as_of_time=later)))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    assert api.member(p.programme_id, m.member_id).level_name == "Silver"
    now = timestamp_pb2.Timestamp(seconds=clock.now_us() // 10**6)
    run = api.membership.RunLevelReview(membership_pb2.RunLevelReviewRequest(programme_id=p.programme_id,
                                                                             as_of_time=now))
    assert (run.members_reviewed, run.members_dropped) == (1, 0)
