"""Membership rules: what a member's status, level and discounts allow, and how purchases move them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from loyalty_core import calc
from loyalty_core.levels import (
    CASHBACK, DISCOUNT, US_PER_DAY, Level, Purchase, group_applies, ladder, level_after_purchase, longest_period_days,
    progress,
)
from loyalty_core.model import DiscountRange, Member, MemberCard, Order, Programme
from loyalty_core.store import membership as store
from loyalty_core.store import orders

ACTIVE = "active"
NOT_CONFIRMED = "not_confirmed"
DEACTIVATED = "deactivated"
STATUSES = (ACTIVE, NOT_CONFIRMED, DEACTIVATED)

# Which rule gave the order discount (Pricing.discount_source).
SOURCE_NONE = "none"
SOURCE_PERSONAL = "personal"
SOURCE_ACCUMULATIVE = "accumulative"
SOURCE_LEVEL = "level"
SOURCE_EVENT = "event"

# Who history names for changes nobody asked for (a purchase lifting a level, the review).
SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Privileges:
    """What a member may do in one use case, decided in one place (``privileges``)."""

    # Points may pay for the order.
    may_pay_with_points: bool
    # The order earns points.
    earns: bool
    # The order counts towards purchase totals, visits and levels.
    purchases_count: bool
    # The order discount rate and the rule that gave it (SOURCE_*).
    discount_bps: int
    discount_source: str
    # The level's cashback for categories without their own level rule; None: the programme's rules.
    cashback_bps: int | None = None
    # The level's per-category cashback and pay share, overriding the programme's for those categories.
    category_cashback_bps: Mapping[str, int] = field(default_factory=dict)
    category_pay_share_bps: Mapping[str, int] = field(default_factory=dict)
    # The level's share points may pay, of the order and of each category without its own level
    # rule (seed 003: each level sets what points may pay per category); None: the programme's.
    order_pay_share_bps: int | None = None
    # The level the privileges come from; None when the member has none.
    level_id: str | None = None

    def cashback_for(self, category: str, programme_bps: int) -> int:
        """The cashback rate of ``category``: 0 when nothing is earned, else the level's rule for the
        category, else the level's rate, else the programme's (``programme_bps``)."""
        if self.earns and category in self.category_cashback_bps:
            return self.category_cashback_bps[category]
        return self.cashback_elsewhere(programme_bps)

    def cashback_elsewhere(self, programme_bps: int) -> int:
        """The cashback rate of a category without a level rule of its own: 0 when nothing is
        earned, else the level's rate, else the programme's (``programme_bps``)."""
        if not self.earns:
            return 0
        return programme_bps if self.cashback_bps is None else self.cashback_bps

    def pay_share_for(self, category: str, programme_bps: int) -> int:
        """The share of ``category``'s lines points may pay: the level's rule for the category, else
        the level's share, else the programme's (``programme_bps``), as for cashback."""
        if category in self.category_pay_share_bps:
            return self.category_pay_share_bps[category]
        return self.pay_share_elsewhere(programme_bps)

    def pay_share_elsewhere(self, programme_bps: int) -> int:
        """The pay share of a category without a level rule of its own (and of the order): the
        level's share, else the programme's (``programme_bps``)."""
        return programme_bps if self.order_pay_share_bps is None else self.order_pay_share_bps


NOTHING = Privileges(may_pay_with_points=False, earns=False, purchases_count=False,
                     discount_bps=0, discount_source=SOURCE_NONE)


# ---------------------------------------------------------------------------------------------
# Discounts
# ---------------------------------------------------------------------------------------------

def accumulative_rate(ranges: Iterable[DiscountRange], customer_group: str, purchases_total_minor: int) -> int:
    """The largest rate among the ranges that apply to the group and that the total reaches."""
    return max(
        (r.discount_bps for r in ranges
         if group_applies(r.customer_group, customer_group) and purchases_total_minor >= r.min_purchases_minor),
        default=0,
    )


def reached_rate(kept_bps: int, ranges: Iterable[DiscountRange], customer_group: str, purchases_total_minor: int) -> int:
    """The accumulative rate a member gets now: what the ranges give the total, but never less than
    the rate the member already reached (a change of ranges never lowers it)."""
    return max(kept_bps, accumulative_rate(ranges, customer_group, purchases_total_minor))


@dataclass(frozen=True, slots=True)
class KeptRate:
    """The accumulative rate a member keeps, and the least purchase total of the range that gave it."""

    bps: int
    from_minor: int


def kept_rate(member: Member) -> KeptRate:
    return KeptRate(member.accumulative_discount_bps, member.accumulative_from_minor)


def _range_reached(ranges: Iterable[DiscountRange], customer_group: str, purchases_total_minor: int) -> KeptRate:
    """The largest rate the ranges give the total, with the least total that gives it."""
    best = KeptRate(0, 0)
    for r in ranges:
        if (group_applies(r.customer_group, customer_group) and purchases_total_minor >= r.min_purchases_minor
                and (r.discount_bps, -r.min_purchases_minor) > (best.bps, -best.from_minor)):
            best = KeptRate(r.discount_bps, r.min_purchases_minor)
    return best


def rate_after_purchase(kept: KeptRate, ranges: Iterable[DiscountRange], customer_group: str,
                        purchases_total_minor: int) -> KeptRate:
    """After a purchase (or a recalculation): the rate the ranges give the new total when it is
    higher than the kept one, else the kept one (a change of ranges never lowers it)."""
    reached = _range_reached(ranges, customer_group, purchases_total_minor)
    return reached if reached.bps > kept.bps else kept


def rate_after_uncount(kept: KeptRate, ranges: Iterable[DiscountRange], customer_group: str,
                       purchases_total_minor: int) -> KeptRate:
    """After a refund or a void lowered the total: the kept rate stays while the total still
    reaches the range that gave it (seed 002: "not decreased but stays as is"); below it, the rate
    is what the ranges give the lower total now, never more than the kept one."""
    if purchases_total_minor >= kept.from_minor:
        return kept
    reached = _range_reached(ranges, customer_group, purchases_total_minor)
    return reached if reached.bps < kept.bps else KeptRate(kept.bps, reached.from_minor)


def best_discount(personal_bps: int, accumulative_bps: int, level_bps: int, event_bps: int = 0) -> tuple[int, str]:
    """The largest of the four and which rule gave it. On a tie the personal discount wins (it was
    set on purpose), then the accumulative one, then the level's, then an event's (so a tie never
    uses up a next-order event discount); nothing at all is (0, "none")."""
    rate, source = 0, SOURCE_NONE
    for candidate, name in ((personal_bps, SOURCE_PERSONAL), (accumulative_bps, SOURCE_ACCUMULATIVE),
                            (level_bps, SOURCE_LEVEL), (event_bps, SOURCE_EVENT)):
        if candidate > rate:
            rate, source = candidate, name
    return rate, source


# ---------------------------------------------------------------------------------------------
# Privileges by status
# ---------------------------------------------------------------------------------------------

def privileges(member: Member, programme: Programme, levels: Iterable[Level], now_us: int,
               event_discount_bps: int = 0) -> Privileges:
    """What ``member`` may do now.

    - active: pays with points, earns, counts, gets the best of personal, accumulative, level and
      event discount (``event_discount_bps``, the member's largest usable one, store.event_bonus);
    - not confirmed: earns (at the level's cashback), counts, but points cannot pay and no level or
      event discount applies (personal and accumulative discounts still do: seed 001);
    - deactivated or off-boarded: nothing.

    ``levels`` are the programme's levels; the member's own is found by ``member.level_id``. The
    accumulative rate is the one the member reached (``member.accumulative_discount_bps``), or what
    the programme's ranges give the member's total now, whichever is larger.
    """
    if member.status == DEACTIVATED or member.offboarded_at is not None:
        return NOTHING
    level = next((lv for lv in levels if lv.level_id == member.level_id), None)
    active = member.status == ACTIVE
    level_discount = level.discount_bps if level is not None and active and level.privilege == DISCOUNT else 0
    accumulative = reached_rate(member.accumulative_discount_bps, programme.discount_ranges,
                                member.customer_group, member.purchases_total_minor)
    rate, source = best_discount(member.personal_discount_bps, accumulative, level_discount,
                                 event_discount_bps if active else 0)
    if level is None:
        overrides: dict[str, Any] = {}
    else:
        cashback = level.privilege == CASHBACK
        overrides = dict(
            cashback_bps=level.cashback_bps if cashback else None,
            category_cashback_bps={r.category: r.cashback_bps for r in level.category_rules} if cashback else {},
            category_pay_share_bps={r.category: r.pay_share_bps for r in level.category_rules
                                    if r.pay_share_bps is not None},
            order_pay_share_bps=level.pay_share_bps,
            level_id=level.level_id,
        )
    return Privileges(may_pay_with_points=active, earns=True, purchases_count=True,
                      discount_bps=rate, discount_source=source, **overrides)


# ---------------------------------------------------------------------------------------------
# Purchases: the hooks the ledger's capture, completion, cancel and refund call
# ---------------------------------------------------------------------------------------------

async def recent_purchases(conn: Any, member_id: str, levels: Sequence[Level], now_us: int) -> list[Purchase]:
    """The member's counted purchases that any level's period can see as of ``now_us``."""
    return await store.purchases_since(conn, member_id, _since(levels, now_us))


def _since(levels: Sequence[Level], now_us: int) -> int | None:
    days = longest_period_days(levels)
    return now_us - days * US_PER_DAY if days else None


def amounts_left(order: Order) -> dict[str, int]:
    """Per category, what of the order's total after discounts its refunds left (the same
    pro-rating as the ledger's); every category of the order is there, 0 when all was refunded."""
    refunded: dict[str, int] = {}
    for record in order.refunds:
        for line in record.lines:
            refunded[line.line_id] = refunded.get(line.line_id, 0) + line.quantity
    left: dict[str, int] = {}
    for x in order.pricing.lines:
        kept = x.net_minor - calc.prorate(x.net_minor, 0, refunded.get(x.line_id, 0), x.quantity)
        left[x.category] = left.get(x.category, 0) + kept
    return left


def counts(member: Member, programme: Programme, order: Order, now: int) -> bool:
    """Whether counting ``order`` now adds a purchase: the member's status counts purchases (not
    deactivated, not off-boarded) and refunds left something of it (a wholly refunded order is
    no purchase and no visit)."""
    # Whether purchases count depends on the status only, so no level is needed to decide it.
    return privileges(member, programme, (), now).purchases_count and sum(amounts_left(order).values()) > 0


async def count_purchase(conn: Any, programme: Programme, member: Member, order: Order, now: int,
                         levels: Sequence[Level] | None = None, as_of: int | None = None) -> None:
    """Count a captured (or completed) order: purchase total, accumulative rate, visits and level.

    Only what ``counts`` allows is counted; an order counts once however often this is called. The
    amount is what refunds left of the order's total after discounts (what points paid included:
    points are a way to pay). The member's row lock and the order's ``counted`` flag are the
    caller's. ``levels``, the programme's when the caller read them already, lets the member's
    recent purchases travel with the count (one round trip instead of two). The purchase counts at
    ``now``; the level is judged ``as_of`` (default ``now``; a posted sale's is the posting time, so
    a sale made before purchases already counted is judged with them).
    """
    judged_at = now if as_of is None else as_of
    if not counts(member, programme, order, now):
        return
    by_category = amounts_left(order)
    amount = sum(by_category.values())
    total = member.purchases_total_minor + amount
    rate = rate_after_purchase(kept_rate(member), programme.discount_ranges, member.customer_group, total)
    # Sent with the recent purchases (and the levels, when the caller has not read them): one round
    # trip in the write's pipeline. Purchases read after the count include this one: statements run
    # in order.
    counted = await store.send_count_purchase(
        conn, member.member_id, programme.programme_id, order.order_id, amount, by_category,
        member.accumulative_discount_bps, total, rate.bps, rate.from_minor, now, actor=SYSTEM,
        details={"order_id": order.order_id, "amount_minor": amount, "purchases_total_minor": total})
    if levels is None:
        levels = [s.level for s in await store.levels_of(conn, programme.programme_id)]
    rungs = ladder(levels, member.customer_group)
    if not rungs:
        # No level to reach: whether this count was new changes nothing more, so it is not read
        # (a read would wait for the server in the middle of the write's pipeline).
        return
    purchases_later = await store.send_purchases_since(conn, member.member_id, _since(rungs, judged_at))
    if not await counted.get():
        return
    purchases = await purchases_later.get()
    higher = level_after_purchase(rungs, member.level_id, purchases, judged_at)
    if higher is not None:
        await assign_level(conn, member, higher, judged_at, reason="qualified", actor=SYSTEM)


async def uncount_purchase(conn: Any, programme: Programme, member: Member, counted: Order,
                           left: Mapping[str, int], now: int) -> None:
    """Bring a counted order's part of the totals down to ``left`` (per category; empty for a void):
    ``counted`` is the order as it counts now (``amounts_left`` of it is what it counts for). At 0
    the order stops counting. Points are not touched, and a level is only ever lowered by the review.
    The accumulative rate follows ``rate_after_uncount``. Writes only (no read: no round trip).
    """
    amount = sum(left.values())
    dropped = sum(amounts_left(counted).values()) - amount
    if dropped <= 0:
        return
    total = max(0, member.purchases_total_minor - dropped)
    rate = rate_after_uncount(kept_rate(member), programme.discount_ranges, member.customer_group, total)
    await store.reduce_purchase(conn, member.member_id, counted.order_id, amount, left, now)
    await store.set_totals(conn, member.member_id, total, rate.bps, rate.from_minor)
    if amount == 0:
        await orders.set_counted(conn, member.member_id, programme.programme_id, counted.order_id, False)
    await store.add_event(conn, member.member_id, "orders", "purchase_uncounted" if amount == 0 else "purchase_reduced",
                          now, actor=SYSTEM, details={"order_id": counted.order_id, "amount_minor": amount,
                                                      "dropped_minor": dropped, "purchases_total_minor": total})


async def assign_level(conn: Any, member: Member, level: Level | None, now: int, *, reason: str, actor: str,
                       comment: str = "") -> None:
    """Give the member ``level`` from now, and say so in the member's history."""
    await store.set_level(conn, member.member_id, None if level is None else level.level_id, now)
    await store.add_event(conn, member.member_id, "participation", "level_assigned", now, actor=actor, comment=comment,
                          details={"from": member.level_id or "", "to": "" if level is None else level.level_id,
                                   "level_name": "" if level is None else level.name, "reason": reason})


async def start_on_ladder(conn: Any, member: Member, now: int, *, actor: str) -> Member:
    """A new member starts on the highest level met without any purchase (the lowest level usually
    asks nothing); the member as it is then."""
    rungs = ladder([s.level for s in await store.levels_of(conn, member.programme_id)], member.customer_group)
    first = level_after_purchase(rungs, None, [], now)
    if first is None:
        return member
    await assign_level(conn, member, first, now, reason="enrolled", actor=actor)
    return dataclasses.replace(member, level_id=first.level_id, level_assigned_at=now)


async def member_card(conn: Any, member: Member, now: int) -> MemberCard:
    """The member card's level part: the level's name, the next level and what it still needs."""
    levels = [s.level for s in await store.levels_of(conn, member.programme_id)]
    rungs = ladder(levels, member.customer_group)
    purchases = await recent_purchases(conn, member.member_id, rungs, now) if rungs else ()
    return card_of(member, levels, purchases, now)


def card_of(member: Member, levels: Sequence[Level], purchases: Sequence[Purchase], now: int) -> MemberCard:
    """``member_card`` from the programme's levels and the member's recent purchases, read by the caller.

    The level the member holds is named even where their ladder no longer shows it: an erased member's
    customer group went with their personal data, their level stays (docs/trust.md)."""
    name = next((lv.name for lv in levels if lv.level_id == member.level_id), "")
    rungs = ladder(levels, member.customer_group)
    if not rungs:
        return MemberCard(member, name)
    ahead = progress(rungs, member.level_id, purchases, now)
    return MemberCard(member, name, "" if ahead.next_level is None else ahead.next_level.name,
                      ahead.next_level_spend_needed_minor, dict(ahead.next_level_category_spend_needed),
                      ahead.next_level_visits_needed)
