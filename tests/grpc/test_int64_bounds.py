"""Issue 11, defect 9: no amount can push a stored total past int64. A JavaScript client sending 1e19
sends int64's largest value (it saturates): each such amount is refused INVALID_ARGUMENT on its own
field, and a total that would overflow is refused at the request that would do it; nothing is written."""

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalty.v1 import checkout_pb2, common_pb2, member_pb2, membership_pb2, points_pb2, programme_pb2
from loyalty_core.service.checks import MAX_AMOUNT
from tests.grpc.conftest import basket, checkout_request, new_id, refusal
from tests.membership.conftest import Members

SATURATED = 2**63 - 1  # what 1e19 becomes in an int64 field
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def world(api):
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 10)
    held = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)], points=2)
    captured = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    api.capture(p.programme_id, captured.order_id)
    return dict(p=p.programme_id, m=m.member_id, held=held.order_id, captured=captured.order_id)


def programme(**fields):
    values = dict(name=new_id(), currency_code="EUR", point_value_minor=100)
    values.update(fields)
    return programme_pb2.CreateProgrammeRequest(request_id=new_id(), programme=programme_pb2.Programme(**values))


def level(w, **fields):
    return membership_pb2.CreateLevelRequest(request_id=new_id(), level=membership_pb2.Level(
        programme_id=w["p"], name="L", priority=1, privilege=membership_pb2.LEVEL_PRIVILEGE_CASHBACK, **fields))


def quote(w, lines, points=0):
    return checkout_pb2.QuoteRequest(programme_id=w["p"], member=common_pb2.MemberRef(member_id=w["m"]),
                                     lines=basket(lines), requested_points=points)


CASES = [
    # (service, method, request(world), field the refusal names)
    ("points", "AccruePoints", lambda w: points_pb2.AccruePointsRequest(
        request_id=new_id(), programme_id=w["p"], member_id=w["m"], points=SATURATED), "points"),
    ("points", "RedeemPoints", lambda w: points_pb2.RedeemPointsRequest(
        request_id=new_id(), programme_id=w["p"], member_id=w["m"], points=SATURATED), "points"),
    ("checkout", "Checkout", lambda w: checkout_request(w["p"], w["m"], [("bar", 1, SATURATED)]),
     "lines[0].unit_price_minor"),
    ("checkout", "Checkout", lambda w: checkout_request(w["p"], w["m"], [("bar", SATURATED, 1)]), "lines[0].quantity"),
    ("checkout", "Checkout", lambda w: checkout_request(w["p"], w["m"], [("bar", 1, MAX_AMOUNT)] * 2), "lines"),
    ("checkout", "Checkout", lambda w: checkout_request(w["p"], w["m"], [("bar", 1, 1_000)], points=SATURATED),
     "requested_points"),
    ("checkout", "Quote", lambda w: quote(w, [("bar", 1, SATURATED)]), "lines[0].unit_price_minor"),
    ("checkout", "Quote", lambda w: quote(w, [("bar", 1, 1_000)], points=SATURATED), "requested_points"),
    ("checkout", "Capture", lambda w: checkout_pb2.CaptureRequest(
        request_id=new_id(), programme_id=w["p"], order_id=w["held"], points=SATURATED), "points"),
    ("checkout", "Refund", lambda w: checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=w["p"], order_id=w["captured"],
        lines=[checkout_pb2.RefundLine(line_id="1", quantity=SATURATED)]), "lines[0].quantity"),
    ("programmes", "CreateProgramme", lambda w: programme(welcome_bonus_points=SATURATED),
     "programme.welcome_bonus_points"),
    ("programmes", "CreateProgramme", lambda w: programme(point_value_minor=SATURATED), "programme.point_value_minor"),
    ("programmes", "CreateProgramme", lambda w: programme(debt_limit_points=SATURATED), "programme.debt_limit_points"),
    ("programmes", "CreateProgramme", lambda w: programme(discount_ranges=[programme_pb2.DiscountRange(
        min_purchases_minor=SATURATED, discount_bps=100)]), "programme.discount_ranges[0].min_purchases_minor"),
    ("membership", "CreateLevel", lambda w: level(w, spend_needed_minor=SATURATED), "level.spend_needed_minor"),
    ("membership", "CreateLevel", lambda w: level(w, visits_needed=SATURATED), "level.visits_needed"),
]


def violated_field(err: grpc.RpcError) -> str:
    for detail in rpc_status.from_call(err).details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return bad.field_violations[0].field
    return ""


@pytest.mark.parametrize("service, method, build, field", CASES,
                         ids=[f"{c[1]}-{c[3]}-{i}" for i, c in enumerate(CASES)])
def test_defect_9_a_saturated_amount_is_refused_on_its_field_and_writes_nothing(
        membership_api, rows, world, service, method, build, field):
    request = build(world)
    before = rows.count()
    with pytest.raises(grpc.RpcError) as err:
        getattr(getattr(membership_api, service), method)(request)
    assert refusal(err.value) == (INVALID, "value_out_of_range"), err.value.details()
    assert violated_field(err.value) == field
    assert "at most" in err.value.details()  # the message gives the bound
    assert rows.count() == before


@pytest.fixture
def membership_api(channel):
    return Members(channel)


@pytest.fixture
def near_the_limit(api, database_url):
    """A member whose earned total and purchase total are 10 short of int64's limit (set in the
    database: reaching them through the API takes thousands of the largest accruals), put back after."""
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 100)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE member SET earned_total_points = %s, purchases_total_minor = %s WHERE member_id = %s",
                     (SATURATED - 10, SATURATED - 10, m.member_id))
    yield p, m
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE member SET earned_total_points = earned_total_points - %s,"
                     " purchases_total_minor = purchases_total_minor - %s WHERE member_id = %s",
                     (SATURATED - 110, SATURATED - 10, m.member_id))


def test_defect_9_an_accrual_that_would_overflow_the_members_earned_total_is_refused(api, rows, near_the_limit):
    p, m = near_the_limit
    before = rows.count()
    with pytest.raises(grpc.RpcError) as err:
        api.accrue(p.programme_id, m.member_id, 11)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "overflows_member_total")
    assert "at most 10" in err.value.details()
    after = rows.count()
    after["idempotency_key"] -= 1  # the refusal is kept under its key
    assert after == before
    assert api.accrue(p.programme_id, m.member_id, 10).points == 10


def test_defect_9_a_checkout_whose_purchase_would_overflow_a_total_is_refused_before_holding(
        api, rows, near_the_limit):
    p, m = near_the_limit
    before = rows.count()
    with pytest.raises(grpc.RpcError) as err:
        api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)], points=5)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "overflows_member_total")
    after = rows.count()
    after["idempotency_key"] -= 1
    assert after == before
    assert api.balance(p.programme_id, m.member_id).held_points == 0


def test_defect_9_the_largest_amounts_allowed_are_captured(api):
    p = api.programme(welcome_bonus_points=MAX_AMOUNT)
    m = api.enrol(p.programme_id)
    assert api.balance(p.programme_id, m.member_id).active_points == MAX_AMOUNT
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, MAX_AMOUNT)], points=MAX_AMOUNT // 100)
    captured = api.capture(p.programme_id, order.order_id)
    assert captured.order.state == checkout_pb2.ORDER_STATE_CAPTURED
    assert api.members.GetMember(member_pb2.GetMemberRequest(
        programme_id=p.programme_id, member_id=m.member_id)).member.purchases_total_minor == MAX_AMOUNT
