"""Who may spend points: the programme's spend identifications at Checkout and RedeemPoints, and the
one-time spend code sent by SMS (expiry, attempts, single use, history)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalty.v1 import checkout_pb2, common_pb2, member_pb2, membership_pb2, points_pb2, programme_pb2
from loyalty_core.clock import ManualClock
from loyalty_core.sms import NoGatewaySender, RecordingSender
from tests.fixtures.server import ServerThread
from tests.grpc.conftest import Rows, basket, new_id
from tests.membership.conftest import Members, refused
from tests.membership.test_confirmation import code_sent, confirm, start

S = programme_pb2
POINTS = 30
NOT_ALLOWED = (grpc.StatusCode.FAILED_PRECONDITION, "spend_identification_not_allowed")
OK = None


@dataclass
class Member:
    programme_id: str
    member_id: str
    phone: str
    card_number: str
    card_secret: str


@pytest.fixture
def make_member(api: Members, sms: RecordingSender) -> Any:
    """``make_member(**programme fields)``: a member with a card (and its secret) and a confirmed
    phone, holding 100 points, in a new programme."""
    def make(**programme: Any) -> Member:
        p = api.programme(**programme)
        card = f"4{new_id().replace('-', '')[:15].translate(str.maketrans('abcdef', '123456'))}"
        enrolled = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
            request_id=new_id(), programme_id=p.programme_id, phone=f"+1555{int(card[-7:]):07d}", card_number=card))
        m = enrolled.member
        start(api, p.programme_id, m.member_id)
        confirm(api, p.programme_id, m.member_id, code_sent(sms, m.phone))
        api.accrue(p.programme_id, m.member_id, 100)
        return Member(p.programme_id, m.member_id, m.phone, card, enrolled.generated_card_secret)
    return make


def send_code(api: Members, sms: RecordingSender, m: Member, request_id: str | None = None) -> str:
    api.membership.SendSpendCode(membership_pb2.SendSpendCodeRequest(
        request_id=request_id or new_id(), programme_id=m.programme_id, member_id=m.member_id))
    return code_sent(sms, m.phone)


def checkout_request(m: Member, ref: common_pb2.MemberRef, points: int = POINTS, spend_code: str = "",
                     request_id: str | None = None) -> checkout_pb2.CheckoutRequest:
    return checkout_pb2.CheckoutRequest(
        request_id=request_id or new_id(), programme_id=m.programme_id, order_id=new_id(), member=ref,
        lines=basket([("bar", 1, 10_000)]), requested_points=points, spend_code=spend_code)


def ledger_rows(database_url: str) -> dict[str, int]:
    """Row counts of the ledger's tables, but the idempotency keys (a refusal is a stored answer)."""
    counts = Rows(database_url).count()
    del counts["idempotency_key"]
    return counts


def error_info(err: grpc.RpcError) -> tuple[str, str]:
    """(ErrorInfo reason, its attempts_left) of a refused call."""
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason, info.metadata.get("attempts_left", "")
    raise AssertionError("the refusal carries no ErrorInfo")


def other_code(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# How a call names the member: (reference, the key's rights, whether it sends a spend code).
IDENTIFICATIONS = {
    "card_and_secret": (lambda m: common_pb2.MemberRef(card_number=m.card_number, card_secret=m.card_secret),
                        "pos", False),
    "card_alone": (lambda m: common_pb2.MemberRef(card_number=m.card_number), "pos", False),
    "phone_alone": (lambda m: common_pb2.MemberRef(phone=m.phone), "pos", False),
    "phone_and_code": (lambda m: common_pb2.MemberRef(phone=m.phone), "pos", True),
    "member_id_at_a_till": (lambda m: common_pb2.MemberRef(member_id=m.member_id), "pos", False),
    "member_id_from_the_shop": (lambda m: common_pb2.MemberRef(member_id=m.member_id), "ecommerce", False),
    "member_id_and_code": (lambda m: common_pb2.MemberRef(member_id=m.member_id), "pos", True),
}
# Programme settings, and what each identification gets from them.
RULES = {
    "secret_required_default": (dict(card_secret_required=True), {
        "card_and_secret": OK, "card_alone": (grpc.StatusCode.FAILED_PRECONDITION, "card_secret_required"),
        "phone_alone": NOT_ALLOWED, "phone_and_code": OK, "member_id_at_a_till": NOT_ALLOWED,
        "member_id_from_the_shop": OK, "member_id_and_code": OK}),
    "no_secret_default": (dict(), dict.fromkeys(IDENTIFICATIONS, OK)),
    "card_secret_or_phone": (dict(spend_identifications=[S.SPEND_IDENTIFICATION_CARD_SECRET,
                                                        S.SPEND_IDENTIFICATION_PHONE]), {
        "card_and_secret": OK, "card_alone": NOT_ALLOWED, "phone_alone": OK, "phone_and_code": OK,
        "member_id_at_a_till": NOT_ALLOWED, "member_id_from_the_shop": NOT_ALLOWED,
        "member_id_and_code": NOT_ALLOWED}),
    "spend_code_only": (dict(card_secret_required=True, spend_identifications=[S.SPEND_IDENTIFICATION_SPEND_CODE]), {
        "card_and_secret": NOT_ALLOWED, "card_alone": (grpc.StatusCode.FAILED_PRECONDITION, "card_secret_required"),
        "phone_alone": NOT_ALLOWED, "phone_and_code": OK, "member_id_at_a_till": NOT_ALLOWED,
        "member_id_from_the_shop": NOT_ALLOWED, "member_id_and_code": OK}),
}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("identification", sorted(IDENTIFICATIONS))
def test_each_identification_spends_only_where_the_programme_allows_it(
        rule: str, identification: str, api: Members, sms: RecordingSender, make_member: Any, channel_with: Any,
        database_url: str) -> None:
    fields, expected = RULES[rule]
    m = make_member(**fields)
    ref_of, right, with_code = IDENTIFICATIONS[identification]
    caller = Members(channel_with(right))
    code = send_code(api, sms, m) if with_code else ""
    request = checkout_request(m, ref_of(m), spend_code=code)
    if expected[identification] is OK:
        assert caller.checkout.Checkout(request).order.hold.points == POINTS
        assert api.balance(m.programme_id, m.member_id).held_points == POINTS
        return
    before = ledger_rows(database_url)
    assert refused(lambda: caller.checkout.Checkout(request)) == expected[identification]
    assert ledger_rows(database_url) == before
    assert api.balance(m.programme_id, m.member_id).held_points == 0
    if expected[identification] == NOT_ALLOWED:
        # The same call may still earn (no points asked), and a quote still shows what points could pay.
        assert caller.checkout.Checkout(checkout_request(m, ref_of(m), points=0)).order.state == \
            checkout_pb2.ORDER_STATE_HELD
        quote = caller.checkout.Quote(checkout_pb2.QuoteRequest(
            programme_id=m.programme_id, member=ref_of(m), lines=basket([("bar", 1, 10_000)]),
            requested_points=POINTS))
        assert (quote.pricing.points_max, quote.pricing.points_applied) == (100, POINTS)


def test_a_spend_code_pays_once_a_replay_answers_the_same_and_history_shows_it(
        api: Members, sms: RecordingSender, make_member: Any, channel_with: Any) -> None:
    m = make_member(card_secret_required=True)
    till = Members(channel_with("pos"))
    code = send_code(api, sms, m)
    message = sms.last_to(m.phone)
    assert (message.purpose, message.member_id) == ("spend_code", m.member_id)
    first = checkout_request(m, common_pb2.MemberRef(phone=m.phone), spend_code=code)
    order = till.checkout.Checkout(first).order
    assert till.checkout.Checkout(first).order == order  # the till lost the answer and retries
    assert refused(lambda: till.checkout.Checkout(checkout_request(m, common_pb2.MemberRef(phone=m.phone),
                                                                   spend_code=code))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "spend_code_used")
    assert api.balance(m.programme_id, m.member_id).held_points == POINTS
    events = api.history(m.programme_id, m.member_id, membership_pb2.HISTORY_TAB_MESSAGES).events
    kinds = [(e.kind, dict(e.details).get("purpose", "")) for e in events]
    assert kinds[:2] == [("spend_code_used", ""), ("sms_sent", "spend_code")]
    assert dict(events[0].details) == {"points": str(POINTS), "order_id": order.order_id}
    assert code not in str(events) and "******" in dict(events[1].details)["text"]


def test_a_spend_code_expires_with_the_confirmation_codes_lifetime(
        api: Members, sms: RecordingSender, make_member: Any, channel_with: Any, clock: ManualClock,
        database_url: str) -> None:
    m = make_member(card_secret_required=True)
    till = Members(channel_with("pos"))
    code = send_code(api, sms, m)
    clock.advance(seconds=600)
    before = ledger_rows(database_url)
    assert refused(lambda: till.checkout.Checkout(checkout_request(m, common_pb2.MemberRef(phone=m.phone),
                                                                   spend_code=code))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "spend_code_expired")
    assert ledger_rows(database_url) == before


def test_five_wrong_spend_codes_lock_the_code_until_a_new_one_is_sent(
        api: Members, sms: RecordingSender, make_member: Any, channel_with: Any, clock: ManualClock) -> None:
    m = make_member(card_secret_required=True)
    till = Members(channel_with("pos"))
    code = send_code(api, sms, m)
    phone = common_pb2.MemberRef(phone=m.phone)
    for left in (4, 3, 2, 1, 0):
        with pytest.raises(grpc.RpcError) as err:
            till.checkout.Checkout(checkout_request(m, phone, spend_code=other_code(code)))
        assert error_info(err.value) == ("spend_code_wrong", str(left))
    assert refused(lambda: till.checkout.Checkout(checkout_request(m, phone, spend_code=code))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "spend_code_locked")
    kinds = [e.kind for e in api.history(m.programme_id, m.member_id, membership_pb2.HISTORY_TAB_MESSAGES).events]
    assert kinds.count("spend_code_locked") == 1
    assert api.balance(m.programme_id, m.member_id).held_points == 0
    clock.advance(seconds=60)  # the resend interval
    assert till.checkout.Checkout(checkout_request(m, phone, spend_code=send_code(api, sms, m))).order.hold.points == POINTS


def test_a_spend_code_goes_only_to_a_confirmed_phone_and_never_without_a_gateway(
        api: Members, sms: RecordingSender, make_member: Any, grpc_server: ServerThread, clock: ManualClock) -> None:
    p = api.programme()
    unconfirmed = api.enrol(p.programme_id)
    carded = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, card_number="4000123412341234")).member
    for member, reason in ((unconfirmed, "phone_not_confirmed"), (carded, "member_has_no_phone")):
        assert refused(lambda: api.membership.SendSpendCode(membership_pb2.SendSpendCodeRequest(
            request_id=new_id(), programme_id=p.programme_id, member_id=member.member_id))) == (
            grpc.StatusCode.FAILED_PRECONDITION, reason)
    m = make_member()
    send_code(api, sms, m)
    assert refused(lambda: send_code(api, sms, m)) == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                                      "confirmation_resend_too_soon")
    clock.advance(seconds=60)
    grpc_server.deps.sms = NoGatewaySender()
    assert refused(lambda: send_code(api, sms, m)) == (grpc.StatusCode.FAILED_PRECONDITION,
                                                      "sms_gateway_not_configured")
    assert [e.kind for e in api.history(m.programme_id, m.member_id, membership_pb2.HISTORY_TAB_MESSAGES).events
            ].count("sms_sent") == 2  # the confirmation's and the first spend code's


def test_redeem_points_follows_the_rule_and_takes_a_spend_code(
        api: Members, sms: RecordingSender, make_member: Any, channel_with: Any) -> None:
    back_office = Members(channel_with("manual_points"))
    strict = make_member(card_secret_required=True)
    assert back_office.redeem(strict.programme_id, strict.member_id, 10).points == -10  # a trusted channel
    m = make_member(spend_identifications=[S.SPEND_IDENTIFICATION_SPEND_CODE])
    assert refused(lambda: back_office.redeem(m.programme_id, m.member_id, 10)) == NOT_ALLOWED
    code = send_code(back_office, sms, m)
    assert refused(lambda: back_office.redeem(m.programme_id, m.member_id, 10, spend_code=other_code(code))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "spend_code_wrong")
    assert back_office.redeem(m.programme_id, m.member_id, 10, spend_code=code).points == -10
    assert refused(lambda: back_office.redeem(m.programme_id, m.member_id, 10, spend_code=code)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "spend_code_used")
    assert api.balance(m.programme_id, m.member_id).active_points == 90


def test_the_programme_keeps_its_spend_identifications_and_refuses_bad_ones(api: Members) -> None:
    kept = api.programme(spend_identifications=[S.SPEND_IDENTIFICATION_SPEND_CODE, S.SPEND_IDENTIFICATION_CARD])
    assert list(kept.spend_identifications) == [S.SPEND_IDENTIFICATION_SPEND_CODE, S.SPEND_IDENTIFICATION_CARD]
    got = api.programmes.GetProgramme(programme_pb2.GetProgrammeRequest(programme_id=kept.programme_id)).programme
    assert list(got.spend_identifications) == list(kept.spend_identifications)
    twice = [S.SPEND_IDENTIFICATION_PHONE, S.SPEND_IDENTIFICATION_PHONE]
    assert refused(lambda: api.programme(spend_identifications=twice)) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                                           "value_out_of_range")
    assert refused(lambda: api.programme(spend_identifications=[S.SPEND_IDENTIFICATION_UNSPECIFIED])) == (
        grpc.StatusCode.INVALID_ARGUMENT, "enum_value_unknown")


def test_a_spend_code_out_of_form_is_refused_before_anything_is_counted(
        api: Members, sms: RecordingSender, make_member: Any, channel_with: Any, database_url: str) -> None:
    m = make_member(card_secret_required=True)
    till = Members(channel_with("pos"))
    send_code(api, sms, m)
    before = ledger_rows(database_url)
    assert refused(lambda: till.checkout.Checkout(checkout_request(m, common_pb2.MemberRef(phone=m.phone),
                                                                   spend_code="1" * 17))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "value_too_long")
    assert ledger_rows(database_url) == before
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT attempts FROM spend_code WHERE member_id = %s",
                            (m.member_id,)).fetchone() == (0,)


def test_wrong_spend_codes_sent_together_cannot_pass_the_limit(
        api: Members, sms: RecordingSender, make_member: Any, channel_with: Any, database_url: str) -> None:
    m = make_member(card_secret_required=True)
    till = Members(channel_with("pos"))
    code = send_code(api, sms, m)
    phone = common_pb2.MemberRef(phone=m.phone)
    calls = [till.checkout.Checkout.future(checkout_request(m, phone, spend_code=f"{(int(code) + n) % 10**6:06d}"))
             for n in range(1, 13)]
    reasons = []
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call.result()
        reasons.append(error_info(err.value)[0])
    # Calls beyond the few one member may have waiting are refused member_busy_calls, their tries counted.
    assert set(reasons) <= {"spend_code_wrong", "spend_code_locked", "member_busy_calls"}
    assert reasons.count("spend_code_wrong") <= 5
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT attempts FROM spend_code WHERE member_id = %s",
                            (m.member_id,)).fetchone() == (5,)
    assert refused(lambda: till.checkout.Checkout(checkout_request(m, phone, spend_code=code))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "spend_code_locked")
