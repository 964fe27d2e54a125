"""The issue's scenarios over gRPC, in docs/spec.md's words: statuses, levels, discounts, purchase totals."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from loyalty.v1 import checkout_pb2, common_pb2, member_pb2, membership_pb2, programme_pb2
from loyalty_core.clock import ManualClock
from tests.grpc.conftest import basket, new_id, refusal
from tests.membership.conftest import Members

ACTIVE = member_pb2.MEMBER_STATUS_ACTIVE
NOT_CONFIRMED = member_pb2.MEMBER_STATUS_NOT_CONFIRMED
DEACTIVATED = member_pb2.MEMBER_STATUS_DEACTIVATED
DISCOUNT = membership_pb2.LEVEL_PRIVILEGE_DISCOUNT
CASHBACK = membership_pb2.LEVEL_PRIVILEGE_CASHBACK


def quote(api: Members, programme_id: str, member_id: str, lines: list[tuple[str, int, int]],
          points: int = 0) -> checkout_pb2.Pricing:
    return api.checkout.Quote(checkout_pb2.QuoteRequest(
        programme_id=programme_id, member=common_pb2.MemberRef(member_id=member_id), lines=basket(lines),
        requested_points=points)).pricing


def test_a_not_confirmed_member_earns_but_cannot_pay_and_gets_no_level_discount(api: Members) -> None:
    p = api.programme(require_confirmation=True, default_cashback_bps=1_000)
    api.level(p.programme_id, "Members", 1, privilege=DISCOUNT, discount_bps=1_000)
    m = api.enrol(p.programme_id)
    assert m.status == NOT_CONFIRMED and m.level_name == "Members"
    api.accrue(p.programme_id, m.member_id, 50)

    priced = quote(api, p.programme_id, m.member_id, [("bar", 1, 10_000)], points=10)
    assert (priced.discount_bps, priced.discount_source) == (0, checkout_pb2.DISCOUNT_SOURCE_NONE)
    assert (priced.points_max, priced.points_applied, priced.earned_points) == (0, 0, 10)
    with pytest.raises(grpc.RpcError) as err:
        api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 10_000)], points=10)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "member_not_confirmed")

    done = api.capture(p.programme_id, api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 10_000)]).order_id)
    assert done.earned_points == 10
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 10_000

    # Once active, the same member gets the level's discount and may pay.
    api.set_status(p.programme_id, m.member_id, ACTIVE, "confirmed at the desk")
    priced = quote(api, p.programme_id, m.member_id, [("bar", 1, 10_000)], points=10)
    assert (priced.discount_bps, priced.discount_source) == (1_000, checkout_pb2.DISCOUNT_SOURCE_LEVEL)
    assert priced.points_applied == 10


def test_a_deactivated_member_gets_nothing_and_their_purchases_do_not_count(api: Members) -> None:
    p = api.programme(discount_ranges=[programme_pb2.DiscountRange(min_purchases_minor=0, discount_bps=500)])
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 50)
    with pytest.raises(grpc.RpcError) as err:
        api.set_status(p.programme_id, m.member_id, DEACTIVATED, comment="")
    assert refusal(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "field_required")
    assert api.set_status(p.programme_id, m.member_id, DEACTIVATED, "card reported stolen").status == DEACTIVATED

    priced = quote(api, p.programme_id, m.member_id, [("bar", 1, 10_000)], points=10)
    assert (priced.discount_bps, priced.points_max, priced.earned_points) == (0, 0, 0)
    with pytest.raises(grpc.RpcError) as err:
        api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 10_000)], points=10)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "member_deactivated")
    done = api.capture(p.programme_id, api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 10_000)]).order_id)
    assert done.earned_points == 0
    member = api.member(p.programme_id, m.member_id)
    assert (member.purchases_total_minor, member.accumulative_discount_bps) == (0, 0)

    change, = [e for e in api.history(p.programme_id, m.member_id).events if e.kind == "status_changed"]
    assert (change.comment, dict(change.details)) == ("card reported stolen", {"from": "active", "to": "deactivated"})


def test_20_visits_in_30_days_lift_a_member_and_a_missed_period_drops_them_one_level(
        api: Members, clock: ManualClock) -> None:
    p = api.programme()
    bronze = api.level(p.programme_id, "Bronze", 1)
    silver = api.level(p.programme_id, "Silver", 2, visits_needed=20, visit_period_days=30)
    gold = api.level(p.programme_id, "Gold", 3, visits_needed=40, visit_period_days=30)
    m = api.member(p.programme_id, api.enrol(p.programme_id).member_id)
    assert (m.level_id, m.next_level_name) == (bronze.level_id, "Silver")
    for _ in range(19):
        api.buy(p.programme_id, m.member_id, [("tickets", 1, 1_000)])
        clock.advance(days=1)
    assert api.member(p.programme_id, m.member_id).level_id == bronze.level_id
    api.buy(p.programme_id, m.member_id, [("tickets", 1, 1_000)])
    lifted = api.member(p.programme_id, m.member_id)
    assert (lifted.level_id, lifted.level_name, lifted.next_level_name) == (silver.level_id, "Silver", "Gold")
    assert lifted.level_assign_time.ToMicroseconds() == clock.now_us()

    # A period without the 20 visits: the review drops the member one level, once per as_of.
    clock.advance(days=31)
    review = membership_pb2.RunLevelReviewRequest(programme_id=p.programme_id, batch_size=1)
    assert api.membership.RunLevelReview(review).members_dropped == 1
    assert api.membership.RunLevelReview(review).members_dropped == 0
    assert api.member(p.programme_id, m.member_id).level_id == bronze.level_id
    assert gold.level_id  # never reached


def test_personal_5_and_accumulative_7_give_7_and_lowering_the_ranges_keeps_7(api: Members) -> None:
    p = api.programme(discount_ranges=[programme_pb2.DiscountRange(min_purchases_minor=50_000, discount_bps=700)])
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 60_000)])
    api.membership.SetPersonalDiscount(membership_pb2.SetPersonalDiscountRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, discount_bps=500, comment="vip"))

    priced = quote(api, p.programme_id, m.member_id, [("bar", 1, 10_000)])
    assert (priced.discount_bps, priced.discount_source) == (700, checkout_pb2.DISCOUNT_SOURCE_ACCUMULATIVE)
    assert priced.order_discount_minor == 700

    lowered = programme_pb2.Programme(programme_id=p.programme_id, discount_ranges=[
        programme_pb2.DiscountRange(min_purchases_minor=50_000, discount_bps=300)])
    api.programmes.UpdateProgramme(programme_pb2.UpdateProgrammeRequest(
        request_id=new_id(), programme=lowered, update_mask=field_mask_pb2.FieldMask(paths=["discount_ranges"])))
    run = api.membership.RecalculateDiscounts(membership_pb2.RecalculateDiscountsRequest(programme_id=p.programme_id))
    assert (run.members_recalculated, run.members_changed) == (1, 0)
    assert api.member(p.programme_id, m.member_id).accumulative_discount_bps == 700
    assert quote(api, p.programme_id, m.member_id, [("bar", 1, 10_000)]).discount_bps == 700


def test_a_cancelled_order_leaves_the_totals(api: Members) -> None:
    p = api.programme(discount_ranges=[programme_pb2.DiscountRange(min_purchases_minor=50_000, discount_bps=700)])
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 20_000)])
    big = api.buy(p.programme_id, m.member_id, [("bar", 2, 20_000)])
    held = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 99_000)])
    api.checkout.Cancel(checkout_pb2.CancelRequest(request_id=new_id(), programme_id=p.programme_id,
                                                   order_id=held.order_id))
    member = api.member(p.programme_id, m.member_id)
    assert (member.purchases_total_minor, member.accumulative_discount_bps) == (60_000, 700)

    def refund(units: int) -> None:
        api.checkout.Refund(checkout_pb2.RefundRequest(
            request_id=new_id(), programme_id=p.programme_id, order_id=big,
            lines=[checkout_pb2.RefundLine(line_id="1", quantity=units)]))

    refund(1)
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 40_000
    refund(1)
    member = api.member(p.programme_id, m.member_id)
    # Without the order the member never reached 50 000: the rate it gave goes with it.
    assert (member.purchases_total_minor, member.accumulative_discount_bps) == (20_000, 0)
    orders = api.history(p.programme_id, m.member_id, membership_pb2.HISTORY_TAB_ORDERS).events
    assert [e.kind for e in orders if e.kind != "order"] == ["purchase_uncounted", "purchase_reduced", "purchase_counted",
                                       "purchase_counted"]


def test_purchases_count_on_completion_where_the_programme_says_so(api: Members) -> None:
    p = api.programme(purchase_counts_when=programme_pb2.PURCHASE_COUNTS_WHEN_COMPLETED)
    m = api.enrol(p.programme_id)
    order = api.buy(p.programme_id, m.member_id, [("bar", 1, 30_000)])
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 0
    api.checkout.CompleteOrder(checkout_pb2.CompleteOrderRequest(request_id=new_id(), programme_id=p.programme_id,
                                                                 order_id=order))
    assert api.member(p.programme_id, m.member_id).purchases_total_minor == 30_000


def test_a_level_earns_at_its_own_cashback_and_limits_what_points_pay(api: Members) -> None:
    p = api.programme(default_cashback_bps=1_000)
    api.level(p.programme_id, "Club", 1, privilege=CASHBACK, cashback_bps=2_000, pay_share_bps=1_000,
              category_rules=[membership_pb2.LevelCategoryRule(category="tickets", cashback_bps=500)])
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 500)
    priced = quote(api, p.programme_id, m.member_id, [("bar", 1, 10_000), ("tickets", 1, 10_000)], points=500)
    # 10% of the order may be paid: 20 points; earning is on the money part at 20% (bar) and 5% (tickets).
    assert priced.points_max == 20
    assert [line.earned_points for line in priced.lines] == [18, 4]


def test_the_welcome_bonus_lives_its_own_lifetime(api: Members, clock: ManualClock) -> None:
    p = api.programme(welcome_bonus_points=30, welcome_bonus_lifetime_days=7, point_lifetime_days=365)
    enrolled = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, phone="+15557770001"))
    assert enrolled.welcome_bonus_points == 30
    balance = api.balance(p.programme_id, enrolled.member.member_id)
    assert balance.active_points == 30
    assert [(b.expire_time.ToMicroseconds(), b.points) for b in balance.burn_outs] == [
        (clock.now_us() + 7 * 86_400_000_000, 30)]


def test_an_offboarded_member_leaves_with_history_and_ledger_kept(api: Members) -> None:
    p = api.programme()
    api.level(p.programme_id, "Members", 1)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 40)
    gone = api.members.OffboardMember(member_pb2.OffboardMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, comment="moved away")).member
    # The answer is the member card every member RPC gives, level name included.
    assert gone.offboard_time.seconds and gone.level_name == "Members"
    assert gone == api.member(p.programme_id, m.member_id)
    with pytest.raises(grpc.RpcError) as err:
        api.set_status(p.programme_id, m.member_id, DEACTIVATED)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "member_offboarded")
    assert api.balance(p.programme_id, m.member_id).earned_total_points == 40
    kinds = [(e.kind, e.comment) for e in api.history(p.programme_id, m.member_id).events]
    assert kinds == [("offboarded", "moved away"), ("level_assigned", ""), ("enrolled", ""),
                     ("points_manual_accrual", "")]
