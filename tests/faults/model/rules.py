"""The rules of docs/spec.md as plain Python: what every request should answer and do.

No gRPC and no database here, and nothing imported from loyalty_core: this is the second,
independent statement of the rules the server implements (docs/calc.md, docs/ledger.md,
docs/membership.md), written to be read. ``World`` holds one programme, its members and orders;
each of its methods is one request: it raises ``Refused`` (and changes nothing) or changes the
world and returns what the server should answer. ``machine.py`` asks the server the same and
compares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

NEVER = 2**63 - 1
BPS = 10_000
US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S
BURN_WINDOW_US = 30 * US_PER_DAY
# How late a sale may be posted (loyalty_core.service.offline.MAX_SALE_AGE_DAYS).
SALE_MAX_AGE_DAYS = 30

ACTIVE, NOT_CONFIRMED, DEACTIVATED = "active", "not_confirmed", "deactivated"


class Refused(Exception):
    """The request is refused with a gRPC status (its name) and an ErrorInfo reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code, self.reason = code, reason


def refuse(reason: str, code: str = "FAILED_PRECONDITION") -> Refused:
    return Refused(code, reason)


class Value:
    """A frozen value: a copy of the world (taken before each request, see machine.attempt) shares it."""

    def __deepcopy__(self, memo: dict[int, object]) -> Value:
        return self


# -- arithmetic (docs/calc.md) -------------------------------------------------------------------

def largest_remainder(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights``: floors first, the leftover units one each to the
    largest remainders, ties to the lower index. Nothing is created or lost."""
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:total - sum(parts)]:
        parts[i] += 1
    return parts


def prorate(value: int, done: int, more: int, of: int) -> int:
    """The part of ``value`` for ``more`` more of ``of`` units after ``done``: repeated partial
    refunds never add up to more than the whole, and the last unit takes what is left."""
    return value * (done + more) // of - value * done // of


def lifetime_end(start: int, days: int) -> int:
    return NEVER if days == 0 else start + days * US_PER_DAY


# -- a programme ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range(Value):
    """Accumulative discount: members of ``group`` (empty: everyone) whose purchase total reaches
    ``from_minor`` get ``bps``."""

    group: str
    from_minor: int
    bps: int


@dataclass(frozen=True)
class LevelRule(Value):
    """One rung: what it takes within its periods (0 days: all time) and what it gives."""

    name: str
    priority: int
    group: str = ""
    spend: int = 0
    category_spend: tuple[tuple[str, int], ...] = ()
    spend_days: int = 0
    visits: int = 0
    visit_days: int = 0
    privilege: str = "cashback"  # or "discount"
    cashback_bps: int = 0
    # category -> (cashback, pay share or None: the level's pay share, else the programme's)
    categories: tuple[tuple[str, int, int | None], ...] = ()
    discount_bps: int = 0
    pay_share_bps: int | None = None

    def open_to(self, group: str) -> bool:
        return self.group in ("", group)


@dataclass(frozen=True)
class EventType(Value):
    """An event bonus (docs/membership.md "Event bonuses"): points only, living ``lifetime_days``,
    one grant per occurrence and at most one every ``every_days`` days per member."""

    code: str
    points: int
    lifetime_days: int
    every_days: int


@dataclass(frozen=True)
class CustomField(Value):
    """A custom field the programme declares: "integer" (canonical: no leading zero, no fraction)
    or "choice" (one of ``choices``, exactly)."""

    name: str
    type: str
    choices: tuple[str, ...] = ()

    def takes(self, value: str) -> bool:
        """An empty value clears the field."""
        if not value:
            return True
        if self.type == "integer":
            return re.fullmatch(r"-?(0|[1-9][0-9]*)", value) is not None
        return value in self.choices


@dataclass
class Programme:
    point_value: int = 1
    lifetime_days: int = 30
    activation_days: int = 1
    order_share: int = BPS
    default_cashback: int = 1000
    default_share: int = BPS
    # category -> (cashback, pay share); other categories take the defaults.
    categories: dict[str, tuple[int, int]] = field(default_factory=dict)
    discounted_items_earn: bool = True
    points_instead_of_discounts: bool = False
    refund_returns_spent: bool = True
    hold_ttl_s: int = 600
    policy: str = "take_available"  # or "refuse", "debt"
    debt_limit: int = 0
    welcome_points: int = 0
    # Days the welcome bonus lives: None is the programme's lifetime, 0 never.
    welcome_days: int | None = None
    require_confirmation: bool = False
    # Card secrets required: points are then spent only by card and secret, a spend code, or a
    # member id from a trusted channel (docs/trust.md "Who may spend points"), not at a till by id.
    card_secret_required: bool = False
    counts_when: str = "captured"  # or "completed"
    ranges: tuple[Range, ...] = ()
    ends_at: int | None = None
    levels: tuple[LevelRule, ...] = ()
    event_type: EventType | None = None
    custom_fields: tuple[CustomField, ...] = ()
    # Seed 004's redemption rule: certificates pay several orders (else one, the rest forfeited).
    certificates_multiple: bool = False

    def ladder(self, group: str) -> list[LevelRule]:
        return sorted((lv for lv in self.levels if lv.open_to(group)), key=lambda lv: lv.priority)

    def running(self, now: int) -> None:
        """Seed 001: the till's flow and enrolment work only within the programme's window."""
        if self.ends_at is not None and now >= self.ends_at:
            raise refuse("programme_not_active_now")


# -- a member's points ---------------------------------------------------------------------------

@dataclass
class Lot:
    remaining: int
    activates_at: int
    expires_at: int
    # Usable when made (manual, welcome): nothing for the expiry run to activate.
    activation_recorded: bool

    def usable(self, now: int) -> bool:
        return self.remaining > 0 and self.activates_at <= now < self.expires_at

    def live(self, now: int) -> bool:
        return self.remaining > 0 and now < self.expires_at


@dataclass
class Certificate:
    """A bonus certificate (docs/certificates.md): ``remaining`` may still pay, ``held`` an open
    checkout (``held_order``) holds until ``held_until``; ``expires_at`` None: never."""

    value: int
    multiple: bool
    expires_at: int | None
    issued_at: int
    remaining: int
    state: str = "active"  # active, held, used, expired, cancelled
    held: int = 0
    held_order: str = ""
    held_until: int = 0
    # Set from the server's answer to the issue.
    certificate_id: str = ""
    code: str = ""

    def usable(self, now: int) -> bool:
        return self.state == "active" and self.remaining > 0 and (self.expires_at is None or now < self.expires_at)

    def draw_order(self) -> tuple:
        """Earliest expiry first (never last), then the oldest issued."""
        return (self.expires_at is None, self.expires_at or 0, self.issued_at, self.certificate_id)


@dataclass
class Purchase:
    """A counted order as levels see it: when it counted, what it counts for, per category."""

    at: int
    amount: int
    by_category: dict[str, int]

    @property
    def counting(self) -> bool:
        return self.amount > 0


@dataclass
class Member:
    group: str
    status: str
    enrolled_at: int
    member_id: str = ""
    offboarded: bool = False
    # Erased (EraseMember): off-boarded, no customer group, every write refused; amounts stay.
    erased: bool = False
    personal_bps: int = 0
    # The accumulative rate reached (a high-water mark) and the least total of the range that gave it.
    kept_bps: int = 0
    kept_from: int = 0
    purchases_total: int = 0
    purchases: dict[str, Purchase] = field(default_factory=dict)
    level: str | None = None
    level_at: int = 0
    lots: list[Lot] = field(default_factory=list)
    # (time, movement kind, points as ListPointsHistory gives them), oldest first.
    history: list[tuple[int, str, int]] = field(default_factory=list)
    # The member history, oldest first: (time, kind, subject, detail) as ``Member.event`` records
    # them (machine.EVENT_SUBJECTS says which details are the subject and the detail).
    events: list[tuple[int, str, str, str]] = field(default_factory=list)
    debt: int = 0
    earned_total: int = 0
    spent_total: int = 0
    expired_total: int = 0
    # The event occurrences granted, and when the last grant was.
    occurrences: set[str] = field(default_factory=set)
    last_event_at: int | None = None
    # Custom field values by name (an erasure removes them).
    custom: dict[str, str] = field(default_factory=dict)
    certificates: list[Certificate] = field(default_factory=list)

    def move(self, now: int, kind: str, points: int) -> None:
        self.history.append((now, kind, points))

    def event(self, now: int, kind: str, subject: str, detail: object) -> None:
        self.events.append((now, kind, subject, str(detail)))

    def assign_level(self, name: str, now: int, reason: str) -> None:
        self.level, self.level_at = name, now
        self.event(now, "level_assigned", name, reason)

    def fifo(self, now: int, skip: int | None = None) -> list[int]:
        """Usable lots in burn order: earliest expiry, then activation, then creation."""
        usable = [i for i, lot in enumerate(self.lots) if lot.usable(now) and i != skip]
        return sorted(usable, key=lambda i: (self.lots[i].expires_at, self.lots[i].activates_at, i))

    def available(self, now: int) -> int:
        return sum(self.lots[i].remaining for i in self.fifo(now))

    def take(self, amount: int, order: list[int]) -> tuple[list[tuple[int, int]], int]:
        """Take ``amount`` from the lots in ``order``: (taken per lot, what could not be taken)."""
        taken = []
        for i in order:
            if amount == 0:
                break
            part = min(self.lots[i].remaining, amount)
            self.lots[i].remaining -= part
            taken.append((i, part))
            amount -= part
        return taken, amount

    def credit(self, points: int, now: int, activates_at: int, expires_at: int) -> int:
        self.lots.append(Lot(points, activates_at, expires_at, activation_recorded=activates_at <= now))
        return len(self.lots) - 1

    def counted_within(self, days: int, now: int) -> list[Purchase]:
        start = now - days * US_PER_DAY if days else -(2**63)
        return [p for p in self.purchases.values() if p.counting and start < p.at <= now]


# -- pricing (docs/calc.md) ----------------------------------------------------------------------

@dataclass(frozen=True)
class Line(Value):
    line_id: str
    category: str
    quantity: int
    unit_price: int
    line_discount: int = 0


@dataclass(frozen=True)
class Terms(Value):
    """The rates one basket is priced with."""

    discount_bps: int
    discount_source: str
    cashback: dict[str, int]
    share: dict[str, int]
    order_share: int
    point_value: int
    discounted_items_earn: bool
    points_instead_of_discounts: bool


@dataclass(frozen=True)
class LinePrice(Value):
    line_id: str
    gross: int
    line_discount: int
    order_discount: int
    net: int
    points: int
    points_money: int
    money_due: int
    earned: int


@dataclass(frozen=True)
class Priced(Value):
    lines: tuple[LinePrice, ...]
    points_max: int
    points_applied: int
    discount_bps: int
    discount_source: str
    # What presented certificates pay (beside points_applied, the member's points), and each one's
    # part as (certificate id, points) in the order they are drawn.
    certificate_points: int = 0
    certificates: tuple[tuple[str, int], ...] = ()

    def total(self, name: str) -> int:
        return sum(getattr(x, name) for x in self.lines)


def price(lines: list[Line], terms: Terms, available: int, requested: int) -> Priced:
    """Order discount spread over the lines; what points may pay (per-category and order caps,
    the balance); earning on the money part only, rounded down."""
    instead, pv = terms.points_instead_of_discounts, terms.point_value
    gross = [x.quantity * x.unit_price for x in lines]
    after = [g - x.line_discount for g, x in zip(gross, lines)]
    order_discount = largest_remainder(0 if instead else sum(after) * terms.discount_bps // BPS, after)
    net = [a - o for a, o in zip(after, order_discount)]
    caps = [0 if instead and x.line_discount else n * terms.share[x.category] // BPS // pv for x, n in zip(lines, net)]
    points_max = min(available, sum(net) * terms.order_share // BPS // pv, sum(caps))
    applied = min(requested, points_max)
    points = largest_remainder(applied, caps)
    due = [n - p * pv for n, p in zip(net, points)]
    earns = [(d if terms.discounted_items_earn or not x.line_discount else 0) * terms.cashback[x.category]
             for x, d in zip(lines, due)]
    earned = largest_remainder(sum(earns) // (BPS * pv), earns)
    return Priced(
        tuple(LinePrice(x.line_id, g, x.line_discount, o, n, p, p * pv, d, e)
              for x, g, o, n, p, d, e in zip(lines, gross, order_discount, net, points, due, earned)),
        points_max, applied, 0 if instead else terms.discount_bps, "none" if instead else terms.discount_source)


def price_with(lines: list[Line], terms: Terms, available: int, requested: int,
               presented: list[Certificate]) -> Priced:
    """``price`` with the certificates drawn first, earliest expiry first: they and the points asked
    share what points may pay."""
    on_certificates = sum(c.remaining for c in presented)
    total = price(lines, terms, available + on_certificates, requested + on_certificates)
    left, paid = total.points_applied, []
    for c in sorted(presented, key=Certificate.draw_order):
        take = min(c.remaining, left)
        left -= take
        paid.append((c.certificate_id, take))
    from_certificates = sum(p for _, p in paid)
    return replace(total, points_applied=total.points_applied - from_certificates,
                   certificate_points=from_certificates, certificates=tuple(paid))


# -- what a member may do (docs/membership.md "Statuses", "Discounts") ---------------------------

@dataclass(frozen=True)
class Rights:
    pays: bool
    earns: bool
    counts: bool
    discount_bps: int
    discount_source: str
    level: LevelRule | None


NOTHING = Rights(False, False, False, 0, "none", None)


def ranges_give(ranges: tuple[Range, ...], group: str, total: int) -> tuple[int, int]:
    """The largest rate the ranges give the total, with the least total that gives it."""
    best = (0, 0)
    for r in ranges:
        if r.group in ("", group) and total >= r.from_minor and (r.bps, -r.from_minor) > (best[0], -best[1]):
            best = (r.bps, r.from_minor)
    return best


def rights_of(programme: Programme, member: Member) -> Rights:
    """Active: everything; not confirmed: earns and counts, no paying, no level discount;
    deactivated or off-boarded: nothing. The order discount is the largest of personal,
    accumulative (kept or reached now) and the level's; a tie goes to personal, then accumulative."""
    if member.status == DEACTIVATED or member.offboarded:
        return NOTHING
    level = next((lv for lv in programme.levels if lv.name == member.level), None)
    active = member.status == ACTIVE
    level_bps = level.discount_bps if level is not None and active and level.privilege == "discount" else 0
    accumulative = max(member.kept_bps, ranges_give(programme.ranges, member.group, member.purchases_total)[0])
    rate, source = 0, "none"
    for candidate, name in ((member.personal_bps, "personal"), (accumulative, "accumulative"), (level_bps, "level")):
        if candidate > rate:
            rate, source = candidate, name
    return Rights(active, True, True, rate, source, level)


def terms_for(programme: Programme, lines: list[Line], rights: Rights, paying: bool) -> Terms:
    """Per category: the level's rule, else the level's rate (cashback levels; the level's pay share
    for every category its rules leave unset), else the programme's category rule, else its default."""
    level = rights.level
    level_rules = {c: (cb, share) for c, cb, share in level.categories} if level else {}
    cashback, share = {}, {}
    for category in dict.fromkeys(x.category for x in lines):
        own_cashback, own_share = programme.categories.get(category, (programme.default_cashback,
                                                                        programme.default_share))
        if not rights.earns:
            cashback[category] = 0
        elif level is not None and level.privilege == "cashback":
            cashback[category] = level_rules.get(category, (level.cashback_bps, None))[0]
        else:
            cashback[category] = own_cashback
        level_share = level_rules.get(category, (0, None))[1]
        if level_share is None and level is not None:
            level_share = level.pay_share_bps
        share[category] = own_share if level_share is None else level_share
    order_share = level.pay_share_bps if level is not None and level.pay_share_bps is not None \
        else programme.order_share
    return Terms(rights.discount_bps, rights.discount_source, cashback, share, order_share, programme.point_value,
                 programme.discounted_items_earn, programme.points_instead_of_discounts and paying)


def points_blocked(member: Member, rights: Rights, available: int, priced: Priced, terms: Terms) -> str:
    """Why no point can pay for a quoted basket, most fundamental first ("" when some can)."""
    if priced.points_max > 0:
        return ""
    if member.status == DEACTIVATED:
        return "member_deactivated"
    if not rights.pays:
        return "member_not_confirmed"
    if available == 0:
        return "no_points_available"
    if terms.order_share == 0:
        return "order_pay_share_zero"
    return "category_pay_share_zero" if not any(terms.share.values()) else "nothing_payable"


# -- levels (docs/membership.md "Levels") -------------------------------------------------------

def meets(level: LevelRule, member: Member, now: int) -> bool:
    spent = member.counted_within(level.spend_days, now)
    if sum(p.amount for p in spent) < level.spend:
        return False
    if any(sum(p.by_category.get(c, 0) for p in spent) < need for c, need in level.category_spend):
        return False
    return len(member.counted_within(level.visit_days, now)) >= level.visits


def position(rungs: list[LevelRule], name: str | None) -> int:
    return next((i for i, lv in enumerate(rungs) if lv.name == name), -1)


def highest_met(rungs: list[LevelRule], member: Member, now: int) -> int:
    return next((i for i in range(len(rungs) - 1, -1, -1) if meets(rungs[i], member, now)), -1)


@dataclass(frozen=True)
class Card:
    """What the member card shows."""

    status: str
    offboarded: bool
    purchases_total: int
    accumulative_bps: int
    personal_bps: int
    level: str
    next_level: str
    spend_needed: int
    category_needed: tuple[tuple[str, int], ...]
    visits_needed: int


# -- orders --------------------------------------------------------------------------------------

@dataclass
class Hold:
    points: int
    taken: list[tuple[int, int]]  # (lot index, points)
    expires_at: int
    state: str = "open"  # open, captured, released, expired


@dataclass(frozen=True)
class RefundAnswer(Value):
    money: int
    clawback: int
    returned: int
    shortfall: int
    debt: int
    lines: tuple[tuple[str, int], ...]
    at: int
    certificate_returned: int = 0


@dataclass
class Order:
    member: int
    lines: list[Line]
    pricing: Priced
    terms: Terms
    hold: Hold | None
    state: str = "held"  # held, captured, completed, cancelled, voided
    refunded: dict[str, int] = field(default_factory=dict)  # line id -> units refunded
    earned_lot: int | None = None
    counted: bool = False
    spent: int = 0
    # Spent points per lot (the captured part of the hold) and what refunds gave back to each.
    spent_from: list[tuple[int, int]] = field(default_factory=list)
    returned: dict[int, int] = field(default_factory=dict)
    refunds: list[RefundAnswer] = field(default_factory=list)
    # What refunds gave back to each certificate that paid (by certificate id).
    certificates_returned: dict[str, int] = field(default_factory=dict)

    def refund_state(self) -> str:
        """What the card's orders tab says of its refunds: none, partial or whole (every unit)."""
        refunded = sum(self.refunded.values())
        return "none" if refunded == 0 else "whole" if refunded == sum(x.quantity for x in self.lines) else "partial"

    def left_by_category(self) -> dict[str, int]:
        """What of the order's total after discounts its refunds left, per category."""
        left: dict[str, int] = {}
        for x, p in zip(self.lines, self.pricing.lines):
            kept = p.net - prorate(p.net, 0, self.refunded.get(x.line_id, 0), x.quantity)
            left[x.category] = left.get(x.category, 0) + kept
        return left


@dataclass(frozen=True)
class Captured:
    spent: int
    earned: int
    pricing: Priced


@dataclass(frozen=True)
class ExpiryRun:
    holds_released: int
    points_released: int
    lots_expired: int
    points_expired: int
    certificates_expired: int = 0
    certificate_points_expired: int = 0
    certificate_holds_released: int = 0


def certificate_end(now: int, term: tuple[str, int] | None) -> int | None:
    """When a certificate issued at ``now`` for ``term`` stops paying (docs/certificates.md): n days
    later, or n calendar months later on the same day at the same time, the month's last day when
    that month is shorter (31 January + 1 month: the last day of February); None: never."""
    if term is None:
        return None
    unit, n = term
    if unit == "days":
        return now + n * US_PER_DAY
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    issued = epoch + timedelta(microseconds=now)
    months = issued.year * 12 + issued.month - 1 + n
    year, month = divmod(months, 12)
    first_of_next = datetime(year + (month + 1) // 12, (month + 1) % 12 + 1, 1, tzinfo=UTC)
    last_day = (first_of_next - timedelta(days=1)).day
    end = issued.replace(year=year, month=month + 1, day=min(issued.day, last_day))
    return (end - epoch) // timedelta(microseconds=1)


# -- the world: one request per method ---------------------------------------------------------


@dataclass
class World:
    programme: Programme
    members: list[Member] = field(default_factory=list)
    orders: dict[str, Order] = field(default_factory=dict)

    # members ------------------------------------------------------------------------------------

    def enrol(self, group: str, now: int) -> tuple[int, int]:
        """A new member (index) and the welcome bonus given; not confirmed where the programme wants
        confirmation; on the highest level met without purchases."""
        p = self.programme
        p.running(now)
        member = Member(group, NOT_CONFIRMED if p.require_confirmation else ACTIVE, now)
        days = p.lifetime_days if p.welcome_days is None else p.welcome_days
        if p.welcome_points:
            member.lots.append(Lot(p.welcome_points, now, lifetime_end(now, days), activation_recorded=True))
            member.earned_total += p.welcome_points
            member.move(now, "WELCOME", p.welcome_points)
        rungs = p.ladder(group)
        first = highest_met(rungs, member, now)
        if first >= 0:
            member.assign_level(rungs[first].name, now, "enrolled")
        self.members.append(member)
        return len(self.members) - 1, p.welcome_points

    def import_member(self, status: str, lots: list[tuple[int, int | None]], now: int) -> int:
        """A member of a previous system (docs/membership.md "Importing members"), whatever the
        programme's window: the status given, no welcome bonus, on the highest level met without
        purchases unless deactivated (no history entry for it), its opening lots usable at once
        (expiring after ``days``, None never), credited by one movement."""
        member = Member("", status, now)
        rungs = self.programme.ladder("")
        first = highest_met(rungs, member, now) if status != DEACTIVATED else -1
        if first >= 0:
            member.level, member.level_at = rungs[first].name, now
        for points, days in lots:
            member.lots.append(Lot(points, now, NEVER if days is None else now + days * US_PER_DAY,
                                   activation_recorded=True))
        balance = sum(points for points, _ in lots)
        if balance:
            member.earned_total += balance
            member.move(now, "MANUAL_ACCRUAL", balance)
        self.members.append(member)
        return len(self.members) - 1

    def member_for_write(self, index: int) -> Member:
        """Neither erased nor off-boarded (an erased member is told the stronger reason)."""
        member = self.members[index]
        if member.erased:
            raise refuse("member_erased")
        if member.offboarded:
            raise refuse("member_offboarded")
        return member

    def erase(self, index: int, now: int) -> None:
        """Personal data goes (the customer group too), amounts stay; not while checkouts hold the
        member's points (their capture or cancel would write to an erased member)."""
        member = self.members[index]
        if member.erased:
            raise refuse("member_erased")
        if any(o.hold is not None and o.hold.state == "open" for o in self.orders_of(index)):
            raise refuse("member_has_open_holds")
        if any(c.state == "held" for c in member.certificates):
            raise refuse("member_has_open_holds")
        member.erased = member.offboarded = True
        member.group = ""
        member.custom.clear()
        member.event(now, "erased", "", "")

    def change_status(self, index: int, status: str, now: int) -> None:
        """Any status to any other by hand (kept in history when it changes)."""
        member = self.member_for_write(index)
        if status != member.status:
            member.event(now, "status_changed", member.status, status)
            member.status = status

    def set_personal_discount(self, index: int, bps: int, now: int) -> None:
        member = self.member_for_write(index)
        if bps != member.personal_bps:
            member.event(now, "personal_discount_set", str(member.personal_bps), bps)
            member.personal_bps = bps

    def offboard(self, index: int, now: int) -> None:
        """No hold outlives the membership: open holds go back, unpaid orders are cancelled."""
        member = self.member_for_write(index)
        for order in self.orders_of(index):
            if order.state == "held":
                if order.hold is not None and order.hold.state == "open":
                    self.release(member, order.hold, now, "released")
                order.state = "cancelled"
        for c in member.certificates:
            if c.state == "held":
                self.release_certificate(c)
        member.offboarded = True
        member.event(now, "offboarded", "", "")

    def change_phone(self, index: int) -> None:
        """An edit of the member's data: no points move, the new phone is not confirmed."""
        self.member_for_write(index)

    def set_custom_field(self, index: int, name: str, value: str) -> dict[str, str]:
        """A value is checked against its field's type before the member is looked at (a bad one is
        refused even for an erased member); an empty one clears the field. The member's values after."""
        declared = next(f for f in self.programme.custom_fields if f.name == name)
        if not declared.takes(value):
            raise refuse("value_out_of_range", "INVALID_ARGUMENT")
        member = self.member_for_write(index)
        if value:
            member.custom[name] = value
        else:
            member.custom.pop(name, None)
        return dict(member.custom)

    def orders_of(self, index: int) -> list[Order]:
        return [self.orders[o] for o in sorted(self.orders) if self.orders[o].member == index]

    def card(self, index: int, now: int) -> Card:
        member = self.members[index]
        rungs = self.programme.ladder(member.group)
        here = position(rungs, member.level)
        nxt = rungs[here + 1] if here + 1 < len(rungs) else None
        spend = categories = visits = 0
        lacking: tuple[tuple[str, int], ...] = ()
        if nxt is not None:
            spent = member.counted_within(nxt.spend_days, now)
            spend = max(0, nxt.spend - sum(p.amount for p in spent))
            lacking = tuple((c, need - sum(p.by_category.get(c, 0) for p in spent))
                            for c, need in sorted(nxt.category_spend))
            lacking = tuple((c, n) for c, n in lacking if n > 0)
            categories = sum(n for _, n in lacking)
            visits = max(0, nxt.visits - len(member.counted_within(nxt.visit_days, now)))
        return Card(member.status, member.offboarded, member.purchases_total, member.kept_bps, member.personal_bps,
                    member.level or "", nxt.name if nxt else "", max(spend, categories), lacking, visits)

    # points outside orders -----------------------------------------------------------------------

    def accrue(self, index: int, points: int, days: int | None, now: int) -> None:
        """Active at once; lives the programme's lifetime (None), ``days`` days, or for ever (0)."""
        member = self.member_for_write(index)
        if member.status == DEACTIVATED:
            raise refuse("member_deactivated")
        days = self.programme.lifetime_days if days is None else days
        member.lots.append(Lot(points, now, lifetime_end(now, days), activation_recorded=True))
        member.earned_total += points
        member.move(now, "MANUAL_ACCRUAL", points)

    def record_event(self, index: int, occurrence: str, now: int) -> bool:
        """The programme's event type for one occurrence: whether it was granted already (a repeat
        answers so, whatever the member's status now); else a deactivated member is refused, a new
        occurrence within the frequency too, and the bonus is a lot active at once."""
        member = self.member_for_write(index)
        event = self.programme.event_type
        assert event is not None
        if occurrence in member.occurrences:
            return True
        if member.status == DEACTIVATED:
            raise refuse("member_deactivated")
        if member.last_event_at is not None and now < member.last_event_at + event.every_days * US_PER_DAY:
            raise refuse("event_frequency_limit_reached")
        member.occurrences.add(occurrence)
        member.last_event_at = now
        member.lots.append(Lot(event.points, now, lifetime_end(now, event.lifetime_days), activation_recorded=True))
        member.earned_total += event.points
        member.move(now, "EVENT_BONUS", event.points)
        return False

    def redeem(self, index: int, points: int, now: int) -> None:
        member = self.member_for_write(index)
        if member.status != ACTIVE:
            raise refuse("member_deactivated" if member.status == DEACTIVATED else "member_not_confirmed")
        if points > member.available(now):
            raise refuse("points_must_not_exceed_balance")
        member.take(points, member.fifo(now))
        member.spent_total += points
        member.move(now, "SPENT", -points)

    # certificates (docs/certificates.md) ------------------------------------------------------------

    def issue_certificates(self, indexes: list[int], value: int, term: tuple[str, int] | None,
                           now: int) -> list[Certificate]:
        """One certificate to each member, all or none: each in the programme and not deactivated.
        It keeps the programme's redemption rule; it expires ``term`` (("days", n) or ("months", n))
        after now, or (None) never."""
        for index in indexes:
            if self.member_for_write(index).status == DEACTIVATED:
                raise refuse("member_deactivated")
        made = []
        for index in indexes:
            made.append(Certificate(value, self.programme.certificates_multiple, certificate_end(now, term), now,
                                    value))
            self.members[index].certificates.append(made[-1])
        return made

    def cancel_certificates(self, chosen: list[tuple[int, int]]) -> list[Certificate]:
        """Cancel, all or none: what is left is burnt; one an open checkout holds, or one that
        ended, is refused."""
        found = [self.members[owner].certificates[which] for owner, which in chosen]
        for c in found:
            if c.state == "held":
                raise refuse("certificate_held")
            if c.state != "active":
                raise refuse("certificate_not_active")
        for c in found:
            c.remaining, c.state = 0, "cancelled"
        return found

    # the till's flow ----------------------------------------------------------------------------

    def quote(self, index: int, lines: list[Line], requested: int, now: int, sold_at: int | None = None,
              presented: tuple[tuple[int, int], ...] = ()) -> tuple[Priced, Terms, Rights, int]:
        """The basket priced now (a posted sale: in the programme's window when sold, paid from the
        lots usable now). "Points instead of discounts" is chosen by the points (and certificates)
        that pay, not those asked: when none can pay, the discounts apply. ``presented``: the
        certificates shown, as (member, certificate) indexes: each must be the member's and usable,
        and pays only where points may."""
        self.programme.running(now if sold_at is None else sold_at)
        member = self.member_for_write(index)
        shown = []
        for owner, which in presented:
            if owner != index:
                raise refuse("certificate_not_found", "NOT_FOUND")
            if not member.certificates[which].usable(now):
                raise refuse("certificate_not_usable")
            shown.append(member.certificates[which])
        rights = rights_of(self.programme, member)
        available = member.available(now) if rights.pays else 0
        shown = shown if rights.pays else []
        terms = terms_for(self.programme, lines, rights, requested > 0 or bool(shown))
        priced = price_with(lines, terms, available, requested, shown)
        if terms.points_instead_of_discounts and not (priced.points_applied or priced.certificate_points):
            terms = replace(terms, points_instead_of_discounts=False)
            priced = price_with(lines, terms, available, requested, shown)
        return priced, terms, rights, available

    def checkout(self, index: int, order_id: str, lines: list[Line], requested: int, now: int,
                 trusted: bool = True, sold_at: int | None = None,
                 presented: tuple[tuple[int, int], ...] = ()) -> Order:
        """The quote, and the points that pay held from the lots that expire first. Asking more than
        the order may take is refused, most fundamental reason first; so is holding points for a
        member named by id from a till (not ``trusted``) where card secrets are required."""
        if order_id in self.orders:
            raise refuse("order_already_checked_out", "ALREADY_EXISTS")
        priced, terms, rights, available = self.quote(index, lines, requested, now, sold_at, presented)
        member = self.members[index]
        if presented and not rights.pays:
            # Certificates pay only where points may.
            raise refuse("member_deactivated" if member.status == DEACTIVATED else "member_not_confirmed")
        if requested > priced.points_applied:
            if member.status == DEACTIVATED:
                raise refuse("member_deactivated")
            if not rights.pays:
                raise refuse("member_not_confirmed")
            raise refuse("points_must_not_exceed_balance" if requested > available
                         else "points_must_not_exceed_payable_limit")
        if priced.points_applied and not trusted and self.programme.card_secret_required:
            raise refuse("spend_identification_not_allowed")
        hold = None
        if priced.points_applied:
            taken, _ = member.take(priced.points_applied, member.fifo(now))
            hold = Hold(priced.points_applied, taken, now + self.programme.hold_ttl_s * US_PER_S)
            member.move(now, "HELD", priced.points_applied)
        for c in member.certificates:
            paid = dict(priced.certificates).get(c.certificate_id, 0) if c.certificate_id else 0
            if paid:
                c.remaining, c.held, c.state = c.remaining - paid, paid, "held"
                c.held_order, c.held_until = order_id, now + self.programme.hold_ttl_s * US_PER_S
        order = Order(index, lines, priced, terms, hold)
        self.orders[order_id] = order
        return order

    def order_for_write(self, order_id: str) -> tuple[Order, Member]:
        order = self.orders[order_id]
        return order, self.member_for_write(order.member)

    def post_sale(self, index: int, order_id: str, lines: list[Line], requested: int, now: int, sold_at: int,
                  trusted: bool = True) -> Captured:
        """An offline till's sale posted later (docs/ledger.md "Posted sales"): sold within the last
        30 days; checked out and captured at once, the points that pay drawn from the lots usable
        now, the earned lot and the purchase dated when it was sold; a sale whose lot would already
        have expired is refused."""
        if now - sold_at > SALE_MAX_AGE_DAYS * US_PER_DAY:
            raise refuse("sale_time_too_old", "INVALID_ARGUMENT")
        if order_id in self.orders:
            raise refuse("order_already_checked_out", "ALREADY_EXISTS")
        if lifetime_end(sold_at + self.programme.activation_days * US_PER_DAY, self.programme.lifetime_days) <= now:
            raise refuse("sale_older_than_point_lifetime")
        self.checkout(index, order_id, lines, requested, now, trusted, sold_at)
        return self.capture(order_id, None, now, sold_at)

    def capture(self, order_id: str, points: int | None, now: int, sold_at: int | None = None) -> Captured:
        """Payment done: spend the held points (all, or fewer: the rest goes back to the last lots),
        re-price on the checkout's terms with those points, earn at the member's rates now (debt
        repaid first), and count the purchase where the member's status now counts it. A posted
        sale's lot and purchase are dated ``sold_at``."""
        at = now if sold_at is None else sold_at
        order, member = self.order_for_write(order_id)
        hold = order.hold
        if hold is not None and (hold.state == "expired" or (hold.state == "open" and now >= hold.expires_at)):
            raise refuse("hold_expired")
        if order.state != "held":
            raise refuse("hold_not_open")
        held_certificates = self.held_by(order_id)
        paying = [cid for cid, p in order.pricing.certificates if p]
        if sorted(c.certificate_id for c in held_certificates) != sorted(paying) or any(
                now >= c.held_until for c in held_certificates):
            raise refuse("hold_expired")
        held = hold.points if hold else 0
        spend = held if points is None else points
        if spend > held:
            raise refuse("capture_must_not_exceed_hold")
        rights = rights_of(self.programme, member)
        earning = terms_for(self.programme, order.lines, rights, paying=False).cashback
        # The certificates pay what they held, beside the points spent.
        on_certificates = order.pricing.certificate_points
        repriced = price(order.lines, replace(order.terms, cashback=earning), spend + on_certificates,
                         spend + on_certificates)
        order.pricing = replace(repriced, points_applied=spend, certificate_points=on_certificates,
                                certificates=order.pricing.certificates)
        for c in held_certificates:
            # A single-order certificate forfeits what it did not pay; a multiple-order one keeps it.
            if not c.multiple:
                c.remaining = 0
            c.held, c.held_order = 0, ""
            c.state = "active" if c.remaining else "used"
        if hold is not None:
            self.spend_hold(member, order, spend, now)
        earned = order.pricing.total("earned")
        if earned:
            repaid = min(member.debt, earned)
            if repaid:
                member.debt -= repaid
                member.move(now, "DEBT_REPAID", repaid)
            if earned - repaid:
                activates_at = at + self.programme.activation_days * US_PER_DAY
                order.earned_lot = member.credit(earned - repaid, now, activates_at,
                                                 lifetime_end(activates_at, self.programme.lifetime_days))
                member.move(now, "EARNED", earned - repaid)
            member.earned_total += earned
        order.state, order.spent = "captured", spend
        if self.programme.counts_when == "captured":
            self.count(member, order_id, now, at)
        return Captured(spend, earned, order.pricing)

    def spend_hold(self, member: Member, order: Order, spend: int, now: int) -> None:
        """The points spent are the hold's first (earliest expiring) allocations; the rest goes back
        to the lots it came from, last allocations first."""
        hold = order.hold
        assert hold is not None
        left = spend
        for lot, part in hold.taken:
            used = min(part, left)
            if used:
                order.spent_from.append((lot, used))
            left -= used
        unspent = hold.points - spend
        if spend:
            member.move(now, "SPENT", -spend)
            member.spent_total += spend
        if unspent:
            back = unspent
            for lot, part in reversed(hold.taken):
                given = min(part, back)
                member.lots[lot].remaining += given
                back -= given
            member.move(now, "RELEASED", unspent)
        hold.state = "captured" if spend else "released"

    def release(self, member: Member, hold: Hold, now: int, state: str) -> None:
        for lot, points in hold.taken:
            member.lots[lot].remaining += points
        member.move(now, "RELEASED", hold.points)
        hold.state = state

    def cancel(self, order_id: str, now: int) -> int:
        order, member = self.order_for_write(order_id)
        if order.state != "held":
            raise refuse("hold_not_open")
        released = 0
        if order.hold is not None and order.hold.state == "open":
            released = order.hold.points
            self.release(member, order.hold, now, "released")
        for c in self.held_by(order_id):
            self.release_certificate(c)
        order.state = "cancelled"
        return released

    def held_by(self, order_id: str) -> list[Certificate]:
        """The certificates the order's open checkout holds."""
        member = self.members[self.orders[order_id].member]
        return [c for c in member.certificates if c.state == "held" and c.held_order == order_id]

    @staticmethod
    def release_certificate(c: Certificate) -> None:
        c.remaining, c.held, c.held_order, c.held_until, c.state = c.remaining + c.held, 0, "", 0, "active"

    def paid(self, order: Order) -> None:
        if order.state == "voided":
            raise refuse("order_voided")
        if order.state not in ("captured", "completed"):
            raise refuse("order_not_captured")

    def refund(self, order_id: str, asked: list[tuple[str, int]] | None, now: int) -> RefundAnswer:
        """Refund units (or all that is left): spent points on them come back (where the programme
        says so) to the lots they came from, in proportion to what each can still take back; then
        the points earned on them are taken back, the order's own lot first, then FIFO; what is not
        there follows the programme's policy. The purchase then counts only for what is left."""
        order, member = self.order_for_write(order_id)
        self.paid(order)
        units = {x.line_id: x.quantity for x in order.lines}
        if asked is None:
            wanted = [(x.line_id, units[x.line_id] - order.refunded.get(x.line_id, 0)) for x in order.lines]
            wanted = [(line, k) for line, k in wanted if k]
            if not wanted:
                raise refuse("refund_must_not_exceed_captured")
        else:
            for line, k in asked:
                if line not in units:
                    raise refuse("order_line_not_found", "NOT_FOUND")
                if k > units[line] - order.refunded.get(line, 0):
                    raise refuse("refund_must_not_exceed_captured")
            wanted = asked
        by_id = {p.line_id: p for p in order.pricing.lines}

        def share(value: str) -> int:
            return sum(prorate(getattr(by_id[line], value), order.refunded.get(line, 0), k, units[line])
                       for line, k in wanted)

        money, clawback = share("money_due"), share("earned")
        # Points first (up to what the order spent of them and refunds did not give back), then the
        # certificates, the last drawn first, each up to what it paid; an ended certificate takes
        # nothing (its part is forfeited).
        coming_back = share("points") if self.programme.refund_returns_spent else 0
        returned = min(coming_back, order.spent - sum(r.returned for r in order.refunds))
        to_certificates = coming_back - returned
        certificate_returned = 0
        by_cid = {c.certificate_id: c for c in member.certificates}
        for cid, paid in reversed(order.pricing.certificates):
            give = min(paid - order.certificates_returned.get(cid, 0), to_certificates)
            if give <= 0:
                continue
            to_certificates -= give
            c = by_cid[cid]
            if c.state in ("cancelled", "expired") or (c.expires_at is not None and now >= c.expires_at):
                continue
            c.remaining += give
            c.state = "active"
            order.certificates_returned[cid] = order.certificates_returned.get(cid, 0) + give
            certificate_returned += give
        if returned:
            room = [part - order.returned.get(lot, 0) for lot, part in order.spent_from]
            for (lot, _), part in zip(order.spent_from, largest_remainder(returned, room)):
                member.lots[lot].remaining += part
                order.returned[lot] = order.returned.get(lot, 0) + part
            member.move(now, "REFUND_RETURN", returned)
        taken, wanted_back = [], clawback
        own = order.earned_lot
        if wanted_back and own is not None and member.lots[own].live(now):
            got, wanted_back = member.take(wanted_back, [own])
            taken += got
        got, shortfall = member.take(wanted_back, member.fifo(now, skip=own))
        taken += got
        clawed = sum(p for _, p in taken)
        if clawed:
            member.move(now, "REVERSED", -clawed)
        debt = 0
        if shortfall and self.programme.policy == "refuse":
            raise refuse("clawback_exceeds_balance")
        if shortfall and self.programme.policy == "debt":
            if shortfall > max(0, self.programme.debt_limit - member.debt):
                raise refuse("debt_limit_exceeded")
            member.debt += shortfall
            member.move(now, "DEBT_INCURRED", -shortfall)
            debt, shortfall = shortfall, 0
        for line, k in wanted:
            order.refunded[line] = order.refunded.get(line, 0) + k
        if order.counted:
            self.uncount(member, order_id, order.left_by_category(), now)
        order.refunds.append(RefundAnswer(money, clawed, returned, shortfall, debt, tuple(wanted), now,
                                          certificate_returned))
        return order.refunds[-1]

    def complete(self, order_id: str, now: int) -> None:
        """Captured -> completed; where purchases count on completion, what refunds left counts now."""
        order, member = self.order_for_write(order_id)
        if order.state != "captured":
            self.paid(order)
            raise refuse("order_not_captured")
        order.state = "completed"
        if not order.counted and self.programme.counts_when == "completed":
            self.count(member, order_id, now)

    def void(self, order_id: str, now: int) -> int:
        """A paid order stops counting (what refunds left of it); its points stay as they are."""
        order, member = self.order_for_write(order_id)
        self.paid(order)
        order.state = "voided"
        uncounted = sum(order.left_by_category().values()) if order.counted else 0
        if order.counted:
            self.uncount(member, order_id, {}, now)
        member.event(now, "order_voided", order_id, uncounted)
        return uncounted

    # purchases: totals, the kept accumulative rate, visits, levels --------------------------------

    def count(self, member: Member, order_id: str, now: int, sold_at: int | None = None) -> None:
        """Only for a status that counts (not deactivated, not off-boarded), and only what refunds
        left (a wholly refunded order is no purchase and no visit). A higher rate from the ranges
        replaces the kept one; the member rises to the highest level met, never lower. A posted
        sale's purchase is dated ``sold_at``; its level is judged now."""
        at = now if sold_at is None else sold_at
        order = self.orders[order_id]
        left = order.left_by_category()
        if not rights_of(self.programme, member).counts or sum(left.values()) == 0:
            return
        order.counted = True
        member.purchases[order_id] = Purchase(at, sum(left.values()), left)
        member.purchases_total += sum(left.values())
        member.event(at, "purchase_counted", order_id, sum(left.values()))
        reached = ranges_give(self.programme.ranges, member.group, member.purchases_total)
        if reached[0] > member.kept_bps:
            member.kept_bps, member.kept_from = reached
        rungs = self.programme.ladder(member.group)
        here, best = position(rungs, member.level), highest_met(rungs, member, now)
        if best > here:
            member.assign_level(rungs[best].name, now, "qualified")

    def uncount(self, member: Member, order_id: str, left: dict[str, int], now: int) -> None:
        """The order counts for ``left`` now (nothing after a void). Seed 002: the kept rate stays
        while the total still reaches the range that gave it; below, it is what the ranges give the
        lower total, never more than the kept one. Levels are lowered only by the review."""
        purchase = member.purchases[order_id]
        dropped = purchase.amount - sum(left.values())
        if dropped <= 0:
            return
        member.purchases_total = max(0, member.purchases_total - dropped)
        purchase.amount, purchase.by_category = sum(left.values()), dict(left)
        member.event(now, "purchase_reduced" if purchase.amount else "purchase_uncounted", order_id, purchase.amount)
        if purchase.amount == 0:
            self.orders[order_id].counted = False
        if member.purchases_total < member.kept_from:
            bps, from_minor = ranges_give(self.programme.ranges, member.group, member.purchases_total)
            member.kept_bps, member.kept_from = (bps, from_minor) if bps < member.kept_bps \
                else (member.kept_bps, from_minor)

    def recalculate(self) -> int:
        """Every member's total recounted from what counts, the rate raised to what the ranges give."""
        changed = 0
        for member in self.members:
            total = sum(p.amount for p in member.purchases.values() if p.counting)
            kept = (member.kept_bps, member.kept_from)
            reached = ranges_give(self.programme.ranges, member.group, total)
            rate = reached if reached[0] > kept[0] else kept
            if (total, rate) != (member.purchases_total, kept):
                member.purchases_total, (member.kept_bps, member.kept_from) = total, rate
                changed += 1
        return changed

    def review_levels(self, now: int) -> int:
        """Members who missed their level's requirement over its period drop one level, once a whole
        period has passed since it was assigned; never the lowest rung, never a member whose status
        does not count purchases."""
        dropped = 0
        for member in self.members:
            if member.level is None or not rights_of(self.programme, member).counts:
                continue
            rungs = self.programme.ladder(member.group)
            here = position(rungs, member.level)
            if here <= 0 or now <= member.level_at:
                continue
            level = rungs[here]
            if now - member.level_at < max(level.spend_days, level.visit_days) * US_PER_DAY or \
                    meets(level, member, now):
                continue
            member.assign_level(rungs[here - 1].name, now, "period_missed")
            dropped += 1
        return dropped

    def change_level(self, index: int, name: str, now: int) -> None:
        """By hand: a level open to the member, not below the highest one the member's purchases
        already qualify for (seed 001)."""
        member = self.member_for_write(index)
        rungs = self.programme.ladder(member.group)
        here = position(rungs, name)
        if here < 0:
            raise refuse("level_not_found", "NOT_FOUND")
        if here < highest_met(rungs, member, now):
            raise refuse("level_below_member_spend")
        if name != member.level:
            member.assign_level(name, now, "manual")

    # the expiry run -----------------------------------------------------------------------------

    def expire(self, now: int) -> ExpiryRun:
        """Member by member: stale holds released (their orders cancelled), what is left of expired
        lots burnt, due lots activated."""
        holds = released = lots = burnt_points = 0
        certificate_holds = certificates_burnt = certificate_points = 0
        for index, member in enumerate(self.members):
            for order in self.orders_of(index):
                hold = order.hold
                if hold is not None and hold.state == "open" and hold.expires_at <= now:
                    self.release(member, hold, now, "expired")
                    order.state = "cancelled"
                    holds, released = holds + 1, released + hold.points
            # Certificates as lots: a lapsed hold goes back (its order cancelled), then what is left
            # of expired ones burns.
            for c in member.certificates:
                if c.state == "held" and c.held_until <= now:
                    self.orders[c.held_order].state = "cancelled"
                    self.release_certificate(c)
                    certificate_holds += 1
            for c in member.certificates:
                if c.state == "active" and c.expires_at is not None and c.expires_at <= now:
                    certificates_burnt, certificate_points = certificates_burnt + 1, certificate_points + c.remaining
                    c.remaining, c.state = 0, "expired"
            burnt = [lot for lot in member.lots if lot.remaining > 0 and lot.expires_at <= now]
            if burnt:
                total = sum(lot.remaining for lot in burnt)
                member.move(now, "EXPIRED", -total)
                member.expired_total += total
                lots, burnt_points = lots + len(burnt), burnt_points + total
                for lot in burnt:
                    lot.remaining = 0
            for lot in member.lots:
                if not lot.activation_recorded and lot.activates_at <= now:
                    lot.activation_recorded = True
                    member.move(now, "ACTIVATED", 0)
        return ExpiryRun(holds, released, lots, burnt_points, certificates_burnt, certificate_points,
                         certificate_holds)

    # reading the points account -----------------------------------------------------------------

    def balance(self, index: int, now: int) -> dict[str, object]:
        member = self.members[index]
        live = [lot for lot in member.lots if lot.live(now)]
        burn_outs: dict[int, int] = {}
        every: dict[int, int] = {}
        for lot in live:
            if lot.expires_at != NEVER:
                every[lot.expires_at] = every.get(lot.expires_at, 0) + lot.remaining
                if lot.expires_at <= now + BURN_WINDOW_US:
                    burn_outs[lot.expires_at] = burn_outs.get(lot.expires_at, 0) + lot.remaining
        held = sum(o.hold.points for o in self.orders_of(index) if o.hold is not None and o.hold.state == "open")
        return dict(
            active=sum(lot.remaining for lot in live if lot.activates_at <= now),
            pending=sum(lot.remaining for lot in live if lot.activates_at > now),
            held=held, debt=member.debt, burn_outs=sorted(burn_outs.items()),
            every_burn_out=sorted(every.items()),
            pending_activations=sorted((lot.activates_at, lot.remaining) for lot in live if lot.activates_at > now),
            totals=(member.earned_total, member.spent_total, member.expired_total),
        )
