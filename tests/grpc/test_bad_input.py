"""Bad input gets a precise status and reason and writes nothing: rows are counted before and after."""

import grpc
import pytest

from loyalty.v1 import checkout_pb2, common_pb2, member_pb2, points_pb2, programme_pb2
from tests.grpc.conftest import checkout_request, new_id, refusal

INT64_MAX = 2**63 - 1
INVALID, NOT_FOUND, FAILED, EXISTS = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                                      grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS)


@pytest.fixture
def world(api):
    """A programme, a member with 10 points, and orders held, captured and cancelled."""
    p = api.programme(currency_code="EUR")
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 10)
    held = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)], points=2)
    captured = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    api.capture(p.programme_id, captured.order_id)
    cancelled = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    api.checkout.Cancel(checkout_pb2.CancelRequest(request_id=new_id(), programme_id=p.programme_id,
                                                   order_id=cancelled.order_id))
    return dict(p=p.programme_id, m=m.member_id, phone=m.phone, held=held.order_id, captured=captured.order_id,
                cancelled=cancelled.order_id)


def co(w, lines=(("bar", 1, 1_000),), points=0, **fields):
    return checkout_request(w["p"], w["m"], list(lines), points, **fields)


def cap(w, order, **fields):
    return checkout_pb2.CaptureRequest(request_id=new_id(), programme_id=w["p"], order_id=w[order], **fields)


def void(w, order, **fields):
    return checkout_pb2.VoidOrderRequest(request_id=new_id(), programme_id=w["p"], order_id=w[order], **fields)


def without_key(request):
    request.request_id = ""
    return request


def line(**fields):
    values = dict(line_id="1", sku="s", category="bar", quantity=1, unit_price_minor=100)
    values.update(fields)
    return checkout_pb2.BasketLine(**values)


def accrue(w, **fields):
    values = dict(request_id=new_id(), programme_id=w["p"], member_id=w["m"], points=5)
    values.update(fields)
    return points_pb2.AccruePointsRequest(**values)


CASES = [
    # (service, method, request(world), code, reason)
    ("checkout", "Checkout", lambda w: co(w, lines=()), INVALID, "basket_must_not_be_empty"),
    ("checkout", "Checkout", lambda w: co(w, lines=[("bar", 1, 1)] * 501), INVALID, "too_many_items"),
    ("checkout", "Checkout", lambda w: co(w, lines=[("bar", 0, 100)]), INVALID, "value_out_of_range"),
    ("checkout", "Checkout", lambda w: co(w, lines=[("bar", 1, -1)]), INVALID, "value_out_of_range"),
    # Above the bounds on every amount (loyalty_core.bounds; tests/grpc/test_int64_bounds.py has them all).
    ("checkout", "Checkout", lambda w: co(w, lines=[("bar", 2, INT64_MAX)]), INVALID, "value_out_of_range"),
    ("checkout", "Checkout", lambda w: co(w, lines=[("bar", 1, INT64_MAX), ("bar", 1, 1)]), INVALID,
     "value_out_of_range"),
    ("checkout", "Checkout", lambda w: co(w, points=-1), INVALID, "value_out_of_range"),
    ("checkout", "Checkout", lambda w: co(w, points=11), FAILED, "points_must_not_exceed_balance"),
    ("checkout", "Checkout", lambda w: co(w, currency_code="USD"), INVALID, "currency_mismatch"),
    ("checkout", "Checkout", lambda w: co(w, order_id="x" * 65), INVALID, "value_too_long"),
    ("checkout", "Checkout", lambda w: co(w, order_id=w["held"]), EXISTS, "order_already_checked_out"),
    ("checkout", "Checkout", lambda w: checkout_request("not-a-uuid", w["m"], [("bar", 1, 1)]), INVALID, "malformed_id"),
    ("checkout", "Checkout", lambda w: checkout_request(new_id(), w["m"], [("bar", 1, 1)]), NOT_FOUND,
     "programme_not_found"),
    ("checkout", "Checkout", lambda w: checkout_request(w["p"], new_id(), [("bar", 1, 1)]), NOT_FOUND,
     "member_not_found"),
    ("checkout", "Checkout", lambda w: without_key(co(w)), INVALID, "field_required"),
    ("checkout", "Checkout", lambda w: checkout_pb2.CheckoutRequest(
        request_id=new_id(), programme_id=w["p"], order_id=new_id(), member=common_pb2.MemberRef(member_id=w["m"]),
        lines=[line(line_discount_minor=101)]), INVALID, "line_discount_must_not_exceed_line_total"),
    ("checkout", "Checkout", lambda w: checkout_pb2.CheckoutRequest(
        request_id=new_id(), programme_id=w["p"], order_id=new_id(), member=common_pb2.MemberRef(member_id=w["m"]),
        lines=[line(sku="s" * 65)]), INVALID, "value_too_long"),
    ("checkout", "Quote", lambda w: checkout_pb2.QuoteRequest(programme_id=w["p"], member=common_pb2.MemberRef()),
     INVALID, "field_required"),
    ("checkout", "Capture", lambda w: cap(w, "cancelled"), FAILED, "hold_not_open"),
    ("checkout", "Capture", lambda w: cap(w, "captured"), FAILED, "hold_not_open"),
    ("checkout", "Capture", lambda w: cap(w, "held", points=3), FAILED, "capture_must_not_exceed_hold"),
    ("checkout", "Capture", lambda w: cap(w, "held", points=-1), INVALID, "value_out_of_range"),
    ("checkout", "Capture", lambda w: checkout_pb2.CaptureRequest(request_id=new_id(), programme_id=w["p"],
                                                                  order_id="nope"), NOT_FOUND, "order_not_found"),
    ("checkout", "Cancel", lambda w: checkout_pb2.CancelRequest(request_id=new_id(), programme_id=w["p"],
                                                                order_id=w["captured"]), FAILED, "hold_not_open"),
    ("checkout", "Refund", lambda w: checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=w["p"], order_id=w["captured"],
        lines=[checkout_pb2.RefundLine(line_id="1", quantity=2)]), FAILED, "refund_must_not_exceed_captured"),
    ("checkout", "Refund", lambda w: checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=w["p"], order_id=w["captured"],
        lines=[checkout_pb2.RefundLine(line_id="1", quantity=0)]), INVALID, "value_out_of_range"),
    ("checkout", "Refund", lambda w: checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=w["p"], order_id=w["held"]), FAILED, "order_not_captured"),
    ("checkout", "VoidOrder", lambda w: void(w, "captured", comment="c" * 1001), INVALID, "value_too_long"),
    ("checkout", "VoidOrder", lambda w: without_key(void(w, "captured")), INVALID, "field_required"),
    ("checkout", "VoidOrder", lambda w: void(w, "held"), FAILED, "order_not_captured"),
    ("checkout", "VoidOrder", lambda w: void(w, "cancelled"), FAILED, "order_not_captured"),
    ("checkout", "VoidOrder", lambda w: checkout_pb2.VoidOrderRequest(request_id=new_id(), programme_id=w["p"],
                                                                      order_id="nope"), NOT_FOUND, "order_not_found"),
    ("points", "AccruePoints", lambda w: accrue(w, points=0), INVALID, "value_out_of_range"),
    ("points", "AccruePoints", lambda w: accrue(w, points=-5), INVALID, "value_out_of_range"),
    ("points", "AccruePoints", lambda w: accrue(w, member_id="123"), INVALID, "malformed_id"),
    ("points", "AccruePoints", lambda w: accrue(w, member_id=new_id()), NOT_FOUND, "member_not_found"),
    ("points", "AccruePoints", lambda w: accrue(w, comment="c" * 1001), INVALID, "value_too_long"),
    ("points", "AccruePoints", lambda w: accrue(w, expiry={"lifetime_days": 0}), INVALID, "value_out_of_range"),
    ("points", "AccruePoints", lambda w: accrue(w, expiry={"expire_time": {"seconds": 1}}), INVALID,
     "value_out_of_range"),
    ("points", "RedeemPoints", lambda w: points_pb2.RedeemPointsRequest(
        request_id=new_id(), programme_id=w["p"], member_id=w["m"], points=20), FAILED, "points_must_not_exceed_balance"),
    ("points", "ListPointsHistory", lambda w: points_pb2.ListPointsHistoryRequest(
        programme_id=w["p"], member_id=w["m"], page_size=501), INVALID, "value_out_of_range"),
    ("points", "ListPointsHistory", lambda w: points_pb2.ListPointsHistoryRequest(
        programme_id=w["p"], member_id=w["m"], page_token="garbage"), INVALID, "value_out_of_range"),
    ("members", "EnrolMember", lambda w: member_pb2.EnrolMemberRequest(request_id=new_id(), programme_id=w["p"]),
     INVALID, "field_required"),
    ("members", "EnrolMember", lambda w: member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=w["p"], phone=w["phone"]), EXISTS, "phone_taken"),
    ("members", "EnrolMember", lambda w: member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=w["p"], phone="555"), INVALID, "value_out_of_range"),
    ("members", "GetMember", lambda w: member_pb2.GetMemberRequest(programme_id=w["p"], member_id="x"), INVALID,
     "malformed_id"),
    ("programmes", "CreateProgramme", lambda w: programme_pb2.CreateProgrammeRequest(
        request_id=new_id(), programme=programme_pb2.Programme(name="n" * 201, currency_code="EUR",
                                                               point_value_minor=1)), INVALID, "value_too_long"),
    ("programmes", "CreateProgramme", lambda w: programme_pb2.CreateProgrammeRequest(
        request_id=new_id(), programme=programme_pb2.Programme(name=new_id(), currency_code="EUR",
                                                               point_value_minor=0)), INVALID, "value_out_of_range"),
    ("programmes", "UpdateProgramme", lambda w: programme_pb2.UpdateProgrammeRequest(
        request_id=new_id(), programme=programme_pb2.Programme(programme_id=w["p"], currency_code="USD"),
        update_mask={"paths": ["currency_code"]}), INVALID, "value_out_of_range"),
    ("programmes", "GetProgramme", lambda w: programme_pb2.GetProgrammeRequest(programme_id=new_id()), NOT_FOUND,
     "programme_not_found"),
]


@pytest.mark.parametrize("service, method, build, code, reason", CASES,
                         ids=[f"{c[1]}-{c[4]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_refused_precisely_and_writes_nothing(api, rows, world, service, method, build, code, reason):
    request = build(world)
    before = rows.count()
    with pytest.raises(grpc.RpcError) as err:
        getattr(getattr(api, service), method)(request)
    assert refusal(err.value) == (code, reason), err.value.details()
    after = rows.count()
    if code == FAILED:
        # A business refusal is kept under its idempotency key, so a retry stays refused; nothing else.
        after["idempotency_key"] -= 1
    assert after == before
