"""Certificates at the till over gRPC (issue 13, seed 004): Quote shows what each pays, Checkout holds
them, Capture spends them (a single-order one is used up), Cancel releases them, Refund follows the
programme's rule for spent points; with points they never pass what points may pay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import psycopg
import pytest

from loyalty.v1 import certificate_pb2, checkout_pb2, common_pb2, member_pb2, programme_pb2
from tests.grpc.conftest import basket, checkout_request, new_id
from tests.grpc.test_int64_bounds import violated_field
from tests.membership.conftest import refused
from tests.membership.test_certificates import Certificates

ACTIVE = certificate_pb2.CERTIFICATE_STATE_ACTIVE
HELD = certificate_pb2.CERTIFICATE_STATE_HELD
USED = certificate_pb2.CERTIFICATE_STATE_USED
MULTIPLE = programme_pb2.CERTIFICATE_REDEMPTION_MULTIPLE_ORDERS
# One line of 100.00 (points worth 1.00 each: 100 points pay it all).
BASKET = [("bar", 1, 10_000)]


@pytest.fixture
def till(channel_with: Callable[..., grpc.Channel]) -> Certificates:
    return Certificates(channel_with())


def quote(api: Certificates, programme_id: str, member_id: str, codes: list[str], points: int = 0,
          lines: list[tuple[str, int, int]] = BASKET) -> checkout_pb2.Pricing:
    return api.checkout.Quote(checkout_pb2.QuoteRequest(
        programme_id=programme_id, member=common_pb2.MemberRef(member_id=member_id), lines=basket(lines),
        requested_points=points, certificate_codes=codes)).pricing


def check_out(api: Certificates, programme_id: str, member_id: str, codes: list[str], points: int = 0,
              lines: list[tuple[str, int, int]] = BASKET, **fields: Any) -> checkout_pb2.Order:
    return api.checkout.Checkout(checkout_request(programme_id, member_id, lines, points,
                                                  certificate_codes=codes, **fields)).order


def issued(api: Certificates, programme_id: str, member_id: str, value: int, days: int = 30,
           ) -> tuple[certificate_pb2.Certificate, str]:
    (c,) = api.issue(programme_id, member_id, value=value, days=days)
    return c.certificate, c.code


def movements(database_url: str, certificate_id: str) -> list[tuple[str, int, int]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT kind, points, held_delta FROM certificate_movement WHERE certificate_id = %s"
                            " ORDER BY movement_id", (certificate_id,)).fetchall()


def test_a_quote_shows_what_each_certificate_pays_earliest_expiry_first_and_writes_nothing(
        till: Certificates, database_url: str) -> None:
    p = till.programme()
    m = till.enrol(p.programme_id)
    late, late_code = issued(till, p.programme_id, m.member_id, 80, days=60)
    soon, soon_code = issued(till, p.programme_id, m.member_id, 50, days=10)

    priced = quote(till, p.programme_id, m.member_id, [late_code, soon_code])

    assert [(c.certificate_id, c.points) for c in priced.certificates] == [
        (soon.certificate_id, 50), (late.certificate_id, 50)]
    assert (priced.certificate_points, priced.points_applied, priced.money_due_minor) == (100, 0, 0)
    assert sum(line.points for line in priced.lines) == 100
    assert till.get(late).state == ACTIVE and movements(database_url, late.certificate_id) == [("issued", 80, 0)]


def test_certificates_are_drawn_before_points_and_together_never_pass_what_points_may_pay(
        till: Certificates) -> None:
    p = till.programme(order_pay_share_bps=5_000)
    m = till.enrol(p.programme_id)
    till.accrue(p.programme_id, m.member_id, 100)
    _, code = issued(till, p.programme_id, m.member_id, 30)

    priced = quote(till, p.programme_id, m.member_id, [code], points=20)
    assert (priced.points_max, priced.certificate_points, priced.points_applied) == (50, 30, 20)
    assert priced.money_due_minor == 5_000

    capped = quote(till, p.programme_id, m.member_id, [code], points=40)
    assert (capped.certificate_points, capped.points_applied) == (30, 20)
    assert refused(lambda: check_out(till, p.programme_id, m.member_id, [code], points=40)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "points_must_not_exceed_payable_limit")


def test_a_category_cap_bounds_certificates_as_it_bounds_points(till: Certificates) -> None:
    p = till.programme(category_rules=[programme_pb2.CategoryRule(category="tickets", cashback_bps=0,
                                                                  pay_share_bps=1_000)])
    m = till.enrol(p.programme_id)
    _, code = issued(till, p.programme_id, m.member_id, 500)

    priced = quote(till, p.programme_id, m.member_id, [code], lines=[("tickets", 1, 10_000)])

    assert (priced.points_max, priced.certificate_points) == (10, 10)


def test_a_single_order_certificate_is_used_up_by_its_capture_even_when_it_paid_less(
        till: Certificates, database_url: str) -> None:
    p = till.programme()
    m = till.enrol(p.programme_id)
    c, code = issued(till, p.programme_id, m.member_id, 500)

    order = check_out(till, p.programme_id, m.member_id, [code])
    assert (order.pricing.certificate_points, order.pricing.money_due_minor, order.HasField("hold")) == (100, 0, False)
    held = till.get(c)
    assert (held.state, held.held_points, held.held_order_id, held.remaining_points) == (
        HELD, 100, order.order_id, 500)

    captured = till.capture(p.programme_id, order.order_id)

    assert (captured.spent_points, captured.order.pricing.certificate_points) == (0, 100)
    used = till.get(c)
    assert (used.state, used.remaining_points, used.held_points) == (USED, 0, 0)
    assert movements(database_url, c.certificate_id) == [
        ("issued", 500, 0), ("held", -100, 100), ("spent", -400, -100)]
    assert till.balance(p.programme_id, m.member_id).earned_total_points == 0
    assert refused(lambda: quote(till, p.programme_id, m.member_id, [code])) == (
        grpc.StatusCode.FAILED_PRECONDITION, "certificate_not_usable")
    assert list(till.verify().disagreements) == []


def test_a_multiple_order_certificate_keeps_what_an_order_did_not_take(till: Certificates) -> None:
    p = till.programme(certificate_redemption=MULTIPLE)
    m = till.enrol(p.programme_id)
    c, code = issued(till, p.programme_id, m.member_id, 150)

    till.capture(p.programme_id, check_out(till, p.programme_id, m.member_id, [code]).order_id)
    after_first = till.get(c)
    second = check_out(till, p.programme_id, m.member_id, [code])
    till.capture(p.programme_id, second.order_id)

    assert (after_first.state, after_first.remaining_points) == (ACTIVE, 50)
    assert second.pricing.certificate_points == 50 and second.pricing.money_due_minor == 5_000
    assert (till.get(c).state, till.get(c).remaining_points) == (USED, 0)


def test_earning_is_on_the_money_part_only(till: Certificates) -> None:
    p = till.programme(default_cashback_bps=1_000)
    m = till.enrol(p.programme_id)
    _, code = issued(till, p.programme_id, m.member_id, 40)

    captured = till.capture(p.programme_id, check_out(till, p.programme_id, m.member_id, [code]).order_id)

    # 60.00 paid in money at 10%: 6 points.
    assert captured.earned_points == 6


def test_cancel_releases_the_certificate_for_another_order(till: Certificates, database_url: str) -> None:
    p = till.programme()
    m = till.enrol(p.programme_id)
    c, code = issued(till, p.programme_id, m.member_id, 60)
    order = check_out(till, p.programme_id, m.member_id, [code])
    assert refused(lambda: till.cancel(p.programme_id, till.get(c))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "certificate_held")

    till.checkout.Cancel(checkout_pb2.CancelRequest(request_id=new_id(), programme_id=p.programme_id,
                                                    order_id=order.order_id))

    back = till.get(c)
    assert (back.state, back.remaining_points, back.held_points, back.held_order_id) == (ACTIVE, 60, 0, "")
    assert movements(database_url, c.certificate_id)[-1] == ("released", 60, -60)
    assert check_out(till, p.programme_id, m.member_id, [code]).pricing.certificate_points == 60


def test_a_certificate_held_by_another_open_checkout_is_refused(till: Certificates) -> None:
    p = till.programme()
    m = till.enrol(p.programme_id)
    _, code = issued(till, p.programme_id, m.member_id, 60)
    check_out(till, p.programme_id, m.member_id, [code])

    assert refused(lambda: check_out(till, p.programme_id, m.member_id, [code])) == (
        grpc.StatusCode.FAILED_PRECONDITION, "certificate_not_usable")


def test_a_refund_returns_points_first_then_the_certificate_when_the_programme_returns_spent_points(
        till: Certificates, database_url: str) -> None:
    p = till.programme(refund_returns_spent_points=True)
    m = till.enrol(p.programme_id)
    till.accrue(p.programme_id, m.member_id, 100)
    c, code = issued(till, p.programme_id, m.member_id, 60)
    order = check_out(till, p.programme_id, m.member_id, [code], points=40,
                      lines=[("bar", 1, 5_000), ("bar", 1, 5_000)])
    till.capture(p.programme_id, order.order_id)

    first = till.checkout.Refund(checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=p.programme_id, order_id=order.order_id,
        lines=[checkout_pb2.RefundLine(line_id="1", quantity=1)])).refund
    rest = till.checkout.Refund(checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=p.programme_id, order_id=order.order_id)).refund

    assert (first.returned_points, first.certificate_returned_points) == (40, 10)
    assert (rest.returned_points, rest.certificate_returned_points) == (0, 50)
    stored = till.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=p.programme_id,
                                                                 order_id=order.order_id)).order
    # Both refunds are of one moment (the test's clock stands still), so in no order.
    assert sorted((r.returned_points, r.certificate_returned_points) for r in stored.refunds) == [(0, 50), (40, 10)]
    with psycopg.connect(database_url) as conn:
        events = conn.execute("SELECT payload->'certificate_returned_points' FROM outbox_event WHERE member_id = %s"
                              " AND type = 'order.refunded' ORDER BY seq", (m.member_id,)).fetchall()
    assert [points for (points,) in events] == [10, 50]
    back = till.get(c)
    assert (back.state, back.remaining_points) == (ACTIVE, 60)
    assert [k for k, _, _ in movements(database_url, c.certificate_id)][-2:] == ["returned", "returned"]
    assert till.balance(p.programme_id, m.member_id).active_points == 100


def test_without_the_return_rule_a_refund_gives_the_certificate_nothing(till: Certificates) -> None:
    p = till.programme(refund_returns_spent_points=False)
    m = till.enrol(p.programme_id)
    c, code = issued(till, p.programme_id, m.member_id, 60)
    order = check_out(till, p.programme_id, m.member_id, [code])
    till.capture(p.programme_id, order.order_id)

    refund = till.checkout.Refund(checkout_pb2.RefundRequest(request_id=new_id(), programme_id=p.programme_id,
                                                             order_id=order.order_id)).refund

    assert refund.certificate_returned_points == 0 and till.get(c).state == USED


@pytest.mark.parametrize("status, reason", [
    (member_pb2.MEMBER_STATUS_NOT_CONFIRMED, "member_not_confirmed"),
    (member_pb2.MEMBER_STATUS_DEACTIVATED, "member_deactivated"),
])
def test_a_member_who_may_not_pay_with_points_may_not_pay_with_certificates(
        till: Certificates, status: int, reason: str) -> None:
    p = till.programme(require_confirmation=True)
    m = till.enrol(p.programme_id)
    c, code = issued(till, p.programme_id, m.member_id, 60)
    if status == member_pb2.MEMBER_STATUS_DEACTIVATED:
        till.set_status(p.programme_id, m.member_id, status)

    priced = till.checkout.Quote(checkout_pb2.QuoteRequest(
        programme_id=p.programme_id, member=common_pb2.MemberRef(member_id=m.member_id), lines=basket(BASKET),
        certificate_codes=[code]))
    assert (priced.pricing.certificate_points, priced.points_blocked) == (
        0, checkout_pb2.PointsBlocked.Value(f"POINTS_BLOCKED_{reason.upper()}"))
    assert refused(lambda: check_out(till, p.programme_id, m.member_id, [code])) == (
        grpc.StatusCode.FAILED_PRECONDITION, reason)
    assert till.get(c).state == ACTIVE


def test_a_code_read_back_in_lower_case_without_dashes_is_the_same_code(till: Certificates) -> None:
    p = till.programme()
    m = till.enrol(p.programme_id)
    _, code = issued(till, p.programme_id, m.member_id, 60)

    assert quote(till, p.programme_id, m.member_id, [code.replace("-", "").lower()]).certificate_points == 60


def test_another_members_code_or_a_wrong_one_is_not_found(till: Certificates, database_url: str) -> None:
    p = till.programme()
    m, other = till.enrol(p.programme_id), till.enrol(p.programme_id)
    _, code = issued(till, p.programme_id, other.member_id, 60)

    for codes in (["0000-0000-0000-0000"], [code]):
        assert refused(lambda: check_out(till, p.programme_id, m.member_id, codes)) == (
            grpc.StatusCode.NOT_FOUND, "certificate_not_found")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE member_id = %s", (m.member_id,)).fetchone()[0] == 0


@pytest.mark.parametrize("codes, field", [
    (["x" * 33], "certificate_codes[0]"),
    ([""], "certificate_codes[0]"),
    (["ABCD-EFGH", "abcdefgh"], "certificate_codes[1]"),
    ([f"code-{i}" for i in range(21)], "certificate_codes"),
])
def test_bad_codes_are_refused_naming_the_field_and_write_nothing(
        till: Certificates, database_url: str, codes: list[str], field: str) -> None:
    p = till.programme()
    m = till.enrol(p.programme_id)

    with pytest.raises(grpc.RpcError) as err:
        check_out(till, p.programme_id, m.member_id, codes)

    assert (err.value.code(), violated_field(err.value)) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM orders WHERE member_id = %s", (m.member_id,)).fetchone()[0] == 0


def test_a_checkout_replayed_with_other_codes_gets_the_first_answer_and_the_codes_are_in_no_row(
        till: Certificates, database_url: str) -> None:
    p = till.programme()
    m = till.enrol(p.programme_id)
    _, code = issued(till, p.programme_id, m.member_id, 60)
    _, other = issued(till, p.programme_id, m.member_id, 70)
    request = checkout_request(p.programme_id, m.member_id, BASKET, certificate_codes=[code])
    first = till.checkout.Checkout(request)
    del request.certificate_codes[:]
    request.certificate_codes.append(other)

    assert till.checkout.Checkout(request) == first
    with psycopg.connect(database_url) as conn:
        stored = "\n".join(r[0] for r in conn.execute("SELECT t::text FROM idempotency_key t"))
    assert code not in stored and other not in stored

