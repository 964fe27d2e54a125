"""A sample ladder of levels and purchase makers shared by the rule tests."""

from __future__ import annotations

from loyalty_core import levels
from loyalty_core.levels import Level, LevelCategoryRule, Purchase

DAY = levels.US_PER_DAY
NOW = 1_000 * DAY

BRONZE = Level("bronze", "p", "Bronze", 1)
# The seeds' example: 20 visits in 30 days.
SILVER = Level("silver", "p", "Silver", 2, visits_needed=20, visit_period_days=30, privilege=levels.DISCOUNT,
               discount_bps=1000, pay_share_bps=2000)
GOLD = Level("gold", "p", "Gold", 3, spend_needed_minor=100_000, category_spend_needed={"bar": 30_000},
             spend_period_days=30, cashback_bps=700, category_rules=(LevelCategoryRule("bar", 900, 1500),))
LADDER = [BRONZE, SILVER, GOLD]


def visits(n: int, *, at_us: int = NOW, amount: int = 100, category: str = "tickets") -> list[Purchase]:
    """``n`` purchases of ``amount`` each, one microsecond apart, the newest at ``at_us``."""
    return [Purchase(at_us - i, amount, {category: amount}) for i in range(n)]
