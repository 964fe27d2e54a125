"""Levels (tiers): what each asks for, who qualifies, who rises and who drops, as pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from loyalty_core import errors
from loyalty_core.bounds import MAX_AMOUNT, MAX_VISITS, at_most

US_PER_DAY = 86_400_000_000
BPS = 10_000

CASHBACK = "cashback"
DISCOUNT = "discount"
PRIVILEGE_KINDS = (CASHBACK, DISCOUNT)

# Put a limit on everything: a level's name, its category lists, and the levels of a programme.
LEVEL_NAME_MAX = 200
LEVEL_CATEGORIES_MAX = 100
LEVELS_PER_PROGRAMME_MAX = 50
# A period longer than this is a typo, not a business rule (and keeps day arithmetic in int64).
PERIOD_DAYS_MAX = 36_600


@dataclass(frozen=True, slots=True)
class LevelCategoryRule:
    """A level's privilege for one product category (overrides the programme's rule for it)."""

    category: str
    cashback_bps: int
    # None: the level's pay share applies to this category, or the programme's rule when the level
    # sets none (membership.Privileges.pay_share_for).
    pay_share_bps: int | None = None


@dataclass(frozen=True, slots=True)
class Level:
    """One rung of a programme's ladder: what it takes to reach it and what it gives.

    Requirements (``spend_needed_minor`` within ``spend_period_days``, each category's part within
    the same period, ``visits_needed`` within ``visit_period_days``) are all needed; a zero amount
    needs nothing, a zero period means all time. The privilege is cashback (``cashback_bps`` and
    per-category rules) or an order discount (``discount_bps``); either may change the share points
    may pay (``pay_share_bps``: of the order and of every category without its own rule's share;
    None = the programme's order share and category rules).
    """

    level_id: str
    programme_id: str
    name: str
    priority: int
    customer_group: str = ""
    spend_needed_minor: int = 0
    # category -> spend needed in that category; the parts never add up to more than the total.
    category_spend_needed: Mapping[str, int] = field(default_factory=dict)
    spend_period_days: int = 0
    visits_needed: int = 0
    visit_period_days: int = 0
    privilege: str = CASHBACK
    cashback_bps: int = 0
    category_rules: tuple[LevelCategoryRule, ...] = ()
    discount_bps: int = 0
    pay_share_bps: int | None = None


@dataclass(frozen=True, slots=True)
class Purchase:
    """One counted purchase, as qualification sees it: when it counted, its amount, and by category."""

    at_us: int
    amount_minor: int
    by_category: Mapping[str, int] = field(default_factory=dict)


def _bps(value: int | None, name: str) -> None:
    if value is not None and not 0 <= value <= BPS:
        raise errors.InvalidArgument("value_out_of_range", f"{name} must be 0..{BPS} basis points", field=f"level.{name}")


def _non_negative(value: int, name: str, hi: int) -> None:
    if value < 0:
        raise errors.InvalidArgument("value_out_of_range", f"{name} must be 0..{hi}", field=f"level.{name}")
    at_most(value, hi, f"level.{name}")


def validate_level(level: Level) -> Level:
    """Refuse a level that cannot work; return it unchanged when it can. Fields are named by their
    path in the requests that carry a level (``level.priority``)."""
    if not level.name or len(level.name) > LEVEL_NAME_MAX:
        code = "field_required" if not level.name else "value_too_long"
        raise errors.InvalidArgument(code, f"a level needs a name of 1..{LEVEL_NAME_MAX} characters", field="level.name")
    if not 1 <= level.priority <= LEVELS_PER_PROGRAMME_MAX:
        raise errors.InvalidArgument("value_out_of_range",
                                     f"priority must be 1 (lowest)..{LEVELS_PER_PROGRAMME_MAX}", field="level.priority")
    if level.privilege not in PRIVILEGE_KINDS:
        raise errors.InvalidArgument("field_required", "a level's privilege is cashback or discount", field="level.privilege")
    _non_negative(level.spend_needed_minor, "spend_needed_minor", MAX_AMOUNT)
    _non_negative(level.visits_needed, "visits_needed", MAX_VISITS)
    _non_negative(level.spend_period_days, "spend_period_days", PERIOD_DAYS_MAX)
    _non_negative(level.visit_period_days, "visit_period_days", PERIOD_DAYS_MAX)
    _bps(level.cashback_bps, "cashback_bps")
    _bps(level.discount_bps, "discount_bps")
    _bps(level.pay_share_bps, "pay_share_bps")
    if len(level.category_spend_needed) > LEVEL_CATEGORIES_MAX or len(level.category_rules) > LEVEL_CATEGORIES_MAX:
        raise errors.InvalidArgument("too_many_items", f"at most {LEVEL_CATEGORIES_MAX} categories per list",
                                     field="level.category_rules")
    # The domain keeps them by category, the request as a list: the list is the path.
    for amount in level.category_spend_needed.values():
        _non_negative(amount, "category_spend_needed", MAX_AMOUNT)
    if sum(level.category_spend_needed.values()) > level.spend_needed_minor:
        raise errors.InvalidArgument(
            "category_share_must_not_exceed_total",
            "the spend needed per category must not add up to more than the total spend needed",
            field="level.category_spend_needed",
        )
    seen = set()
    for k, rule in enumerate(level.category_rules):
        if not rule.category or rule.category in seen:
            raise errors.InvalidArgument("value_out_of_range", "each category rule needs its own category",
                                         field=f"level.category_rules[{k}].category")
        seen.add(rule.category)
        _bps(rule.cashback_bps, f"category_rules[{k}].cashback_bps")
        _bps(rule.pay_share_bps, f"category_rules[{k}].pay_share_bps")
    return level


def group_applies(customer_group: str, member_group: str) -> bool:
    """A level or discount range without a group applies to everyone; one with a group only to that group."""
    return customer_group == "" or customer_group == member_group


def longest_period_days(levels: Iterable[Level]) -> int:
    """How far back qualification looks: the longest period of any level (0 = all time)."""
    periods = [p for lv in levels for p in (lv.spend_period_days, lv.visit_period_days)]
    return 0 if not periods or 0 in periods else max(periods)


def ladder(levels: Iterable[Level], customer_group: str) -> list[Level]:
    """The levels open to a member of ``customer_group``, lowest priority first."""
    return sorted((lv for lv in levels if group_applies(lv.customer_group, customer_group)), key=lambda lv: lv.priority)


def _since(now_us: int, period_days: int) -> int:
    """Start of a period ending now; a zero period is all time."""
    return now_us - period_days * US_PER_DAY if period_days else -(2**63)


def spend_within(purchases: Iterable[Purchase], period_days: int, now_us: int, category: str | None = None) -> int:
    """Spend counted in the period ending at ``now_us`` (a purchase exactly at its start is outside)."""
    start = _since(now_us, period_days)
    return sum(
        (p.amount_minor if category is None else p.by_category.get(category, 0))
        for p in purchases if start < p.at_us <= now_us
    )


def visits_within(purchases: Iterable[Purchase], period_days: int, now_us: int) -> int:
    """Visits in the period ending at ``now_us``: each counted purchase is one visit."""
    start = _since(now_us, period_days)
    return sum(1 for p in purchases if start < p.at_us <= now_us)


def meets(level: Level, purchases: Sequence[Purchase], now_us: int) -> bool:
    """Whether the purchases meet every requirement of ``level`` as of ``now_us`` (points play no part)."""
    if spend_within(purchases, level.spend_period_days, now_us) < level.spend_needed_minor:
        return False
    for category, needed in level.category_spend_needed.items():
        if spend_within(purchases, level.spend_period_days, now_us, category) < needed:
            return False
    return visits_within(purchases, level.visit_period_days, now_us) >= level.visits_needed


def _position(rungs: Sequence[Level], level_id: str | None) -> int:
    """Index of the member's level in their ladder; -1 when they have none (or it is not open to them)."""
    return next((i for i, lv in enumerate(rungs) if lv.level_id == level_id), -1)


def level_after_purchase(rungs: Sequence[Level], current_id: str | None, purchases: Sequence[Purchase],
                         now_us: int) -> Level | None:
    """The level to move up to after a purchase: the highest rung whose requirements are met, when it
    is above the current one; None when the member stays where they are (a purchase never lowers a level)."""
    here = _position(rungs, current_id)
    for i in range(len(rungs) - 1, here, -1):
        if meets(rungs[i], purchases, now_us):
            return rungs[i]
    return None


def level_after_review(rungs: Sequence[Level], current_id: str | None, assigned_at_us: int,
                       purchases: Sequence[Purchase], as_of_us: int) -> Level | None:
    """The level one below the current one when the member missed its requirement over the period
    ending at ``as_of_us``; None when they keep it.

    A member is only judged once a whole period has passed since the level was assigned (so a level
    given yesterday is not taken away today), and never at a time at or before the assignment (so
    running the review twice for one ``as_of`` drops a member once). The lowest rung is never lost.
    """
    here = _position(rungs, current_id)
    if here <= 0 or as_of_us <= assigned_at_us:
        return None
    level = rungs[here]
    period_days = max(level.spend_period_days, level.visit_period_days)
    if as_of_us - assigned_at_us < period_days * US_PER_DAY or meets(level, purchases, as_of_us):
        return None
    return rungs[here - 1]


@dataclass(frozen=True, slots=True)
class LevelProgress:
    """What the member card shows about levels: the next rung and what it still needs in its periods."""

    next_level: Level | None
    # The spend still needed: what the total lacks, or what the categories lack together when that
    # is more (spend elsewhere does not fill a category).
    next_level_spend_needed_minor: int
    # category -> spend still needed there, for the categories that still lack some (by name).
    next_level_category_spend_needed: Mapping[str, int] = field(default_factory=dict)
    next_level_visits_needed: int = 0


def progress(rungs: Sequence[Level], current_id: str | None, purchases: Sequence[Purchase],
             now_us: int) -> LevelProgress:
    """The next rung above the member's level and what it still needs: spend in total and per
    category within its spend period, visits within its visit period (all 0 at the top)."""
    here = _position(rungs, current_id)
    if here + 1 >= len(rungs):
        return LevelProgress(None, 0)
    nxt = rungs[here + 1]
    total = max(0, nxt.spend_needed_minor - spend_within(purchases, nxt.spend_period_days, now_us))
    by_category = {}
    for category in sorted(nxt.category_spend_needed):
        lacking = nxt.category_spend_needed[category] - spend_within(purchases, nxt.spend_period_days, now_us, category)
        if lacking > 0:
            by_category[category] = lacking
    visits = max(0, nxt.visits_needed - visits_within(purchases, nxt.visit_period_days, now_us))
    return LevelProgress(nxt, max(total, sum(by_category.values())), by_category, visits)


def check_manual_level(rungs: Sequence[Level], level_id: str, purchases: Sequence[Purchase], now_us: int) -> Level:
    """The level an operator may set by hand: one open to the member, not below the highest rung the
    member's purchases already qualify for (seed 001: no level with a purchase amount below the
    member's). Re-setting that rung, or any above it, is allowed."""
    here = _position(rungs, level_id)
    if here < 0:
        raise errors.NotFound("level_not_found", "no such level is open to this member", field="level_id")
    level = rungs[here]
    qualified = next((i for i in range(len(rungs) - 1, -1, -1) if meets(rungs[i], purchases, now_us)), -1)
    if here < qualified:
        floor = rungs[qualified]
        raise errors.FailedPrecondition(
            "level_below_member_spend",
            f"level {level.name!r} is below {floor.name!r}, which the member's purchases already qualify for; "
            f"choose {floor.name!r} or a higher level",
            level_id=level.level_id, qualified_level_id=floor.level_id, qualified_level_name=floor.name,
        )
    return level
