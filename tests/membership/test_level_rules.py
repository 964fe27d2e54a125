"""Issue 11, defect 5: where levels meet the other rules."""

from __future__ import annotations

from loyalty.v1 import checkout_pb2, common_pb2, membership_pb2
from tests.grpc.conftest import basket
from tests.membership.conftest import Members


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
