"""The server and ``rules.World`` side by side, step by step (hypothesis' stateful testing).

Each example creates a programme with settings drawn from ``programmes()`` (categories, caps,
compatibility, completion mode, window, refund policy, welcome bonus, confirmation, ranges and
levels, an event type, custom fields), then runs random steps: enrolments, status and discount
changes, off-boarding, phone changes, custom field updates, accruals, event bonuses, redemptions,
quotes, checkouts, captures (all, fewer or no points), cancels, multi-line and per-unit refunds,
completions, voids, expiry runs, level reviews and manual levels, range changes
and recalculation, certificates issued and cancelled and presented to quotes and checkouts (the
member's, in any state, or another member's), requests above the bounds, taken order ids and clock moves. Every answer, and
every refusal's status and reason, is the rules' answer; after every step the members and orders
it touched read back as the rules say (balances, burn-outs, forecast, totals, history, member
card, GetMember's balance and custom values, the member's certificates, order, pricing with what
each certificate pays, hold and refunds); at the end every
member and order, the forecasts, both histories (points and the member's), the card's points and
orders tabs, the outbox's points events, ListMembers by custom value and VerifyLedger.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import grpc
import psycopg
from google.protobuf import field_mask_pb2, timestamp_pb2
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from loyalty.v1 import (
    certificate_pb2, certificate_pb2_grpc, checkout_pb2, common_pb2, event_bonus_pb2, event_bonus_pb2_grpc,
    member_import_pb2, member_import_pb2_grpc, member_pb2, membership_pb2, points_pb2, programme_pb2,
)
from loyalty_core.bounds import MAX_AMOUNT, MAX_QUANTITY
from tests.faults.helpers import Stubs, assert_ledger_clean, programme_settings, reason
from tests.faults.model.rules import (
    ACTIVE, DEACTIVATED, NOT_CONFIRMED, US_PER_DAY, US_PER_S, CustomField, EventType, LevelRule, Line, Priced,
    Programme, Range, Refused, World, points_blocked,
)

T = TypeVar("T")
MAX_MEMBERS = 4
INT64_MAX = 2**63 - 1
STATUSES = {ACTIVE: member_pb2.MEMBER_STATUS_ACTIVE, NOT_CONFIRMED: member_pb2.MEMBER_STATUS_NOT_CONFIRMED,
            DEACTIVATED: member_pb2.MEMBER_STATUS_DEACTIVATED}
CATEGORIES = {"bar": (1000, 10_000), "tickets": (500, 1000)}  # cashback, pay share (seed 000: 10% of a ticket)
BASKET_CATEGORIES = ("bar", "tickets", "misc")
RANGES = (Range("", 2000, 300), Range("", 8000, 500), Range("vip", 4000, 600))
LOWER_RANGES = (Range("", 2000, 100), Range("", 8000, 200))
LADDER = (
    LevelRule("Bronze", 1, privilege="cashback", cashback_bps=1000),
    LevelRule("Silver", 2, spend=3000, category_spend=(("bar", 1000),), spend_days=30, privilege="cashback",
              cashback_bps=1500, categories=(("tickets", 500, None),), pay_share_bps=5000),
    LevelRule("Gold", 3, spend=6000, spend_days=60, visits=3, visit_days=30, privilege="discount",
              discount_bps=700, categories=(("bar", 0, 2000),)),
    LevelRule("Club", 4, group="vip", visits=4, privilege="discount", discount_bps=1200),
)
POLICIES = {"take_available": programme_pb2.NEGATIVE_BALANCE_POLICY_TAKE_AVAILABLE,
            "refuse": programme_pb2.NEGATIVE_BALANCE_POLICY_REFUSE, "debt": programme_pb2.NEGATIVE_BALANCE_POLICY_DEBT}
# The programme's one event type: points only, living less than earned ones, at most once per
# 10 days per member.
EVENT_TYPE = EventType("visit", 40, 20, 10)
CUSTOM_FIELDS = (CustomField("size", "integer"), CustomField("club", "choice", ("north", "south")))
CUSTOM_FIELD_TYPES = {"integer": programme_pb2.CUSTOM_FIELD_TYPE_INTEGER,
                      "choice": programme_pb2.CUSTOM_FIELD_TYPE_CHOICE}
# Values an update sends (an empty one clears the field); the rules say which the field's type takes.
CUSTOM_VALUES = [("size", "42"), ("size", "-7"), ("size", ""), ("size", "07"), ("size", "4.2"), ("club", "north"),
                 ("club", "south"), ("club", ""), ("club", "east"), ("club", "North")]
# The amounts a step sends above their bound: the field the refusal names, and the bound.
ABOVE_BOUNDS = {
    "accrue": ("points", MAX_AMOUNT),
    "redeem": ("points", MAX_AMOUNT),
    "price": ("lines[0].unit_price_minor", MAX_AMOUNT),
    "quantity": ("lines[0].quantity", MAX_QUANTITY),
    "requested_points": ("requested_points", MAX_AMOUNT),
}
STEPS = [60, 599, 601, 3_600, 86_399, 86_400, 10 * 86_400, 31 * 86_400]
SPEND = ["all", "all", "fewer", "none", "more"]
# Points a basket asks for (see requested_points); half the baskets ask none.
ASKS = st.sampled_from(["none", "none", "none", "half", "all", "over"])


@st.composite
def programmes(draw: Any) -> Programme:
    return Programme(
        point_value=draw(st.sampled_from([1, 2])),
        lifetime_days=draw(st.sampled_from([0, 30])),
        activation_days=draw(st.sampled_from([0, 1])),
        order_share=draw(st.sampled_from([10_000, 5000])),
        default_cashback=draw(st.sampled_from([1000, 300])),
        categories=dict(CATEGORIES),
        discounted_items_earn=draw(st.booleans()),
        points_instead_of_discounts=draw(st.booleans()),
        refund_returns_spent=draw(st.booleans()),
        policy=draw(st.sampled_from(sorted(POLICIES))),
        debt_limit=200,
        welcome_points=draw(st.sampled_from([0, 50])),
        welcome_days=draw(st.sampled_from([None, 0, 10])),
        require_confirmation=draw(st.booleans()),
        card_secret_required=draw(st.booleans()),
        counts_when=draw(st.sampled_from(["captured", "completed"])),
        ranges=RANGES,
        ends_at=draw(st.sampled_from([None, 45])),  # days from creation; made absolute there
        levels=draw(st.sampled_from([(), LADDER])),
        event_type=EVENT_TYPE,
        custom_fields=CUSTOM_FIELDS,
        certificates_multiple=draw(st.booleans()),
    )


lines_strategy = st.lists(
    st.tuples(st.sampled_from(BASKET_CATEGORIES), st.integers(1, 3), st.integers(1, 3000), st.integers(0, 4)),
    min_size=1, max_size=3,
).map(lambda drawn: [Line(str(i + 1), c, q, u, (q * u) * d // 8) for i, (c, q, u, d) in enumerate(drawn)])


def basket_pb(lines: list[Line]) -> list[checkout_pb2.BasketLine]:
    return [checkout_pb2.BasketLine(line_id=x.line_id, sku=f"sku-{x.line_id}", category=x.category,
                                    quantity=x.quantity, unit_price_minor=x.unit_price,
                                    line_discount_minor=x.line_discount) for x in lines]


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def pricing_of(p: Any) -> tuple:
    """A Pricing message as the comparable figures."""
    return (tuple((x.line_id, x.gross_minor, x.line_discount_minor, x.order_discount_minor, x.net_minor, x.points,
                   x.points_money_minor, x.money_due_minor, x.earned_points) for x in p.lines),
            p.points_max, p.points_applied, p.discount_bps, checkout_pb2.DiscountSource.Name(p.discount_source),
            p.certificate_points, tuple((c.certificate_id, c.points) for c in p.certificates))


def priced(p: Priced) -> tuple:
    """The rules' pricing as the same figures."""
    return (tuple((x.line_id, x.gross, x.line_discount, x.order_discount, x.net, x.points, x.points_money,
                   x.money_due, x.earned) for x in p.lines),
            p.points_max, p.points_applied, p.discount_bps, f"DISCOUNT_SOURCE_{p.discount_source.upper()}",
            p.certificate_points, p.certificates)


# How long before posting an offline sale was made: at once, an hour, days, and past PostSale's 30 days.
SOLD_AGO_S = st.sampled_from([0, 3_600, 2 * 86_400, 29 * 86_400, 31 * 86_400])
# A stream's refusal carries its code as a number; the rules name it.
CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


@dataclass
class Api(Stubs):
    """Every service the model talks to over one channel."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.events = event_bonus_pb2_grpc.EventBonusServiceStub(self.channel)
        self.member_import = member_import_pb2_grpc.MemberImportServiceStub(self.channel)
        self.certificates = certificate_pb2_grpc.CertificateServiceStub(self.channel)


class ModelMachine(RuleBasedStateMachine):
    """The server (through its API) and the rules, step by step."""

    api: Api
    # A till's key (pos alone): not a trusted channel, so it may not spend naming the member by id.
    till: Api
    clock: Any
    # The server's database: the outbox is read there (no RPC gives it).
    database_url: str
    # Steps run by every machine of this test run (the invariant runs once after each), and how
    # each request came out (method and "ok" or the refusal's reason): what the run reached.
    steps_run = 0
    outcomes: Counter[str] = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.world: World = World(Programme())
        self.programme_id = ""
        self.level_ids: dict[str, str] = {}
        self.next_order = 0
        self.next_request = 0
        # What the last step may have changed: read back after it (everything at the end).
        self.touched_members: set[int] = set()
        self.touched_orders: set[str] = set()

    @property
    def now(self) -> int:
        return self.clock.now_us()

    def request_id(self, what: str) -> str:
        """A fresh idempotency key: every step is a new request (replays are tested elsewhere)."""
        self.next_request += 1
        return f"{what}-{self.programme_id}-{self.next_request}"

    def attempt(self, rules_step: Callable[[], T], call: Any, request: Any) -> tuple[T, Any] | None:
        """The rules' answer and the server's to the same request: both refuse alike (None), or
        (the rules' answer, the server's response). A refusal leaves the world as it was."""
        saved = copy.deepcopy(self.world)
        method = type(request).__name__.removesuffix("Request")
        try:
            expected = rules_step()
        except Refused as refused:
            self.world = saved
            self.outcomes[f"{method} {refused.reason}"] += 1
            try:
                call(request, timeout=10)
            except grpc.RpcError as err:
                got = (err.code().name, reason(err))
                assert got == (refused.code, refused.reason), f"refused {got} ({err.details()}), the rules: {refused}"
                return None
            raise AssertionError(f"the server accepted what the rules refuse ({refused}): {request}")
        self.outcomes[f"{method} ok"] += 1
        try:
            return expected, call(request, timeout=10)
        except grpc.RpcError as err:
            raise AssertionError(f"the server refused {err.code().name} {reason(err)} ({err.details()}) "
                                 f"what the rules accept: {request}") from None

    # -- the programme --------------------------------------------------------------------------

    @initialize(drawn=programmes())
    def create_programme(self, drawn: Programme) -> None:
        ends_at = None if drawn.ends_at is None else self.now + drawn.ends_at * US_PER_DAY
        programme = replace(drawn, ends_at=ends_at)
        settings = programme_settings(
            point_value_minor=programme.point_value, point_lifetime_days=programme.lifetime_days,
            activation_delay_days=programme.activation_days, order_pay_share_bps=programme.order_share,
            default_cashback_bps=programme.default_cashback, default_pay_share_bps=programme.default_share,
            category_rules=[programme_pb2.CategoryRule(category=c, cashback_bps=cb, pay_share_bps=share)
                            for c, (cb, share) in programme.categories.items()],
            discounted_items_earn=programme.discounted_items_earn,
            compatibility=programme_pb2.COMPATIBILITY_POINTS_INSTEAD_OF_DISCOUNTS
            if programme.points_instead_of_discounts else programme_pb2.COMPATIBILITY_POINTS_AFTER_DISCOUNTS,
            refund_returns_spent_points=programme.refund_returns_spent, hold_ttl_seconds=programme.hold_ttl_s,
            negative_balance_policy=POLICIES[programme.policy], debt_limit_points=programme.debt_limit,
            welcome_bonus_points=programme.welcome_points,
            require_confirmation=programme.require_confirmation,
            card_secret_required=programme.card_secret_required,
            certificate_redemption=programme_pb2.CERTIFICATE_REDEMPTION_MULTIPLE_ORDERS
            if programme.certificates_multiple else programme_pb2.CERTIFICATE_REDEMPTION_SINGLE_ORDER,
            purchase_counts_when=programme_pb2.PURCHASE_COUNTS_WHEN_COMPLETED
            if programme.counts_when == "completed" else programme_pb2.PURCHASE_COUNTS_WHEN_CAPTURED,
            discount_ranges=[programme_pb2.DiscountRange(customer_group=r.group, min_purchases_minor=r.from_minor,
                                                         discount_bps=r.bps) for r in programme.ranges],
            custom_fields=[programme_pb2.CustomFieldDefinition(name=f.name, type=CUSTOM_FIELD_TYPES[f.type],
                                                               choices=f.choices) for f in programme.custom_fields],
        )
        if programme.welcome_days is not None:
            settings.welcome_bonus_expiry.CopyFrom(points_pb2.Expiry(never=True) if programme.welcome_days == 0
                                                   else points_pb2.Expiry(lifetime_days=programme.welcome_days))
        if ends_at is not None:
            settings.end_time.CopyFrom(timestamp(ends_at))
        self.programme_id = self.api.programmes.CreateProgramme(programme_pb2.CreateProgrammeRequest(
            request_id=uuid.uuid4().hex, programme=settings), timeout=10).programme.programme_id
        for level in programme.levels:
            self.level_ids[level.name] = self.api.membership.CreateLevel(membership_pb2.CreateLevelRequest(
                request_id=uuid.uuid4().hex, level=self.level_pb(level)), timeout=10).level.level_id
        event = programme.event_type
        if event is not None:
            self.api.events.CreateEventType(event_bonus_pb2.CreateEventTypeRequest(
                request_id=uuid.uuid4().hex, event_type=event_bonus_pb2.EventType(
                    programme_id=self.programme_id, code=event.code, name=event.code, points=event.points,
                    expiry=points_pb2.Expiry(lifetime_days=event.lifetime_days),
                    frequency=event_bonus_pb2.EVENT_FREQUENCY_EVERY_N_DAYS, frequency_days=event.every_days)),
                timeout=10)
        self.world = World(programme)

    def level_pb(self, level: LevelRule) -> membership_pb2.Level:
        return membership_pb2.Level(
            programme_id=self.programme_id, name=level.name, priority=level.priority, customer_group=level.group,
            spend_needed_minor=level.spend, spend_period_days=level.spend_days,
            category_spend_needed=[membership_pb2.CategorySpend(category=c, spend_needed_minor=n)
                                   for c, n in level.category_spend],
            visits_needed=level.visits, visit_period_days=level.visit_days,
            privilege=membership_pb2.LEVEL_PRIVILEGE_DISCOUNT if level.privilege == "discount"
            else membership_pb2.LEVEL_PRIVILEGE_CASHBACK,
            cashback_bps=level.cashback_bps, discount_bps=level.discount_bps, pay_share_bps=level.pay_share_bps,
            category_rules=[membership_pb2.LevelCategoryRule(category=c, cashback_bps=cb, pay_share_bps=share)
                            for c, cb, share in level.categories])

    def change_ranges(self, lower: bool) -> None:
        # A change of ranges never lowers a rate a member reached (seed 002).
        ranges = LOWER_RANGES if lower else RANGES
        self.api.programmes.UpdateProgramme(programme_pb2.UpdateProgrammeRequest(
            request_id=self.request_id("ranges"), update_mask=field_mask_pb2.FieldMask(paths=["discount_ranges"]),
            programme=programme_pb2.Programme(programme_id=self.programme_id, discount_ranges=[
                programme_pb2.DiscountRange(customer_group=r.group, min_purchases_minor=r.from_minor,
                                            discount_bps=r.bps) for r in ranges])), timeout=10)
        self.world.programme.ranges = ranges
        # Prices change, stored rates do not (the quotes and the next count read them).

    # -- members ----------------------------------------------------------------------------------

    @precondition(lambda self: self.world.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), change=st.sampled_from(["status", "personal", "offboard", "erase",
                                                                       "level", "redeem", "phone", "custom",
                                                                       "custom"]), data=st.data())
    def member_changes(self, who: int, change: str, data: st.DataObject) -> None:
        # One rule for the changes a back office makes, so that the till's flow has most steps.
        if change == "status":
            self.change_status(who, data.draw(st.sampled_from(sorted(STATUSES)), label="status"))
        elif change == "personal":
            self.set_personal_discount(who, data.draw(st.sampled_from([0, 400, 1000]), label="bps"))
        elif change == "offboard" and sum(not m.offboarded for m in self.world.members) > 3:
            self.offboard(who)
        elif change == "erase" and sum(not m.offboarded for m in self.world.members) > 3:
            self.erase(who)
        elif change == "level" and self.world.programme.levels:
            self.change_level(who, data.draw(st.sampled_from([lv.name for lv in LADDER]), label="level"))
        elif change == "redeem":
            self.redeem(who, data.draw(st.integers(1, 300), label="points"))
        elif change == "phone":
            self.change_phone(who)
        elif change == "custom":
            self.set_custom_field(who, *data.draw(st.sampled_from(CUSTOM_VALUES), label="custom"))

    @precondition(lambda self: self.world.members)
    @rule(job=st.sampled_from(["review", "recalculate", "ranges", "expire_later"]), data=st.data())
    def programme_jobs(self, job: str, data: st.DataObject) -> None:
        if job == "review" and self.world.programme.levels:
            self.review_levels()
        elif job == "recalculate":
            self.recalculate_discounts()
        elif job == "ranges":
            self.change_ranges(data.draw(st.booleans(), label="lower"))
        elif job == "expire_later":
            self.expire_later_is_refused(data.draw(st.sampled_from([1, 86_400, 400 * 86_400]), label="ahead_s"))

    @precondition(lambda self: self.world.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1),
          what=st.sampled_from(sorted(ABOVE_BOUNDS) + ["order_id", "currency"]), saturated=st.booleans(),
          data=st.data())
    def refused_requests(self, who: int, what: str, saturated: bool, data: st.DataObject) -> None:
        if what == "currency":
            self.a_currency_that_is_not_the_programmes_is_refused(who, saturated)
        elif what != "order_id":
            self.an_amount_above_its_bound_is_refused(who, what, saturated)
        elif self.world.orders and len(self.world.members) > 1:
            self.a_taken_order_id_is_refused(data)

    def pick_member(self, who: int) -> int:
        index = who % len(self.world.members)
        self.touched_members.add(index)
        return index

    def member_id(self, index: int) -> str:
        return self.world.members[index].member_id

    @precondition(lambda self: len(self.world.members) < MAX_MEMBERS)
    @rule(group=st.sampled_from(["", "vip"]), confirmed=st.booleans())
    def enrol(self, group: str, confirmed: bool) -> None:
        request = member_pb2.EnrolMemberRequest(request_id=self.request_id("enrol"), programme_id=self.programme_id,
                                                generate_card_number=True, customer_group=group)
        answer = self.attempt(lambda: self.world.enrol(group, self.now), self.api.members.EnrolMember, request)
        if answer is None:
            return
        (index, welcome), resp = answer
        self.world.members[index].member_id = resp.member.member_id
        assert resp.welcome_bonus_points == welcome
        self.touched_members.add(index)
        if confirmed and self.world.members[index].status == NOT_CONFIRMED:
            # The cashier confirmed the member (by hand here: codes are tested in tests/membership).
            self.change_status(index, ACTIVE)

    @precondition(lambda self: len(self.world.members) < MAX_MEMBERS)
    @rule(status=st.sampled_from([ACTIVE, NOT_CONFIRMED, DEACTIVATED]),
          lots=st.lists(st.tuples(st.integers(1, 5_000), st.one_of(st.none(), st.integers(1, 60))), max_size=3))
    def import_member(self, status: str, lots: list[tuple[int, int | None]]) -> None:
        """A member of a previous system with opening lots, sent twice on one ImportMembers stream:
        the second row replays the first."""
        row = member_import_pb2.ImportMembersRequest(
            programme_id=self.programme_id, line=1, member=member_import_pb2.ImportedMember(
                external_id=self.request_id("import"), card_number=f"IMP{uuid.uuid4().hex[:16]}",
                status=STATUSES[status],
                lots=[member_import_pb2.ImportedLot(points=points, expire_time=None if days is None else timestamp(
                    self.now + days * US_PER_DAY)) for points, days in lots]))
        index = self.world.import_member(status, lots, self.now)
        self.outcomes["ImportMembers ok"] += 1
        first, again = self.api.member_import.ImportMembers(iter([row, row]), timeout=30)
        assert (first.WhichOneof("outcome"), again.WhichOneof("outcome")) == ("imported", "imported"), (first, again)
        assert (again.imported.member_id, again.imported.replayed) == (first.imported.member_id, True)
        self.world.members[index].member_id = first.imported.member_id
        self.touched_members.add(index)

    def change_status(self, who: int, status: str) -> None:
        # Between any two steps, so between a checkout and its capture too.
        index = self.pick_member(who)
        self.attempt(lambda: self.world.change_status(index, status, self.now), self.api.membership.ChangeMemberStatus,
                     membership_pb2.ChangeMemberStatusRequest(
                         request_id=self.request_id("status"), programme_id=self.programme_id,
                         member_id=self.member_id(index), status=STATUSES[status], comment="model"))

    def set_personal_discount(self, who: int, bps: int) -> None:
        index = self.pick_member(who)
        self.attempt(lambda: self.world.set_personal_discount(index, bps, self.now), self.api.membership.SetPersonalDiscount,
                     membership_pb2.SetPersonalDiscountRequest(
                         request_id=self.request_id("personal"), programme_id=self.programme_id,
                         member_id=self.member_id(index), discount_bps=bps, comment="model"))

    def offboard(self, who: int) -> None:
        index = self.pick_member(who)
        self.touched_orders.update(o for o, order in self.world.orders.items() if order.member == index)
        self.attempt(lambda: self.world.offboard(index, self.now), self.api.members.OffboardMember,
                     member_pb2.OffboardMemberRequest(request_id=self.request_id("offboard"),
                                                      programme_id=self.programme_id,
                                                      member_id=self.member_id(index), comment="model"))

    def erase(self, who: int) -> None:
        # Erasure keeps every amount (the balances, totals and histories are compared after it).
        index = self.pick_member(who)
        answer = self.attempt(lambda: self.world.erase(index, self.now), self.api.members.EraseMember,
                              member_pb2.EraseMemberRequest(request_id=self.request_id("erase"),
                                                            programme_id=self.programme_id,
                                                            member_id=self.member_id(index)))
        if answer is not None:
            assert (answer[1].member.phone, answer[1].member.card_number) == ("", "")

    def change_phone(self, who: int) -> None:
        # The member_edit right; the invariant checks that no points moved.
        index = self.pick_member(who)
        self.next_request += 1
        phone = f"+1999{self.next_request:07d}"  # unique within the programme
        answer = self.attempt(lambda: self.world.change_phone(index), self.api.members.ChangeMemberPhone,
                              member_pb2.ChangeMemberPhoneRequest(
                                  request_id=self.request_id("phone"), programme_id=self.programme_id,
                                  member_id=self.member_id(index), phone=phone, comment="model"))
        if answer is not None:
            assert (answer[1].member.phone, answer[1].member.phone_confirmed) == (phone, False)

    def set_custom_field(self, who: int, name: str, value: str) -> None:
        index = self.pick_member(who)
        answer = self.attempt(lambda: self.world.set_custom_field(index, name, value),
                              self.api.members.UpdateMemberCustomFields, member_pb2.UpdateMemberCustomFieldsRequest(
                                  request_id=self.request_id("custom"), programme_id=self.programme_id,
                                  member_id=self.member_id(index),
                                  custom_fields=[member_pb2.CustomFieldValue(name=name, value=value)],
                                  update_mask=field_mask_pb2.FieldMask(paths=[name])))
        if answer is not None:
            assert {v.name: v.value for v in answer[1].member.custom_fields} == answer[0]

    def change_level(self, who: int, level: str) -> None:
        index = self.pick_member(who)
        self.attempt(lambda: self.world.change_level(index, level, self.now), self.api.membership.ChangeMemberLevel,
                     membership_pb2.ChangeMemberLevelRequest(
                         request_id=self.request_id("level"), programme_id=self.programme_id,
                         member_id=self.member_id(index), level_id=self.level_ids[level], comment="model"))

    def review_levels(self) -> None:
        run = self.api.membership.RunLevelReview(membership_pb2.RunLevelReviewRequest(
            programme_id=self.programme_id), timeout=30)
        assert run.members_dropped == self.world.review_levels(self.now)
        self.touched_members.update(range(len(self.world.members)))

    def recalculate_discounts(self) -> None:
        run = self.api.membership.RecalculateDiscounts(membership_pb2.RecalculateDiscountsRequest(
            programme_id=self.programme_id), timeout=30)
        assert run.members_changed == self.world.recalculate()
        self.touched_members.update(range(len(self.world.members)))

    # -- points outside orders ----------------------------------------------------------------------

    @precondition(lambda self: self.world.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), points=st.integers(1, 500), days=st.sampled_from([None, 0, 5]))
    def accrue(self, who: int, points: int, days: int | None) -> None:
        index = self.pick_member(who)
        expiry = None if days is None else points_pb2.Expiry(never=True) if days == 0 else \
            points_pb2.Expiry(lifetime_days=days)
        answer = self.attempt(lambda: self.world.accrue(index, points, days, self.now), self.api.points.AccruePoints,
                              points_pb2.AccruePointsRequest(
                                  request_id=self.request_id("accrue"), programme_id=self.programme_id,
                                  member_id=self.member_id(index), points=points, expiry=expiry))
        if answer is not None:
            movement = answer[1].movement
            assert (movement.kind, movement.points) == (points_pb2.MOVEMENT_KIND_MANUAL_ACCRUAL, points)

    @precondition(lambda self: self.world.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), occurrence=st.sampled_from("0123"))
    def record_event(self, who: int, occurrence: str) -> None:
        index = self.pick_member(who)
        answer = self.attempt(lambda: self.world.record_event(index, occurrence, self.now), self.api.events.RecordEvent,
                              event_bonus_pb2.RecordEventRequest(
                                  request_id=self.request_id("event"), programme_id=self.programme_id,
                                  member_id=self.member_id(index), event_code=EVENT_TYPE.code,
                                  occurrence_key=occurrence))
        if answer is not None:
            already, resp = answer
            assert resp.already_granted == already
            assert (resp.movement.kind, resp.movement.points) == (points_pb2.MOVEMENT_KIND_EVENT_BONUS,
                                                                  EVENT_TYPE.points)

    def redeem(self, who: int, points: int) -> None:
        index = self.pick_member(who)
        self.attempt(lambda: self.world.redeem(index, points, self.now), self.api.points.RedeemPoints,
                     points_pb2.RedeemPointsRequest(request_id=self.request_id("redeem"), programme_id=self.programme_id,
                                                    member_id=self.member_id(index), points=points))

    # -- certificates (docs/certificates.md) ---------------------------------------------------------

    def certificate_pairs(self) -> list[tuple[int, int]]:
        return [(owner, i) for owner, m in enumerate(self.world.members) for i in range(len(m.certificates))]

    @precondition(lambda self: self.world.members)
    @rule(value=st.sampled_from([20, 150, 400]),
          term=st.sampled_from([None, ("days", 1), ("days", 5), ("days", 40), ("months", 1), ("months", 13)]),
          cancel=st.integers(0, 3), data=st.data())
    def certificates(self, value: int, term: tuple[str, int] | None, cancel: int, data: st.DataObject) -> None:
        """Issue a certificate to one or two members, or (a quarter of the time) cancel one or two."""
        pairs = self.certificate_pairs()
        picks = data.draw(st.lists(st.integers(0, 63), min_size=1, max_size=2), label="which")
        if cancel == 0 and pairs:
            chosen = list(dict.fromkeys(pairs[i % len(pairs)] for i in picks))
            self.touched_members.update(owner for owner, _ in chosen)
            request = certificate_pb2.CancelCertificatesRequest(
                request_id=self.request_id("cancel_certificates"), programme_id=self.programme_id, reason="model",
                certificates=[certificate_pb2.CertificateRef(
                    member_id=self.member_id(owner),
                    certificate_id=self.world.members[owner].certificates[i].certificate_id) for owner, i in chosen])
            answer = self.attempt(lambda: self.world.cancel_certificates(chosen),
                                  self.api.certificates.CancelCertificates, request)
            if answer is not None:
                assert {c.state for c in answer[1].certificates} == {certificate_pb2.CERTIFICATE_STATE_CANCELLED}
            return
        indexes = list(dict.fromkeys(i % len(self.world.members) for i in picks))
        self.touched_members.update(indexes)
        expiry = certificate_pb2.CertificateExpiry(never=True) if term is None else \
            certificate_pb2.CertificateExpiry(**{term[0]: term[1]})
        request = certificate_pb2.IssueCertificatesRequest(
            request_id=self.request_id("issue"), programme_id=self.programme_id, value_points=value, expiry=expiry,
            member_ids=[self.member_id(i) for i in indexes])
        answer = self.attempt(lambda: self.world.issue_certificates(indexes, value, term, self.now),
                              self.api.certificates.IssueCertificates, request)
        if answer is None:
            return
        made, resp = answer
        for c, got in zip(made, resp.certificates, strict=True):
            c.certificate_id, c.code = got.certificate.certificate_id, got.code
            assert (got.certificate.value_points, got.certificate.multiple_orders,
                    got.certificate.expire_time.ToMicroseconds() if got.certificate.HasField("expire_time")
                    else None) == (c.value, c.multiple, c.expires_at)

    def presented(self, index: int, data: st.DataObject) -> tuple[tuple[int, int], ...]:
        """Certificates a basket presents, as (member, certificate) indexes: a third of the time none,
        else one or two of the member's usable ones, now and then ones in any state or another member's."""
        # The same draws whatever the world holds (what is usable depends on the clock, which goes on
        # from one sequence to the next): hypothesis refuses a strategy whose shape depends on it.
        which = data.draw(st.integers(0, 4), label="which")
        present = data.draw(st.integers(0, 2), label="present")
        picks = data.draw(st.lists(st.integers(0, 63), min_size=1, max_size=2), label="presented")
        owned = [(owner, i) for owner, i in self.certificate_pairs() if owner == index]
        usable = [(owner, i) for owner, i in owned if self.world.members[owner].certificates[i].usable(self.now)]
        pool = {0: self.certificate_pairs(), 1: owned}.get(which, usable)
        if not pool or present == 0:
            return ()
        return tuple(dict.fromkeys(pool[i % len(pool)] for i in picks))

    def codes(self, presented: tuple[tuple[int, int], ...]) -> list[str]:
        return [self.world.members[owner].certificates[i].code for owner, i in presented]

    # -- the till's flow ----------------------------------------------------------------------------

    def requested_points(self, index: int, lines: list[Line], ask: str) -> int:
        """Points to ask for: none, half or all of what the order may take, or one more."""
        if ask == "none":
            return 0
        try:
            most = self.world.quote(index, lines, MAX_AMOUNT, self.now)[0].points_max
        except Refused:
            most = 10
        return {"half": max(1, most // 2), "all": max(1, most), "over": most + 1}[ask]

    @precondition(lambda self: self.world.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), lines=lines_strategy,
          ask=ASKS, data=st.data())
    def quote(self, who: int, lines: list[Line], ask: str, data: st.DataObject) -> None:
        index = self.pick_member(who)
        requested = self.requested_points(index, lines, ask)
        shown = self.presented(index, data)
        answer = self.attempt(lambda: self.world.quote(index, lines, requested, self.now, presented=shown),
                              self.api.checkout.Quote,
                              checkout_pb2.QuoteRequest(programme_id=self.programme_id, lines=basket_pb(lines),
                                                        member=common_pb2.MemberRef(member_id=self.member_id(index)),
                                                        requested_points=requested,
                                                        certificate_codes=self.codes(shown)))
        if answer is not None:
            (want, terms, rights, available), resp = answer
            assert pricing_of(resp.pricing) == priced(want)
            blocked = points_blocked(self.world.members[index], rights, available, want, terms)
            assert checkout_pb2.PointsBlocked.Name(resp.points_blocked) == f"POINTS_BLOCKED_{blocked.upper()}" \
                if blocked else resp.points_blocked == checkout_pb2.POINTS_BLOCKED_UNSPECIFIED

    @precondition(lambda self: self.world.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), lines=lines_strategy, ask=ASKS, at_till=st.booleans(),
          data=st.data())
    def checkout(self, who: int, lines: list[Line], ask: str, at_till: bool, data: st.DataObject) -> None:
        index = self.pick_member(who)
        order_id = f"o{self.next_order}"
        self.next_order += 1
        requested = self.requested_points(index, lines, ask)
        self.checkout_as(index, order_id, lines, requested, at_till, self.presented(index, data))

    @precondition(lambda self: self.world.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), lines=lines_strategy,
          ask=ASKS, spend=st.sampled_from(SPEND),
          then=st.sampled_from(["refund", "refund", "complete", "void", "nothing"]), data=st.data())
    def sale(self, who: int, lines: list[Line], ask: str, spend: str, then: str, data: st.DataObject) -> None:
        # The till's whole flow in one step (checkout, capture, then a refund, completion or void),
        # so that most steps reach paid orders; the other rules interleave with them.
        index = self.pick_member(who)
        order_id = f"o{self.next_order}"
        self.next_order += 1
        self.checkout_as(index, order_id, lines, self.requested_points(index, lines, ask),
                         presented=self.presented(index, data))
        if order_id not in self.world.orders:
            return
        self.capture_order(order_id, spend)
        {"refund": lambda: self.refund_order(order_id, data), "complete": lambda: self.complete_order(order_id),
         "void": lambda: self.void_order(order_id), "nothing": lambda: None}[then]()

    def checkout_as(self, index: int, order_id: str, lines: list[Line], requested: int,
                    at_till: bool = False, presented: tuple[tuple[int, int], ...] = ()) -> None:
        """A checkout from a trusted channel, or from a till naming the member by id, presenting
        ``presented`` certificates."""
        request = checkout_pb2.CheckoutRequest(
            request_id=self.request_id("checkout"), programme_id=self.programme_id, order_id=order_id,
            member=common_pb2.MemberRef(member_id=self.member_id(index)), lines=basket_pb(lines),
            requested_points=requested, certificate_codes=self.codes(presented))
        answer = self.attempt(lambda: self.world.checkout(index, order_id, lines, requested, self.now, not at_till,
                                                          presented=presented),
                              (self.till if at_till else self.api).checkout.Checkout, request)
        if answer is None:
            return
        order, resp = answer
        if order.pricing.certificate_points:
            # What the run reached: orders that certificates paid.
            self.outcomes["Checkout paid by certificates"] += 1
        assert resp.order.state == checkout_pb2.ORDER_STATE_HELD
        assert pricing_of(resp.order.pricing) == priced(order.pricing)
        if order.hold is not None:
            assert (resp.order.hold.points, resp.order.hold.expire_time.ToMicroseconds()) == (
                order.hold.points, order.hold.expires_at)
        else:
            assert not resp.order.HasField("hold")
        self.touched_orders.add(order_id)

    @precondition(lambda self: self.world.members)
    @rule(who=st.integers(0, MAX_MEMBERS - 1), lines=lines_strategy, ask=ASKS, at_till=st.booleans(),
          sold_ago_s=SOLD_AGO_S)
    def post_sale(self, who: int, lines: list[Line], ask: str, at_till: bool, sold_ago_s: int) -> None:
        """A sale an offline till made ``sold_ago_s`` ago, posted now."""
        request, step = self.offline_sale(who, lines, ask, at_till, sold_ago_s)
        answer = self.attempt(step, (self.till if at_till else self.api).checkout.PostSale, request)
        if answer is not None:
            self.check_posted(request, *answer)

    @precondition(lambda self: self.world.members)
    @rule(sales=st.lists(st.tuples(st.integers(0, MAX_MEMBERS - 1), lines_strategy, ASKS, SOLD_AGO_S),
                         min_size=1, max_size=4), at_till=st.booleans())
    def post_sales(self, sales: list[tuple[int, list[Line], str, int]], at_till: bool) -> None:
        """A till's backlog on one PostSales stream: each sale as PostSale would post it, in the
        order sent, a refused one answered in its place while the others go on."""
        requests, wanted = [], []
        for who, lines, ask, sold_ago_s in sales:
            request, step = self.offline_sale(who, lines, ask, at_till, sold_ago_s)
            saved = copy.deepcopy(self.world)
            try:
                wanted.append(step())
                self.outcomes["PostSales ok"] += 1
            except Refused as refused:
                self.world = saved
                self.outcomes[f"PostSales {refused.reason}"] += 1
                wanted.append(refused)
            requests.append(request)
        answers = list((self.till if at_till else self.api).checkout.PostSales(
            iter([checkout_pb2.PostSalesRequest(sale=r) for r in requests]), timeout=30))
        assert [a.index for a in answers] == list(range(len(requests)))
        for request, want, got in zip(requests, wanted, answers, strict=True):
            if isinstance(want, Refused):
                assert got.WhichOneof("outcome") == "refusal", f"the server posted what the rules refuse ({want})"
                assert (CODE_NAMES[got.refusal.code], got.refusal.reason) == (want.code, want.reason), got.refusal
            else:
                assert got.WhichOneof("outcome") == "posted", f"the server refused {got.refusal} what the rules accept"
                self.check_posted(request, want, got.posted)

    def offline_sale(self, who: int, lines: list[Line], ask: str, at_till: bool,
                     sold_ago_s: int) -> tuple[checkout_pb2.PostSaleRequest, Callable[[], Any]]:
        """A posted sale's request, and the rules' step for it."""
        index = self.pick_member(who)
        order_id = f"o{self.next_order}"
        self.next_order += 1
        requested = self.requested_points(index, lines, ask)
        sold_at = self.now - sold_ago_s * 1_000_000
        request = checkout_pb2.PostSaleRequest(
            request_id=self.request_id("post_sale"), programme_id=self.programme_id, order_id=order_id,
            member=common_pb2.MemberRef(member_id=self.member_id(index)), lines=basket_pb(lines),
            requested_points=requested)
        request.sale_time.FromMicroseconds(sold_at)
        return request, lambda: self.world.post_sale(index, order_id, lines, requested, self.now, sold_at, not at_till)

    def check_posted(self, request: checkout_pb2.PostSaleRequest, captured: Any, resp: Any) -> None:
        assert resp.order.state == checkout_pb2.ORDER_STATE_CAPTURED
        assert resp.order.capture_time.ToMicroseconds() == request.sale_time.ToMicroseconds()
        assert (resp.spent_points, resp.earned_points) == (captured.spent, captured.earned)
        assert pricing_of(resp.order.pricing) == priced(captured.pricing)
        self.touched_orders.add(request.order_id)

    def pick_order(self, data: st.DataObject, *states: str) -> str:
        """An order, mostly one in ``states`` (the others get the refusals)."""
        fitting = sorted(o for o, order in self.world.orders.items() if order.state in states)
        anyone = not fitting or data.draw(st.integers(0, 4), label="any state") == 0
        order_id = data.draw(st.sampled_from(sorted(self.world.orders) if anyone else fitting), label="order")
        self.touched_orders.add(order_id)
        self.touched_members.add(self.world.orders[order_id].member)
        return order_id

    @precondition(lambda self: self.world.orders)
    @rule(data=st.data(), spend=st.sampled_from(SPEND))
    def capture(self, data: st.DataObject, spend: str) -> None:
        self.capture_order(self.pick_order(data, "held"), spend)

    def capture_order(self, order_id: str, spend: str) -> None:
        order = self.world.orders[order_id]
        held = order.hold.points if order.hold else 0
        points = {"all": None, "fewer": held // 2, "none": 0, "more": held + 1}[spend]
        request = checkout_pb2.CaptureRequest(request_id=self.request_id("capture"), programme_id=self.programme_id,
                                              order_id=order_id, points=points)
        answer = self.attempt(lambda: self.world.capture(order_id, points, self.now), self.api.checkout.Capture,
                              request)
        if answer is not None:
            captured, resp = answer
            assert (resp.spent_points, resp.earned_points) == (captured.spent, captured.earned)
            assert pricing_of(resp.order.pricing) == priced(captured.pricing)

    @precondition(lambda self: self.world.orders)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order_id = self.pick_order(data, "held")
        answer = self.attempt(lambda: self.world.cancel(order_id, self.now), self.api.checkout.Cancel,
                              checkout_pb2.CancelRequest(request_id=self.request_id("cancel"),
                                                         programme_id=self.programme_id, order_id=order_id))
        if answer is not None:
            assert answer[1].released_points == answer[0]

    @precondition(lambda self: self.world.orders)
    @rule(data=st.data())
    def refund(self, data: st.DataObject) -> None:
        self.refund_order(self.pick_order(data, "captured", "completed"), data)

    def refund_order(self, order_id: str, data: st.DataObject) -> None:
        order = self.world.orders[order_id]
        asked = None
        if not data.draw(st.booleans(), label="whole"):
            # Some lines, some of their units left; now and then a unit more than is left, or a line
            # the order does not have (the refusals).
            ids = [x.line_id for x in order.lines]
            chosen = data.draw(st.lists(st.sampled_from(ids + ["9"] if data.draw(st.integers(0, 9), label="odd") == 0
                                                        else ids), min_size=1, max_size=3, unique=True), label="lines")
            units = {x.line_id: x.quantity - order.refunded.get(x.line_id, 0) for x in order.lines}
            asked = [(line, data.draw(st.integers(1, max(1, units.get(line, 1))) | st.just(units.get(line, 0) + 1),
                                      label="units")) for line in chosen]
        request = checkout_pb2.RefundRequest(
            request_id=self.request_id("refund"), programme_id=self.programme_id, order_id=order_id,
            lines=[checkout_pb2.RefundLine(line_id=line, quantity=k) for line, k in asked or []])
        answer = self.attempt(lambda: self.world.refund(order_id, asked, self.now), self.api.checkout.Refund, request)
        if answer is not None:
            expected, resp = answer
            got = resp.refund
            assert (got.money_minor, got.clawback_points, got.returned_points, got.shortfall_points,
                    got.debt_points, got.certificate_returned_points) == (
                expected.money, expected.clawback, expected.returned, expected.shortfall, expected.debt,
                expected.certificate_returned)
            assert [(x.line_id, x.quantity) for x in got.lines] == list(expected.lines)
            if expected.certificate_returned:
                self.outcomes["Refund returned to certificates"] += 1

    @precondition(lambda self: self.world.orders)
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        self.complete_order(self.pick_order(data, "captured"))

    def complete_order(self, order_id: str) -> None:
        self.attempt(lambda: self.world.complete(order_id, self.now), self.api.checkout.CompleteOrder,
                     checkout_pb2.CompleteOrderRequest(request_id=self.request_id("complete"),
                                                       programme_id=self.programme_id, order_id=order_id))

    @precondition(lambda self: self.world.orders)
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        self.void_order(self.pick_order(data, "captured", "completed"))

    def void_order(self, order_id: str) -> None:
        answer = self.attempt(lambda: self.world.void(order_id, self.now), self.api.checkout.VoidOrder,
                              checkout_pb2.VoidOrderRequest(request_id=self.request_id("void"),
                                                            programme_id=self.programme_id, order_id=order_id))
        if answer is not None:
            assert answer[1].uncounted_minor == answer[0]

    def a_taken_order_id_is_refused(self, data: st.DataObject) -> None:
        # An order id is the programme's, whoever checks it out: another member's checkout of it is
        # ALREADY_EXISTS (concurrently too: tests/grpc/test_order_id_race.py) and changes nothing.
        order_id = self.pick_order(data)
        assert order_id is not None
        other = next(i for i in range(len(self.world.members)) if i != self.world.orders[order_id].member)
        self.checkout_as(other, order_id, [Line("1", "bar", 1, 100)], 0)

    # -- jobs, bounds, time ---------------------------------------------------------------------------

    @precondition(lambda self: self.world.members)
    @rule()
    def expire(self) -> None:
        self.touched_members.update(range(len(self.world.members)))
        self.touched_orders.update(self.world.orders)
        run = self.api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=self.programme_id), timeout=30)
        expected = self.world.expire(self.now)
        assert (run.holds_released, run.points_released, run.lots_expired, run.points_expired,
                run.certificates_expired, run.certificate_points_expired, run.certificate_holds_released) == (
            expected.holds_released, expected.points_released, expected.lots_expired, expected.points_expired,
            expected.certificates_expired, expected.certificate_points_expired, expected.certificate_holds_released)

    def expire_later_is_refused(self, ahead_s: int) -> None:
        # An expiry never acts on a time later than now: refused, and nothing changes.
        try:
            self.api.points.RunExpiry(points_pb2.RunExpiryRequest(
                programme_id=self.programme_id, as_of_time=timestamp(self.now + ahead_s * US_PER_S)), timeout=30)
        except grpc.RpcError as err:
            assert (err.code(), reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
        else:
            raise AssertionError("RunExpiry acted on a time later than now")

    def a_currency_that_is_not_the_programmes_is_refused(self, who: int, new_programme: bool) -> None:
        # ISO 4217 only (ZZZ is none), and a basket in another currency than the programme's.
        if new_programme:
            request: Any = programme_pb2.CreateProgrammeRequest(
                request_id=self.request_id("programme"), programme=programme_settings(currency_code="ZZZ"))
            call, want = self.api.programmes.CreateProgramme, "value_out_of_range"
        else:
            request = checkout_pb2.QuoteRequest(
                programme_id=self.programme_id, lines=basket_pb([Line("1", "bar", 1, 100)]), currency_code="USD",
                member=common_pb2.MemberRef(member_id=self.member_id(self.pick_member(who))))
            call, want = self.api.checkout.Quote, "currency_mismatch"
        try:
            call(request, timeout=10)
        except grpc.RpcError as err:
            assert (err.code(), reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, want)
        else:
            raise AssertionError(f"{type(request).__name__} in a currency not the programme's was not refused")

    def an_amount_above_its_bound_is_refused(self, who: int, what: str, saturated: bool) -> None:
        # Every amount has a bound (docs/ledger.md "Bounds"); one above it, or int64's largest value
        # (a JavaScript 1e19), is refused on its field and changes nothing.
        member_id = self.member_id(self.pick_member(who))
        field, bound = ABOVE_BOUNDS[what]
        over = INT64_MAX if saturated else bound + 1
        if what in ("accrue", "redeem"):
            call = self.api.points.AccruePoints if what == "accrue" else self.api.points.RedeemPoints
            message = points_pb2.AccruePointsRequest if what == "accrue" else points_pb2.RedeemPointsRequest
            request = message(request_id=self.request_id(what), programme_id=self.programme_id,
                              member_id=member_id, points=over)
        else:
            call = self.api.checkout.Checkout
            line = checkout_pb2.BasketLine(line_id="1", sku="sku", category="bar", quantity=1,
                                           unit_price_minor=over if what == "price" else 100)
            if what == "quantity":
                line.quantity = over
            request = checkout_pb2.CheckoutRequest(
                request_id=self.request_id("checkout"), programme_id=self.programme_id,
                order_id=f"refused-{self.next_request}", member=common_pb2.MemberRef(member_id=member_id),
                lines=[line], requested_points=over if what == "requested_points" else 0)
        try:
            call(request, timeout=10)
        except grpc.RpcError as err:
            assert (err.code(), reason(err)) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
            assert field in err.details()
        else:
            raise AssertionError(f"{what} of {over} was not refused")

    @rule(step=st.sampled_from(STEPS))
    def time_passes(self, step: int) -> None:
        # What time changes (active, pending, burning) is read when a step next touches the member,
        # and for every member at the end.
        self.clock.advance(seconds=step)

    # -- after every step: the server agrees with the rules ----------------------------------------

    @invariant()
    def what_the_step_touched_agrees(self) -> None:
        ModelMachine.steps_run += 1
        if ModelMachine.steps_run % 1000 == 0:
            print(f"model-based test: {ModelMachine.steps_run} steps", flush=True)
        self.members_agree(sorted(self.touched_members))
        self.orders_agree(sorted(self.touched_orders))
        self.touched_members.clear()
        self.touched_orders.clear()

    def members_agree(self, indexes: list[int]) -> None:
        now = self.now
        for index in indexes:
            member_id = self.member_id(index)
            expected = self.world.balance(index, now)
            # The card and the balance in one call, as a till reads them.
            looked_up = self.api.members.LookupMember(member_pb2.LookupMemberRequest(
                programme_id=self.programme_id, member=common_pb2.MemberRef(member_id=member_id)), timeout=10)
            got, card = looked_up.balance, looked_up.member
            assert (got.active_points, got.pending_points, got.held_points, got.debt_points) == (
                expected["active"], expected["pending"], expected["held"], expected["debt"]), f"member {index}"
            assert [(b.expire_time.ToMicroseconds(), b.points) for b in got.burn_outs] == expected["burn_outs"]
            assert got.burning_points == sum(p for _, p in expected["burn_outs"])
            assert (got.earned_total_points, got.spent_total_points, got.expired_total_points) == expected["totals"]
            want = self.world.card(index, now)
            assert (member_pb2.MemberStatus.Name(card.status), card.HasField("offboard_time"),
                    card.purchases_total_minor, card.accumulative_discount_bps, card.personal_discount_bps) == (
                f"MEMBER_STATUS_{want.status.upper()}", want.offboarded, want.purchases_total, want.accumulative_bps,
                want.personal_bps), f"member {index}"
            assert (card.level_name, card.next_level_name, card.next_level_spend_needed_minor,
                    tuple((c.category, c.spend_needed_minor) for c in card.next_level_category_spend_needed),
                    card.next_level_visits_needed) == (
                want.level, want.next_level, want.spend_needed, want.category_needed, want.visits_needed), \
                f"member {index}"
            # The participation card shows the same figures, and the member's custom values.
            whole = self.api.members.GetMember(member_pb2.GetMemberRequest(
                programme_id=self.programme_id, member_id=member_id), timeout=10)
            assert (whole.balance.active_points, whole.balance.pending_points, whole.balance.held_points,
                    whole.balance.burning_points) == (got.active_points, got.pending_points, got.held_points,
                                                      got.burning_points), f"member {index}"
            assert {v.name: v.value for v in whole.member.custom_fields} == self.world.members[index].custom
            self.certificates_agree(index)

    def certificates_agree(self, index: int) -> None:
        """The member's certificates as ListCertificates gives them: state, what is left and held."""
        listed = self.api.certificates.ListCertificates(certificate_pb2.ListCertificatesRequest(
            programme_id=self.programme_id, member_id=self.member_id(index), page_size=500), timeout=10)
        got = {c.certificate_id: (certificate_pb2.CertificateState.Name(c.state), c.remaining_points, c.held_points,
                                  c.held_order_id) for c in listed.certificates}
        assert got == {c.certificate_id: (f"CERTIFICATE_STATE_{c.state.upper()}", c.remaining + c.held, c.held,
                                          c.held_order) for c in self.world.members[index].certificates}, \
            f"member {index}: certificates"

    def histories_agree(self, indexes: list[int]) -> None:
        """The forecast and both histories (append-only, so read once at the end: any step's
        disagreement is still there)."""
        now = self.now
        for index in indexes:
            member_id = self.member_id(index)
            expected = self.world.balance(index, now)
            forecast = self.api.members.GetPointsForecast(member_pb2.GetPointsForecastRequest(
                programme_id=self.programme_id, member_id=member_id, page_size=500), timeout=10)
            assert [(b.expire_time.ToMicroseconds(), b.points) for b in forecast.burn_outs] == \
                expected["every_burn_out"]
            assert sorted((p.activate_time.ToMicroseconds(), p.points) for p in forecast.pending_activations) == \
                expected["pending_activations"]
            history = self.api.points.ListPointsHistory(points_pb2.ListPointsHistoryRequest(
                programme_id=self.programme_id, member_id=member_id, page_size=500), timeout=10).movements
            # Movements of one moment are compared as a set: the expiry run releases stale holds of
            # the same moment in hold-id (random) order.
            got_moves = by_moment([(m.create_time.ToMicroseconds(),
                                    points_pb2.MovementKind.Name(m.kind).removeprefix("MOVEMENT_KIND_"), m.points)
                                   for m in reversed(history)])
            want_moves = by_moment(self.world.members[index].history)
            assert got_moves == want_moves, f"member {index}: history {got_moves}, the rules: {want_moves}"
            events = self.api.membership.ListMemberHistory(membership_pb2.ListMemberHistoryRequest(
                programme_id=self.programme_id, member_id=member_id, page_size=500), timeout=10).events
            got_events = by_moment([(e.create_time.ToMicroseconds(), *event_of(e)) for e in reversed(events)
                                    if e.kind in EVENT_SUBJECTS])
            want_events = by_moment([(at, *rest) for at, *rest in self.world.members[index].events])
            assert got_events == want_events, f"member {index}: events {got_events}, the rules: {want_events}"
            # The outbox: every movement has its points event, same kind and points, in the member's
            # order (docs/events.md).
            assert by_moment(self.points_events(member_id)) == want_moves, f"member {index}: outbox"
            self.card_tabs_agree(index, want_moves)
        self.found_by_custom_values()

    def points_events(self, member_id: str) -> list[tuple[int, str, int]]:
        """(time, movement kind, points) of the member's points events, by sequence number."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT (extract(epoch FROM created_at) * 1000000)::bigint, payload->>'movement_kind',"
                " (payload->>'points')::bigint FROM outbox_event WHERE member_id = %s AND type LIKE 'points.%%'"
                " AND type <> 'points.expiring_soon' ORDER BY seq", (member_id,)).fetchall()
        return [(at, kind.upper(), points) for at, kind, points in rows]

    def card_tabs_agree(self, index: int, want_moves: list[tuple[int, list[tuple[Any, ...]]]]) -> None:
        """The card's points tab holds the member's movements; its orders tab each order with the
        rules' state and refund state."""
        def tab(which: int) -> list[membership_pb2.HistoryEvent]:
            return list(self.api.membership.ListMemberHistory(membership_pb2.ListMemberHistoryRequest(
                programme_id=self.programme_id, member_id=self.member_id(index), tab=which, page_size=500),
                timeout=10).events)

        points_tab = by_moment([(e.create_time.ToMicroseconds(), e.kind.removeprefix("points_").upper(),
                                 int(e.details["points"])) for e in reversed(tab(membership_pb2.HISTORY_TAB_POINTS))])
        assert points_tab == want_moves, f"member {index}: points tab"
        assert {e.details["order_id"]: (e.details["state"], e.details["refund"])
                for e in tab(membership_pb2.HISTORY_TAB_ORDERS) if e.kind == "order"} == {
            order_id: (order.state, order.refund_state())
            for order_id, order in self.world.orders.items() if order.member == index}, f"member {index}: orders tab"

    def found_by_custom_values(self) -> None:
        """ListMembers finds by each value exactly the members that hold it."""
        held = {(name, value) for m in self.world.members for name, value in m.custom.items()}
        for name, value in sorted(held):
            found = self.api.members.ListMembers(member_pb2.ListMembersRequest(
                programme_id=self.programme_id, page_size=500,
                custom_field=member_pb2.CustomFieldValue(name=name, value=value)), timeout=10).members
            assert sorted(m.member_id for m in found) == sorted(
                m.member_id for m in self.world.members if m.custom.get(name) == value), (name, value)

    def orders_agree(self, order_ids: list[str]) -> None:
        for order_id in order_ids:
            order = self.world.orders[order_id]
            got = self.api.checkout.GetOrder(checkout_pb2.GetOrderRequest(
                programme_id=self.programme_id, order_id=order_id), timeout=10).order
            assert checkout_pb2.OrderState.Name(got.state) == f"ORDER_STATE_{order.state.upper()}", order_id
            assert pricing_of(got.pricing) == priced(order.pricing), order_id
            if order.hold is not None:
                assert got.hold.points == (order.spent or order.hold.points), order_id
            # Refunds of one moment (the test's clock stands still between steps) in any order.
            assert by_moment([(r.create_time.ToMicroseconds(), r.money_minor, r.clawback_points, r.returned_points,
                               r.shortfall_points, r.debt_points, r.certificate_returned_points)
                              for r in got.refunds]) == by_moment(
                [(r.at, r.money, r.clawback, r.returned, r.shortfall, r.debt, r.certificate_returned)
                 for r in order.refunds]), order_id

    def teardown(self) -> None:
        if not self.programme_id:
            return
        self.members_agree(list(range(len(self.world.members))))
        self.histories_agree(list(range(len(self.world.members))))
        self.orders_agree(sorted(self.world.orders))
        if self.world.members:
            assert_ledger_clean(self.api, self.programme_id)


# The member history's kinds the rules record, with the details that say which and how much.
EVENT_SUBJECTS: dict[str, tuple[str | None, str | None]] = {
    "purchase_counted": ("order_id", "amount_minor"), "purchase_reduced": ("order_id", "amount_minor"),
    "purchase_uncounted": ("order_id", "amount_minor"), "order_voided": ("order_id", "uncounted_minor"),
    "level_assigned": ("level_name", "reason"), "status_changed": ("from", "to"),
    "personal_discount_set": ("from", "to"), "offboarded": (None, None), "erased": (None, None),
}


def event_of(e: Any) -> tuple[str, str, str]:
    subject, detail = EVENT_SUBJECTS[e.kind]
    return e.kind, e.details[subject] if subject else "", e.details[detail] if detail else ""


def by_moment(entries: list[tuple[Any, ...]]) -> list[tuple[int, list[tuple[Any, ...]]]]:
    """Entries (time first) as [(time, the rest of each entry at that time, sorted)], oldest first:
    what one moment records has no order the rules care about."""
    moments: dict[int, list[tuple[Any, ...]]] = {}
    for at, *rest in entries:
        moments.setdefault(at, []).append(tuple(rest))
    return [(at, sorted(moves)) for at, moves in sorted(moments.items())]

