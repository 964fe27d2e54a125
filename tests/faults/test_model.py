"""Model-based: random sequences of enrol, status changes, accrue, event bonuses, quote, checkout (from a trusted
channel or a till), capture, cancel, complete, refund, void, erasure, changes of the accumulative
ranges, expiry runs, requests above the bounds, taken order ids, custom field updates and clock moves
against the running server (a programme counting purchases on capture or on completion, points after
or instead of discounts), beside a small in-memory model of docs/spec.md's rules; after every step the
balances, lots, holds, purchase totals, accumulative rates, history (the card's points and orders tabs
too), the history's events and custom field values agree with the model.

The run's seed is printed (and taken from LOYALTY_MODEL_SEED when set) so a failure replays;
LOYALTY_MODEL_EXAMPLES sets how many sequences run (20 by default).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
from google.protobuf import field_mask_pb2, timestamp_pb2
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, get_state_machine_test, initialize, invariant, precondition, rule,
)

from loyalty.v1 import (
    checkout_pb2, common_pb2, event_bonus_pb2, event_bonus_pb2_grpc, member_pb2, membership_pb2, membership_pb2_grpc,
    points_pb2, programme_pb2,
)
from loyalty.v1 import checkout_pb2, common_pb2, member_pb2, membership_pb2, points_pb2, programme_pb2
from loyalty_core.bounds import MAX_AMOUNT, MAX_QUANTITY
from tests.faults.helpers import (
    Stubs,
    assert_ledger_clean,
    basket,
    capture_request,
    checkout_request,
    create_programme,
    enrol,
    reason,
)

US_PER_S = 1_000_000
US_PER_DAY = 86_400 * US_PER_S
LIFETIME_DAYS = 30
# Earned points await activation for a day; manual accruals are active at once (docs/spec.md).
ACTIVATION_DELAY_DAYS = 1
HOLD_TTL_S = 600
BURN_WINDOW_US = 30 * US_PER_DAY
MAX_MEMBERS = 3
# The programme's one event type (docs/membership.md "Event bonuses"): points only, living less
# than earned ones, at most once per EVENT_EVERY_DAYS days per member.
EVENT_POINTS = 40
EVENT_LIFETIME_DAYS = 20
EVENT_EVERY_DAYS = 10
INT64_MAX = 2**63 - 1
NEVER = INT64_MAX  # calc.NEVER: the expiry of points that never expire
WELCOME_POINTS = 25
# The model programme's custom fields, and values an update may send: (field, value, whether it is
# valid for the field's type; an empty value clears the field).
CUSTOM_FIELDS = [programme_pb2.CustomFieldDefinition(name="size", type=programme_pb2.CUSTOM_FIELD_TYPE_INTEGER),
                 programme_pb2.CustomFieldDefinition(name="club", type=programme_pb2.CUSTOM_FIELD_TYPE_CHOICE,
                                                     choices=["north", "south"])]
CUSTOM_VALUES = [("size", "42", True), ("size", "-7", True), ("size", "", True), ("size", "07", False),
                 ("size", "4.2", False), ("club", "north", True), ("club", "south", True), ("club", "", True),
                 ("club", "east", False), ("club", "North", False)]
# The amounts a step sends above their bound: the field the refusal names, and the bound.
ABOVE_BOUNDS = {
    "accrue": ("points", MAX_AMOUNT),
    "redeem": ("points", MAX_AMOUNT),
    "price": ("lines[0].unit_price_minor", MAX_AMOUNT),
    "quantity": ("lines[0].quantity", MAX_QUANTITY),
    "requested_points": ("requested_points", MAX_AMOUNT),
}
# Accumulative discount ranges, (least purchase total, rate): the programme moves between these
# sets, so a member keeps a rate the ranges no longer give (seed 002).
RANGE_SETS = {"usual": ((200, 300), (1_000, 700)), "lowered": ((200, 100), (1_000, 300)), "none": ()}
COUNTS_WHEN = {"captured": programme_pb2.PURCHASE_COUNTS_WHEN_CAPTURED,
               "completed": programme_pb2.PURCHASE_COUNTS_WHEN_COMPLETED}
COMPATIBILITY = {"after": programme_pb2.COMPATIBILITY_POINTS_AFTER_DISCOUNTS,
                 "instead": programme_pb2.COMPATIBILITY_POINTS_INSTEAD_OF_DISCOUNTS}
# Half the baskets ask no points, so that enough orders go through to count, refund and void.
REQUESTED = st.just(0) | st.integers(0, 2_000)
STATUSES = {"active": member_pb2.MEMBER_STATUS_ACTIVE, "not_confirmed": member_pb2.MEMBER_STATUS_NOT_CONFIRMED,
            "deactivated": member_pb2.MEMBER_STATUS_DEACTIVATED}


@dataclass
class Lot:
    """A lot as the model sees it; lots are kept in creation order, which is the server's lot_id order."""

    remaining: int
    activates_at: int
    expires_at: int
    # A lot usable when it is made has nothing left for the expiry run to activate.
    activation_recorded: bool

    def usable(self, now: int) -> bool:
        return self.remaining > 0 and self.activates_at <= now < self.expires_at


@dataclass
class Hold:
    points: int
    taken: list[tuple[int, int]]  # (index into the member's lots, points)
    expires_at: int
    state: str = "open"  # open, captured, released, expired


@dataclass(frozen=True)
class Priced:
    """A one-line basket as the till is told to charge it."""

    order_discount: int
    net: int
    points_max: int
    points: int

    @property
    def money_due(self) -> int:
        return self.net - self.points


@dataclass
class Order:
    member: int
    priced: Priced
    points: int
    hold: Hold | None
    state: str = "held"  # held, captured, cancelled, completed, voided
    earned: int = 0
    earned_lot: int | None = None
    refunded: bool = False
    # What the order adds to the member's purchase total now.
    counted: int = 0


@dataclass
class Member:
    member_id: str
    lots: list[Lot] = field(default_factory=list)
    # (time, movement kind, points as the API gives them), oldest first: held and released carry
    # the amount moved between active and held, the others the change of the member's points.
    history: list[tuple[int, int, int]] = field(default_factory=list)
    earned_total: int = 0
    spent_total: int = 0
    expired_total: int = 0
    # SPEC's statuses: active pays, earns and counts; not confirmed earns and counts but cannot pay;
    # deactivated does nothing. Each write applies the status at its own moment.
    status: str = "active"
    purchases_total: int = 0
    # The accumulative rate kept and the least total of the range that gave it.
    kept_bps: int = 0
    kept_from: int = 0

    @property
    def pays(self) -> bool:
        return self.status == "active"

    @property
    def earns(self) -> bool:
        return self.status != "deactivated"
    # Erased (EraseMember): every later write is refused, the amounts stay as they are.
    erased: bool = False
    # The event occurrences granted, and when the last was.
    occurrences: set[int] = field(default_factory=set)
    last_event_at: int | None = None
    # Custom field values by name (an erasure removes them).
    custom: dict[str, str] = field(default_factory=dict)

    def move(self, now: int, kind: int, points: int) -> None:
        self.history.append((now, kind, points))

    def fifo(self, now: int) -> list[int]:
        """Usable lots in burn order: earliest expiry, then activation, then creation."""
        usable = [i for i, lot in enumerate(self.lots) if lot.usable(now)]
        return sorted(usable, key=lambda i: (self.lots[i].expires_at, self.lots[i].activates_at, i))

    def available(self, now: int) -> int:
        return sum(self.lots[i].remaining for i in self.fifo(now))

    def draw(self, amount: int, now: int, skip: int | None = None) -> tuple[list[tuple[int, int]], int]:
        """Take ``amount`` in FIFO order: (taken per lot, what could not be taken)."""
        taken = []
        for i in self.fifo(now):
            if amount == 0:
                break
            if i == skip:
                continue
            part = min(self.lots[i].remaining, amount)
            self.lots[i].remaining -= part
            taken.append((i, part))
            amount -= part
        return taken, amount


def post_sale_request(checkout: checkout_pb2.CheckoutRequest, sold_at_us: int) -> checkout_pb2.PostSaleRequest:
    """The checkout's request as an offline sale made at ``sold_at_us``."""
    request = checkout_pb2.PostSaleRequest(
        request_id=checkout.request_id, programme_id=checkout.programme_id, order_id=checkout.order_id,
        member=checkout.member, lines=checkout.lines, requested_points=checkout.requested_points)
    request.sale_time.FromMicroseconds(sold_at_us)
    return request


def refused(call: Any, request: Any, code: grpc.StatusCode, expected: str) -> None:
    """``call(request)`` is refused with ``code`` and the reason ``expected``."""
    try:
        call(request, timeout=10)
    except grpc.RpcError as err:
        assert (err.code(), reason(err)) == (code, expected)
        return
    raise AssertionError(f"the call went through; {expected!r} expected")


def by_moment(history: list[tuple[int, int, int]]) -> list[tuple[int, list[tuple[int, int]]]]:
    """History as [(time, sorted movements at that time)], oldest first."""
    moments: dict[int, list[tuple[int, int]]] = {}
    for at, kind, points in history:
        moments.setdefault(at, []).append((kind, points))
    return [(at, sorted(moves)) for at, moves in sorted(moments.items())]


def earned_on(money_minor: int, member: Member) -> int:
    # 10 % cashback, one point worth one minor unit, rounded down (docs/calc.md); nothing for a
    # deactivated member.
    return money_minor * 1_000 // 10_000 if member.earns else 0


def range_reached(ranges: tuple[tuple[int, int], ...], total: int) -> tuple[int, int]:
    """(rate, least total giving it): the largest rate the ranges give ``total``."""
    reached = [(bps, at) for at, bps in ranges if total >= at]
    if not reached:
        return 0, 0
    rate = max(bps for bps, _ in reached)
    return rate, min(at for bps, at in reached if bps == rate)


class LedgerModel(RuleBasedStateMachine):
    """The server (through its API) and the model, step by step."""

    stubs: Stubs
    membership: membership_pb2_grpc.MembershipServiceStub
    # A till's key (pos alone): not a trusted channel, so it may not spend naming the member by id.
    till: Stubs
    clock: object
    database_url: str

    def __init__(self) -> None:
        super().__init__()
        self.programme = ""
        self.members: list[Member] = []
        self.orders: dict[str, Order] = {}
        # Orders the last step may have changed: the invariant reads these back (all of them at the end).
        self.touched: set[str] = set()
        self.next_order = 0
        self.next_request = 0

    @property
    def now(self) -> int:
        return self.clock.now_us()

    def refused_as_erased(self, member: Member, call: object, request: object) -> bool:
        """For an erased member, ``call(request)`` must be refused ``member_erased``; whether it was."""
        if not member.erased:
            return False
        refused(call, request, grpc.StatusCode.FAILED_PRECONDITION, "member_erased")
        return True

    def request_id(self, what: str) -> str:
        """A fresh idempotency key: every step is a new request (replays are tested elsewhere)."""
        self.next_request += 1
        return f"{what}-{self.programme}-{self.next_request}"

    def ranges_request(self, ranges: tuple[tuple[int, int], ...]) -> list[programme_pb2.DiscountRange]:
        return [programme_pb2.DiscountRange(min_purchases_minor=at, discount_bps=bps) for at, bps in ranges]

    # -- the programme's rules ---------------------------------------------------------------

    @initialize(counts_when=st.sampled_from(sorted(COUNTS_WHEN)), compatibility=st.sampled_from(sorted(COMPATIBILITY)))
    def create(self, counts_when: str, compatibility: str) -> None:
        self.counts_when, self.instead, self.ranges = counts_when, compatibility == "instead", RANGE_SETS["usual"]
        # Card secrets required: points are spent only by card and secret, a spend code, or a
        # member id from a trusted channel (docs/trust.md "Who may spend points").
        self.programme = create_programme(
            self.stubs, point_lifetime_days=LIFETIME_DAYS, activation_delay_days=ACTIVATION_DELAY_DAYS,
            hold_ttl_seconds=HOLD_TTL_S, card_secret_required=True, welcome_bonus_points=WELCOME_POINTS,
            welcome_bonus_expiry=points_pb2.Expiry(never=True), purchase_counts_when=COUNTS_WHEN[counts_when],
            compatibility=COMPATIBILITY[compatibility], discount_ranges=self.ranges_request(self.ranges),
            custom_fields=CUSTOM_FIELDS)
        self.events = event_bonus_pb2_grpc.EventBonusServiceStub(self.stubs.channel)
        self.events.CreateEventType(event_bonus_pb2.CreateEventTypeRequest(
            request_id=self.programme, event_type=event_bonus_pb2.EventType(
                programme_id=self.programme, code="visit", name="Visit", points=EVENT_POINTS,
                expiry=points_pb2.Expiry(lifetime_days=EVENT_LIFETIME_DAYS),
                frequency=event_bonus_pb2.EVENT_FREQUENCY_EVERY_N_DAYS, frequency_days=EVENT_EVERY_DAYS)),
            timeout=10)

    def discount_bps(self, member: Member) -> int:
        """Deactivated: none; else the kept rate or what the ranges give the total now, the larger."""
        if not member.earns:
            return 0
        return max(member.kept_bps, range_reached(self.ranges, member.purchases_total)[0])

    def price(self, member: Member, price: int, requested: int) -> Priced:
        """docs/calc.md for one line, point worth 1, points may pay everything; points instead of
        discounts only when points apply."""
        bps = self.discount_bps(member)
        available = member.available(self.now) if member.pays else 0

        def at(instead: bool) -> Priced:
            discount = 0 if instead else price * bps // 10_000
            most = min(available, price - discount)
            return Priced(discount, price - discount, most, min(requested, most))

        priced = at(self.instead and requested > 0)
        return priced if priced.points or not (self.instead and requested > 0) else at(False)

    def count(self, member: Member, order: Order) -> None:
        """A purchase counts what refunds left of it (a whole refund leaves nothing) for a member
        whose status counts now; the rate rises to what the ranges give, never falls."""
        if not member.earns or order.refunded:
            return
        order.counted = order.priced.net
        member.purchases_total += order.counted
        bps, at = range_reached(self.ranges, member.purchases_total)
        if bps > member.kept_bps:
            member.kept_bps, member.kept_from = bps, at

    def uncount(self, member: Member, order: Order) -> int:
        """The order stops counting; the kept rate stays unless the total falls below what earned it."""
        dropped, order.counted = order.counted, 0
        member.purchases_total -= dropped
        if dropped and member.purchases_total < member.kept_from:
            bps, at = range_reached(self.ranges, member.purchases_total)
            member.kept_bps, member.kept_from = (bps, at) if bps < member.kept_bps else (member.kept_bps, at)
        return dropped

    @rule(name=st.sampled_from(sorted(RANGE_SETS)))
    def change_ranges(self, name: str) -> None:
        self.ranges = RANGE_SETS[name]
        self.stubs.programmes.UpdateProgramme(programme_pb2.UpdateProgrammeRequest(
            request_id=self.request_id("ranges"), programme=programme_pb2.Programme(
                programme_id=self.programme, discount_ranges=self.ranges_request(self.ranges)),
            update_mask=field_mask_pb2.FieldMask(paths=["discount_ranges"])), timeout=10)

    # -- the steps ---------------------------------------------------------------------------

    @precondition(lambda self: len(self.members) < MAX_MEMBERS)
    @rule()
    def enrol(self) -> None:
        member = Member(enrol(self.stubs, self.programme))
        # The welcome bonus is usable at once and, as the programme chose, never expires although
        # points do: spent last, burnt never.
        member.lots.append(Lot(WELCOME_POINTS, self.now, NEVER, activation_recorded=True))
        member.earned_total += WELCOME_POINTS
        member.move(self.now, points_pb2.MOVEMENT_KIND_WELCOME, WELCOME_POINTS)
        self.members.append(member)

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), status=st.sampled_from(sorted(STATUSES)))
    def change_status(self, who: int, status: str) -> None:
        # Between any two steps, so between a checkout and its capture too.
        member = self.members[who % len(self.members)]
        request = membership_pb2.ChangeMemberStatusRequest(
            request_id=self.request_id("status"), programme_id=self.programme, member_id=member.member_id,
            status=STATUSES[status], comment="model")
        if self.refused_as_erased(member, self.membership.ChangeMemberStatus, request):
            return
        card = self.membership.ChangeMemberStatus(request, timeout=10).member
        assert card.status == STATUSES[status]
        member.status = status

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), points=st.integers(1, 500))
    def accrue(self, who: int, points: int) -> None:
        member = self.members[who % len(self.members)]
        request = points_pb2.AccruePointsRequest(request_id=self.request_id("accrue"), programme_id=self.programme,
                                                 member_id=member.member_id, points=points)
        if self.refused_as_erased(member, self.stubs.points.AccruePoints, request):
            return
        if not member.earns:
            refused(self.stubs.points.AccruePoints, request, grpc.StatusCode.FAILED_PRECONDITION, "member_deactivated")
            return
        resp = self.stubs.points.AccruePoints(request, timeout=10)
        assert (resp.movement.kind, resp.movement.points) == (points_pb2.MOVEMENT_KIND_MANUAL_ACCRUAL, points)
        member.lots.append(Lot(points, self.now, self.now + LIFETIME_DAYS * US_PER_DAY, activation_recorded=True))
        member.earned_total += points
        member.move(self.now, points_pb2.MOVEMENT_KIND_MANUAL_ACCRUAL, points)

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), occurrence=st.integers(0, 3))
    def record_event(self, who: int, occurrence: int) -> None:
        """One occurrence grants once; a new one only EVENT_EVERY_DAYS after the last grant."""
        member = self.members[who % len(self.members)]
        request = event_bonus_pb2.RecordEventRequest(
            request_id=self.request_id("event"), programme_id=self.programme, member_id=member.member_id,
            event_code="visit", occurrence_key=str(occurrence))
        if self.refused_as_erased(member, self.events.RecordEvent, request):
            return
        if not member.earns:
            # A deactivated member receives nothing, and the occurrence stays ungranted.
            refused(self.events.RecordEvent, request, grpc.StatusCode.FAILED_PRECONDITION, "member_deactivated")
            return
        if occurrence not in member.occurrences and member.last_event_at is not None \
                and self.now < member.last_event_at + EVENT_EVERY_DAYS * US_PER_DAY:
            try:
                self.events.RecordEvent(request, timeout=10)
            except grpc.RpcError as err:
                assert (err.code(), reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                     "event_frequency_limit_reached")
                return
            raise AssertionError("an event within its frequency was granted")
        resp = self.events.RecordEvent(request, timeout=10)
        assert resp.already_granted == (occurrence in member.occurrences)
        if resp.already_granted:
            return
        assert (resp.movement.kind, resp.movement.points) == (points_pb2.MOVEMENT_KIND_EVENT_BONUS, EVENT_POINTS)
        member.occurrences.add(occurrence)
        member.last_event_at = self.now
        member.lots.append(Lot(EVENT_POINTS, self.now, self.now + EVENT_LIFETIME_DAYS * US_PER_DAY,
                               activation_recorded=True))
        member.earned_total += EVENT_POINTS
        member.move(self.now, points_pb2.MOVEMENT_KIND_EVENT_BONUS, EVENT_POINTS)

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), price=st.integers(1, 5_000), requested=REQUESTED)
    def quote(self, who: int, price: int, requested: int) -> None:
        member = self.members[who % len(self.members)]
        request = checkout_pb2.QuoteRequest(programme_id=self.programme, lines=basket(price),
                                            member=common_pb2.MemberRef(member_id=member.member_id),
                                            requested_points=requested)
        if self.refused_as_erased(member, self.stubs.checkout.Quote, request):
            return
        answer = self.stubs.checkout.Quote(request, timeout=10)
        pricing = answer.pricing
        want = self.price(member, price, requested)
        assert (pricing.order_discount_minor, pricing.points_max, pricing.points_applied) == (
            want.order_discount, want.points_max, want.points)
        # Points may pay every cent here: only the status or an empty balance stops them.
        blocked = {"deactivated": checkout_pb2.POINTS_BLOCKED_MEMBER_DEACTIVATED,
                   "not_confirmed": checkout_pb2.POINTS_BLOCKED_MEMBER_NOT_CONFIRMED}.get(
            member.status, checkout_pb2.POINTS_BLOCKED_NO_POINTS_AVAILABLE if want.points_max == 0
            else checkout_pb2.POINTS_BLOCKED_UNSPECIFIED)
        assert answer.points_blocked == blocked
        assert (pricing.money_due_minor, pricing.earned_points) == (want.money_due, earned_on(want.money_due, member))

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), price=st.integers(1, 5_000), requested=REQUESTED,
          at_till=st.booleans())
    def checkout(self, who: int, price: int, requested: int, at_till: bool) -> None:
        self._checkout(who, price, requested, at_till)

    def _checkout(self, who: int, price: int, requested: int, at_till: bool,
                  sold_ago_us: int | None = None) -> str | None:
        """Check an order out (at a till: with a key that may not spend by member id); its id, or
        None when the checkout was refused. With ``sold_ago_us``, post it as a sale made that long
        ago instead (PostSale: checkout and capture at once, paid from the lots usable now)."""
        index = who % len(self.members)
        member = self.members[index]
        order_id = f"o{self.next_order}"
        self.next_order += 1
        available = member.available(self.now) if member.pays else 0
        want = self.price(member, price, requested)
        request: Any = checkout_request(self.programme, member.member_id, order_id, price, requested,
                                        request_id=self.request_id("checkout"))
        call = (self.till if at_till else self.stubs).checkout.Checkout
        if sold_ago_us is not None:
            request = post_sale_request(request, self.now - sold_ago_us)
            call = (self.till if at_till else self.stubs).checkout.PostSale
        if self.refused_as_erased(member, call, request):
            return None
        expected = ""
        if requested > want.points:
            expected = {"deactivated": "member_deactivated", "not_confirmed": "member_not_confirmed"}.get(
                member.status, "points_must_not_exceed_balance" if requested > available
                else "points_must_not_exceed_payable_limit")
        elif requested and at_till:
            expected = "spend_identification_not_allowed"
        if expected:
            refused(call, request, grpc.StatusCode.FAILED_PRECONDITION, expected)
            return None
        posted = call(request, timeout=10)
        resp = posted if sold_ago_us is None else checkout_pb2.CheckoutResponse(order=posted.order)
        hold = None
        if requested:
            taken, short = member.draw(requested, self.now)
            assert short == 0
            hold = Hold(requested, taken, self.now + HOLD_TTL_S * US_PER_S)
            member.move(self.now, points_pb2.MOVEMENT_KIND_HELD, requested)
            assert resp.order.hold.points == requested
            assert resp.order.hold.expire_time.ToMicroseconds() == hold.expires_at
        else:
            assert not resp.order.HasField("hold")
        assert (resp.order.pricing.order_discount_minor, resp.order.pricing.money_due_minor) == (
            want.order_discount, want.money_due)
        assert resp.order.pricing.earned_points == earned_on(want.money_due, member)
        self.orders[order_id] = Order(index, want, requested, hold)
        self.touched.add(order_id)
        if sold_ago_us is None:
            assert resp.order.state == checkout_pb2.ORDER_STATE_HELD
        else:
            self._captured(self.orders[order_id], posted, self.now - sold_ago_us)
        return order_id

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), price=st.integers(1, 5_000), requested=REQUESTED,
          at_till=st.booleans(), sold_ago_s=st.sampled_from([0, 3_600, 2 * 86_400, 29 * 86_400]))
    def post_sale(self, who: int, price: int, requested: int, at_till: bool, sold_ago_s: int) -> None:
        """An offline till's sale, posted later: its lot activates and expires from the sale's time."""
        self._checkout(who, price, requested, at_till, sold_ago_us=sold_ago_s * US_PER_S)

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), price=st.integers(1, 5_000), requested=REQUESTED)
    def buy(self, who: int, price: int, requested: int) -> None:
        """Checkout and capture in one step, as a till does when the payment goes through at once
        (so that enough orders are paid to count, refund, complete and void)."""
        order_id = self._checkout(who, price, requested, at_till=False)
        if order_id is not None:
            self._capture(order_id, self.orders[order_id])

    def _pick(self, data: st.DataObject, states: tuple[str, ...]) -> tuple[str, Order] | None:
        candidates = sorted(o for o, order in self.orders.items() if order.state in states)
        if not candidates:
            return None
        order_id = data.draw(st.sampled_from(candidates), label="order")
        self.touched.add(order_id)
        return order_id, self.orders[order_id]

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def capture(self, data: st.DataObject) -> None:
        picked = self._pick(data, ("held", "cancelled", "captured", "voided"))
        if picked is not None:
            self._capture(*picked)

    def _capture(self, order_id: str, order: Order) -> None:
        member = self.members[order.member]
        request = capture_request(self.programme, order_id)
        request.request_id = self.request_id("capture")
        if self.refused_as_erased(member, self.stubs.checkout.Capture, request):
            return
        hold = order.hold
        refusal = None
        if hold is not None and (hold.state == "expired" or (hold.state == "open" and self.now >= hold.expires_at)):
            refusal = "hold_expired"
        elif order.state != "held":
            refusal = "hold_not_open"
        if refusal:
            refused(self.stubs.checkout.Capture, request, grpc.StatusCode.FAILED_PRECONDITION, refusal)
            return
        self._captured(order, self.stubs.checkout.Capture(request, timeout=10), self.now)

    def _captured(self, order: Order, resp: Any, at: int) -> None:
        """The model after a capture (or a posted sale) whose sale was made ``at``."""
        member = self.members[order.member]
        hold = order.hold
        # The held points are spent whatever the status now (they paid while they could); earning
        # and counting follow the status at capture.
        earned = earned_on(order.priced.money_due, member)
        assert (resp.spent_points, resp.earned_points) == (order.points, earned)
        # The till is charged as the checkout said.
        assert resp.order.pricing.money_due_minor == order.priced.money_due
        assert resp.order.state == checkout_pb2.ORDER_STATE_CAPTURED
        if hold is not None:
            hold.state = "captured"
            member.move(self.now, points_pb2.MOVEMENT_KIND_SPENT, -order.points)
            member.spent_total += order.points
        if earned:
            activates_at = at + ACTIVATION_DELAY_DAYS * US_PER_DAY
            # A posted sale's lot may be usable at once: nothing for the expiry run to activate.
            member.lots.append(Lot(earned, activates_at, activates_at + LIFETIME_DAYS * US_PER_DAY,
                                   activation_recorded=activates_at <= self.now))
            order.earned_lot = len(member.lots) - 1
            member.earned_total += earned
            member.move(self.now, points_pb2.MOVEMENT_KIND_EARNED, earned)
        order.state, order.earned = "captured", earned
        if self.counts_when == "captured":
            self.count(member, order)

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        picked = self._pick(data, ("held", "captured", "completed", "voided"))
        if picked is None:
            return
        order_id, order = picked
        member = self.members[order.member]
        request = checkout_pb2.CompleteOrderRequest(request_id=self.request_id("complete"),
                                                    programme_id=self.programme, order_id=order_id)
        if self.refused_as_erased(member, self.stubs.checkout.CompleteOrder, request):
            return
        if order.state != "captured":
            refusal = "order_voided" if order.state == "voided" else "order_not_captured"
            refused(self.stubs.checkout.CompleteOrder, request, grpc.StatusCode.FAILED_PRECONDITION, refusal)
            return
        self.stubs.checkout.CompleteOrder(request, timeout=10)
        order.state = "completed"
        if self.counts_when == "completed":
            self.count(member, order)

    def _release(self, member: Member, hold: Hold) -> None:
        for i, points in hold.taken:
            member.lots[i].remaining += points
        member.move(self.now, points_pb2.MOVEMENT_KIND_RELEASED, hold.points)

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        picked = self._pick(data, ("held", "cancelled", "voided"))
        if picked is None:
            return
        order_id, order = picked
        member = self.members[order.member]
        request = checkout_pb2.CancelRequest(request_id=self.request_id("cancel"),
                                             programme_id=self.programme, order_id=order_id)
        if self.refused_as_erased(member, self.stubs.checkout.Cancel, request):
            return
        if order.state != "held":
            refused(self.stubs.checkout.Cancel, request, grpc.StatusCode.FAILED_PRECONDITION, "hold_not_open")
            return
        resp = self.stubs.checkout.Cancel(request, timeout=10)
        released = 0
        if order.hold is not None and order.hold.state == "open":
            released = order.hold.points
            self._release(member, order.hold)
            order.hold.state = "released"
        assert resp.released_points == released
        order.state = "cancelled"

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        picked = self._pick(data, ("captured", "completed", "voided"))
        if picked is None:
            return
        order_id, order = picked
        member = self.members[order.member]
        request = checkout_pb2.RefundRequest(request_id=self.request_id("refund"),
                                             programme_id=self.programme, order_id=order_id)
        if self.refused_as_erased(member, self.stubs.checkout.Refund, request):
            return
        # A voided order is closed (docs/ledger.md); a wholly refunded one has nothing left.
        refusal = "order_voided" if order.state == "voided" else "refund_must_not_exceed_captured"
        if order.state == "voided" or order.refunded:
            refused(self.stubs.checkout.Refund, request, grpc.StatusCode.FAILED_PRECONDITION, refusal)
            return
        resp = self.stubs.checkout.Refund(request, timeout=10)
        # Spent points go back to the very lots they came from (the programme returns them) ...
        if order.points:
            for i, points in order.hold.taken:
                member.lots[i].remaining += points
            member.move(self.now, points_pb2.MOVEMENT_KIND_REFUND_RETURN, order.points)
        # ... then the earned points are taken back: the order's own lot first, then FIFO; what is
        # not there is a shortfall (TAKE_AVAILABLE).
        taken: list[tuple[int, int]] = []
        wanted = order.earned
        own = order.earned_lot
        if wanted and own is not None and member.lots[own].remaining > 0 and self.now < member.lots[own].expires_at:
            part = min(member.lots[own].remaining, wanted)
            member.lots[own].remaining -= part
            taken.append((own, part))
            wanted -= part
        more, shortfall = member.draw(wanted, self.now, skip=own)
        taken += more
        clawed = sum(p for _, p in taken)
        if clawed:
            member.move(self.now, points_pb2.MOVEMENT_KIND_REVERSED, -clawed)
        got = resp.refund
        assert (got.returned_points, got.clawback_points, got.shortfall_points) == (order.points, clawed, shortfall)
        order.refunded = True
        self.uncount(member, order)

    @precondition(lambda self: self.orders)
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        picked = self._pick(data, ("held", "cancelled", "captured", "completed", "voided"))
        if picked is None:
            return
        order_id, order = picked
        member = self.members[order.member]
        request = checkout_pb2.VoidOrderRequest(request_id=self.request_id("void"), programme_id=self.programme,
                                                order_id=order_id)
        if self.refused_as_erased(member, self.stubs.checkout.VoidOrder, request):
            return
        if order.state not in ("captured", "completed"):
            refusal = "order_voided" if order.state == "voided" else "order_not_captured"
            refused(self.stubs.checkout.VoidOrder, request, grpc.StatusCode.FAILED_PRECONDITION, refusal)
            return
        # It stops counting (what a refund left of it); its points stay: no movement.
        resp = self.stubs.checkout.VoidOrder(request, timeout=10)
        assert resp.uncounted_minor == self.uncount(member, order)
        order.state = "voided"

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1))
    def erase(self, who: int) -> None:
        # Erasure keeps every amount (the invariant checks balances, totals and history after it);
        # it waits while a hold is open (until the expiry run releases a stale one), and an erased
        # member is not erased again.
        index = who % len(self.members)
        member = self.members[index]
        request = member_pb2.EraseMemberRequest(request_id=self.request_id("erase"), programme_id=self.programme,
                                                member_id=member.member_id)
        holding = any(o.member == index and o.hold is not None and o.hold.state == "open" for o in self.orders.values())
        refusal = "member_erased" if member.erased else "member_has_open_holds" if holding else None
        try:
            erased = self.stubs.members.EraseMember(request, timeout=10)
        except grpc.RpcError as err:
            assert (err.code(), reason(err)) == (grpc.StatusCode.FAILED_PRECONDITION, refusal)
            return
        assert refusal is None, f"an erasure was not refused ({refusal})"
        assert (erased.member.phone, erased.member.card_number) == ("", "")
        member.erased = True
        member.custom.clear()

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), change=st.sampled_from(CUSTOM_VALUES))
    def set_custom_field(self, who: int, change: tuple[str, str, bool]) -> None:
        # A value is checked against its field's type before the member is looked at: a bad one is
        # refused naming it, even for an erased member; a good one for an erased member is refused
        # member_erased. Either way nothing changes.
        member = self.members[who % len(self.members)]
        name, value, valid = change
        request = member_pb2.UpdateMemberCustomFieldsRequest(
            request_id=self.request_id("custom"), programme_id=self.programme, member_id=member.member_id,
            custom_fields=[member_pb2.CustomFieldValue(name=name, value=value)], update_mask={"paths": [name]})
        if valid and self.refused_as_erased(member, self.stubs.members.UpdateMemberCustomFields, request):
            return
        try:
            got = self.stubs.members.UpdateMemberCustomFields(request, timeout=10).member
        except grpc.RpcError as err:
            assert not valid and (err.code(), reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
            return
        assert valid, f"{value!r} for {name} was not refused"
        if value:
            member.custom[name] = value
        else:
            member.custom.pop(name, None)
        assert {v.name: v.value for v in got.custom_fields} == member.custom

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1))
    def change_phone(self, who: int) -> None:
        # An edit of the member's data moves no points (the invariant checks that), leaves the new
        # phone unconfirmed, and is refused once the member is erased.
        member = self.members[who % len(self.members)]
        self.next_request += 1
        phone = f"+1999{self.next_request:07d}"  # unique within the model's programme
        request = member_pb2.ChangeMemberPhoneRequest(request_id=self.request_id("phone"), programme_id=self.programme,
                                                      member_id=member.member_id, phone=phone, comment="model")
        if self.refused_as_erased(member, self.stubs.members.ChangeMemberPhone, request):
            return
        changed = self.stubs.members.ChangeMemberPhone(request, timeout=10).member
        assert (changed.phone, changed.phone_confirmed) == (phone, False)

    @precondition(lambda self: self.members)
    @rule()
    def expire(self) -> None:
        now = self.now
        run = self.stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=self.programme), timeout=30)
        holds = lots = points = released = 0
        for index, member in enumerate(self.members):
            stale = sorted(order_id for order_id, o in self.orders.items()
                           if o.member == index and o.hold is not None and o.hold.state == "open"
                           and o.hold.expires_at <= now)
            for order_id in stale:
                order = self.orders[order_id]
                self._release(member, order.hold)
                order.hold.state, order.state = "expired", "cancelled"
                self.touched.add(order_id)
                holds, released = holds + 1, released + order.hold.points
            burnt = [lot for lot in member.lots if lot.remaining > 0 and lot.expires_at <= now]
            if burnt:
                total = sum(lot.remaining for lot in burnt)
                member.move(self.now, points_pb2.MOVEMENT_KIND_EXPIRED, -total)
                member.expired_total += total
                lots, points = lots + len(burnt), points + total
                for lot in burnt:
                    lot.remaining = 0
            for lot in member.lots:
                if not lot.activation_recorded and lot.activates_at <= now:
                    lot.activation_recorded = True
                    member.move(self.now, points_pb2.MOVEMENT_KIND_ACTIVATED, 0)
        assert (run.holds_released, run.points_released, run.lots_expired, run.points_expired) == (
            holds, released, lots, points)

    @rule(ahead_s=st.sampled_from([1, 86_400, 400 * 86_400]))
    def expire_later_is_refused(self, ahead_s: int) -> None:
        # An expiry never acts on a time later than now: refused, and nothing changes (the
        # invariant below checks that).
        later = timestamp_pb2.Timestamp()
        later.FromMicroseconds(self.now + ahead_s * US_PER_S)
        try:
            self.stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=self.programme, as_of_time=later),
                                        timeout=30)
        except grpc.RpcError as err:
            assert (err.code(), reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
        else:
            raise AssertionError("RunExpiry acted on a time later than now")

    @precondition(lambda self: self.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), what=st.sampled_from(sorted(ABOVE_BOUNDS)), saturated=st.booleans())
    def an_amount_above_its_bound_is_refused(self, who: int, what: str, saturated: bool) -> None:
        # Every amount has a bound (docs/ledger.md "Bounds"); one above it, or int64's largest value
        # (a JavaScript 1e19), is refused on its field and changes nothing (the invariant checks).
        member = self.members[who % len(self.members)]
        field, bound = ABOVE_BOUNDS[what]
        over = INT64_MAX if saturated else bound + 1
        if what in ("accrue", "redeem"):
            call = self.stubs.points.AccruePoints if what == "accrue" else self.stubs.points.RedeemPoints
            message = points_pb2.AccruePointsRequest if what == "accrue" else points_pb2.RedeemPointsRequest
            request = message(request_id=self.request_id(what), programme_id=self.programme,
                              member_id=member.member_id, points=over)
        else:
            call = self.stubs.checkout.Checkout
            request = checkout_request(self.programme, member.member_id, f"refused-{self.next_request}",
                                       over if what == "price" else 100, over if what == "requested_points" else 0,
                                       request_id=self.request_id("checkout"))
            if what == "quantity":
                request.lines[0].quantity = over
        try:
            call(request, timeout=10)
        except grpc.RpcError as err:
            assert (err.code(), reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
            assert field in err.details()
        else:
            raise AssertionError(f"{what} of {over} was not refused")

    @precondition(lambda self: self.orders and len(self.members) > 1)
    @rule(data=st.data())
    def a_taken_order_id_is_refused(self, data: st.DataObject) -> None:
        # An order id is the programme's, whoever checks it out: another member's checkout of it is
        # ALREADY_EXISTS (concurrently too: tests/grpc/test_order_id_race.py) and changes nothing.
        order_id = data.draw(st.sampled_from(sorted(self.orders)), label="taken order")
        other = next(m for i, m in enumerate(self.members) if i != self.orders[order_id].member)
        request = checkout_request(self.programme, other.member_id, order_id, 100, 0,
                                   request_id=self.request_id("checkout"))
        try:
            self.stubs.checkout.Checkout(request, timeout=10)
        except grpc.RpcError as err:
            assert (err.code(), reason(err)) == (grpc.StatusCode.ALREADY_EXISTS, "order_already_checked_out")
        else:
            raise AssertionError(f"order {order_id} was checked out twice")

    @rule(step=st.sampled_from([60, 599, 601, 3_600, 86_399, 86_400, 15 * 86_400, 31 * 86_400]))
    def time_passes(self, step: int) -> None:
        self.clock.advance(seconds=step)

    # -- after every step: the server agrees with the model ------------------------------------

    @invariant()
    def balances_lots_holds_and_history_agree(self) -> None:
        now = self.now
        for member in self.members:
            got = self.stubs.members.GetBalance(member_pb2.GetBalanceRequest(
                programme_id=self.programme, member_id=member.member_id), timeout=10).balance
            live = [lot for lot in member.lots if lot.remaining > 0 and lot.expires_at > now]
            held = sum(o.hold.points for o in self.orders.values()
                       if o.hold is not None and o.hold.state == "open" and self.members[o.member] is member)
            burn_outs: dict[int, int] = {}
            for lot in live:
                if lot.expires_at <= now + BURN_WINDOW_US:
                    burn_outs[lot.expires_at] = burn_outs.get(lot.expires_at, 0) + lot.remaining
            assert (got.active_points, got.pending_points, got.held_points) == (
                sum(lot.remaining for lot in live if lot.activates_at <= now),
                sum(lot.remaining for lot in live if lot.activates_at > now), held)
            assert [(b.expire_time.ToMicroseconds(), b.points) for b in got.burn_outs] == sorted(burn_outs.items())
            assert got.burning_points == sum(burn_outs.values())
            # The participation card shows the same figures.
            card = self.stubs.members.GetMember(member_pb2.GetMemberRequest(
                programme_id=self.programme, member_id=member.member_id), timeout=10).balance
            assert (card.active_points, card.pending_points, card.held_points, card.burning_points) == (
                got.active_points, got.pending_points, got.held_points, got.burning_points)
            # The forecast: every later burn-out, and what awaits activation.
            forecast = self.stubs.members.GetPointsForecast(member_pb2.GetPointsForecastRequest(
                programme_id=self.programme, member_id=member.member_id, page_size=500), timeout=10)
            every: dict[int, int] = {}
            for lot in live:
                if lot.expires_at == NEVER:
                    continue  # points that never expire burn in no forecast
                every[lot.expires_at] = every.get(lot.expires_at, 0) + lot.remaining
            assert [(b.expire_time.ToMicroseconds(), b.points) for b in forecast.burn_outs] == sorted(every.items())
            assert sorted((p.activate_time.ToMicroseconds(), p.points) for p in forecast.pending_activations) == \
                sorted((lot.activates_at, lot.remaining) for lot in live if lot.activates_at > now)
            assert (got.earned_total_points, got.spent_total_points, got.expired_total_points) == (
                member.earned_total, member.spent_total, member.expired_total)
            card = self.stubs.members.GetMember(member_pb2.GetMemberRequest(
                programme_id=self.programme, member_id=member.member_id), timeout=10).member
            assert (card.status, card.purchases_total_minor, card.accumulative_discount_bps) == (
                STATUSES[member.status], member.purchases_total, member.kept_bps)
            history = self.stubs.points.ListPointsHistory(points_pb2.ListPointsHistoryRequest(
                programme_id=self.programme, member_id=member.member_id, page_size=500), timeout=10).movements
            # Movements of one moment are compared as a set: the expiry run releases stale holds of
            # the same moment in hold-id (random) order.
            assert by_moment([(m.create_time.ToMicroseconds(), m.kind, m.points) for m in reversed(history)]) \
                == by_moment(member.history)
            # The outbox: every movement has its points event, with the same kind and points, in
            # the member's order (docs/events.md).
            assert by_moment(self._points_events(member.member_id)) == by_moment(member.history)
            self._card_agrees(member)
        self._orders_agree(sorted(self.touched))
        self.touched.clear()

    def _points_events(self, member_id: str) -> list[tuple[int, int, int]]:
        """(time, movement kind, points) of the member's points events, by sequence number."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT (extract(epoch FROM created_at) * 1000000)::bigint, payload->>'movement_kind',"
                " (payload->>'points')::bigint FROM outbox_event WHERE member_id = %s AND type LIKE 'points.%%'"
                " AND type <> 'points.expiring_soon' ORDER BY seq", (member_id,)).fetchall()
        return [(at, points_pb2.MovementKind.Value(f"MOVEMENT_KIND_{kind.upper()}"), points) for at, kind, points in rows]

    def _card_agrees(self, member: Member) -> None:
        """The card's points tab holds the member's movements, its orders tab each order with the model's
        state (a whole refund as refund "whole"), GetMember the custom values, and ListMembers finds
        the members by them."""
        def tab(which: int) -> list[membership_pb2.HistoryEvent]:
            return list(self.stubs.membership.ListMemberHistory(membership_pb2.ListMemberHistoryRequest(
                programme_id=self.programme, member_id=member.member_id, tab=which, page_size=500),
                timeout=10).events)

        kinds = {f"points_{points_pb2.MovementKind.Name(k).removeprefix('MOVEMENT_KIND_').lower()}": k
                 for k in points_pb2.MovementKind.values()}
        assert by_moment([(e.create_time.ToMicroseconds(), kinds[e.kind], int(e.details["points"]))
                          for e in reversed(tab(membership_pb2.HISTORY_TAB_POINTS))]) == by_moment(member.history)
        index = self.members.index(member)
        assert {e.details["order_id"]: (e.details["state"], e.details["refund"])
                for e in tab(membership_pb2.HISTORY_TAB_ORDERS) if e.kind == "order"} == {
            order_id: (o.state, "whole" if o.refunded else "none")
            for order_id, o in self.orders.items() if o.member == index}
        got = self.stubs.members.GetMember(member_pb2.GetMemberRequest(
            programme_id=self.programme, member_id=member.member_id), timeout=10).member
        assert {v.name: v.value for v in got.custom_fields} == member.custom
        # ListMembers finds by each value exactly the members that hold it.
        for name, value in member.custom.items():
            found = self.stubs.members.ListMembers(member_pb2.ListMembersRequest(
                programme_id=self.programme, page_size=500,
                custom_field=member_pb2.CustomFieldValue(name=name, value=value)), timeout=10).members
            assert sorted(m.member_id for m in found) == sorted(
                m.member_id for m in self.members if m.custom.get(name) == value)

    def _orders_agree(self, order_ids: list[str]) -> None:
        for order_id in order_ids:
            order = self.orders[order_id]
            got = self.stubs.checkout.GetOrder(checkout_pb2.GetOrderRequest(
                programme_id=self.programme, order_id=order_id), timeout=10).order
            assert checkout_pb2.OrderState.Name(got.state) == f"ORDER_STATE_{order.state.upper()}"
            if order.hold is not None:
                assert got.hold.points == order.hold.points

    def teardown(self) -> None:
        self._orders_agree(sorted(self.orders))
        if self.members:
            assert_ledger_clean(self.stubs, self.programme)


def test_the_server_agrees_with_the_model(channel, channel_with, clock, database_url):
    run_seed = int(os.environ.get("LOYALTY_MODEL_SEED") or random.randrange(2**32))
    print(f"model-based test seed: {run_seed} (replay with LOYALTY_MODEL_SEED={run_seed})")
    LedgerModel.stubs, LedgerModel.till, LedgerModel.clock = Stubs(channel), Stubs(channel_with("pos")), clock
    LedgerModel.membership = membership_pb2_grpc.MembershipServiceStub(channel)
    LedgerModel.database_url = database_url
    # LOYALTY_MODEL_EXAMPLES runs longer (each example is a sequence of up to 50 steps).
    examples = int(os.environ.get("LOYALTY_MODEL_EXAMPLES") or 20)
    test = get_state_machine_test(LedgerModel, settings=settings(
        max_examples=examples, stateful_step_count=50, deadline=None, print_blob=True, database=None,
        # No shrinking phase: a failing sequence is reported as found, with its seed, in bounded time.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]))
    hypothesis_seed(run_seed)(test)()
