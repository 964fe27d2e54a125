"""Phone confirmation over gRPC: codes sent through the SMS sender, checked, expired, locked, rate-limited."""

from __future__ import annotations

import re
from typing import Any

import grpc
import psycopg
import pytest

from loyalty.v1 import member_pb2, membership_pb2
from loyalty_core.clock import ManualClock
from loyalty_core.sms import RecordingSender
from tests.grpc.conftest import new_id
from tests.membership.conftest import Members, refused


def start(api: Members, programme_id: str, member_id: str, request_id: str | None = None) -> Any:
    return api.membership.StartPhoneConfirmation(membership_pb2.StartPhoneConfirmationRequest(
        request_id=request_id or new_id(), programme_id=programme_id, member_id=member_id))


def confirm(api: Members, programme_id: str, member_id: str, code: str) -> member_pb2.Member:
    return api.membership.ConfirmPhone(membership_pb2.ConfirmPhoneRequest(
        request_id=new_id(), programme_id=programme_id, member_id=member_id, code=code)).member


def code_sent(sms: RecordingSender, phone: str) -> str:
    return re.search(r"\d{6}", sms.last_to(phone).text).group()


@pytest.fixture
def member(api: Members) -> member_pb2.Member:
    p = api.programme(require_confirmation=True)
    return api.enrol(p.programme_id)


def test_the_code_read_out_confirms_the_phone_and_activates_the_member(
        api: Members, sms: RecordingSender, member: member_pb2.Member) -> None:
    started = start(api, member.programme_id, member.member_id)
    assert started.attempts_left == 5
    message = sms.last_to(member.phone)
    assert (message.purpose, message.member_id) == ("phone_confirmation", member.member_id)
    confirmed = confirm(api, member.programme_id, member.member_id, code_sent(sms, member.phone))
    assert (confirmed.phone_confirmed, confirmed.status) == (True, member_pb2.MEMBER_STATUS_ACTIVE)
    assert refused(lambda: start(api, member.programme_id, member.member_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "phone_already_confirmed")
    assert refused(lambda: api.set_status(member.programme_id, member.member_id,
                                          member_pb2.MEMBER_STATUS_NOT_CONFIRMED)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "phone_already_confirmed")


def test_five_wrong_codes_lock_the_confirmation(api: Members, sms: RecordingSender, member: member_pb2.Member,
                                                clock: ManualClock) -> None:
    start(api, member.programme_id, member.member_id)
    code = code_sent(sms, member.phone)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert refused(lambda: confirm(api, member.programme_id, member.member_id, wrong)) == (
            grpc.StatusCode.FAILED_PRECONDITION, "confirmation_code_wrong")
    assert refused(lambda: confirm(api, member.programme_id, member.member_id, code)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "confirmation_locked")
    # A new code, once the resend interval has passed, opens a new round.
    clock.advance(seconds=60)
    start(api, member.programme_id, member.member_id)
    assert confirm(api, member.programme_id, member.member_id, code_sent(sms, member.phone)).phone_confirmed


def test_a_code_expires_after_ten_minutes(api: Members, sms: RecordingSender, member: member_pb2.Member,
                                          clock: ManualClock) -> None:
    start(api, member.programme_id, member.member_id)
    clock.advance(seconds=600)
    assert refused(lambda: confirm(api, member.programme_id, member.member_id, code_sent(sms, member.phone))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "confirmation_code_expired")


def test_resending_is_rate_limited_and_a_retry_sends_nothing_more(
        api: Members, sms: RecordingSender, member: member_pb2.Member, clock: ManualClock) -> None:
    key = new_id()
    first = start(api, member.programme_id, member.member_id, key)
    assert start(api, member.programme_id, member.member_id, key) == first
    assert len(sms.messages) == 1
    clock.advance(seconds=59)
    assert refused(lambda: start(api, member.programme_id, member.member_id)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "confirmation_resend_too_soon")
    for _ in range(9):  # ten a day in all
        clock.advance(seconds=60)
        start(api, member.programme_id, member.member_id)
    clock.advance(seconds=60)
    assert refused(lambda: start(api, member.programme_id, member.member_id)) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "confirmation_resend_too_soon")


def test_confirming_without_a_code_sent_or_a_phone_is_refused(api: Members) -> None:
    p = api.programme()
    by_card = api.enrol(p.programme_id, phone="", card_number="CARD0001")
    assert refused(lambda: start(api, p.programme_id, by_card.member_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_has_no_phone")
    m = api.enrol(p.programme_id)
    assert refused(lambda: confirm(api, p.programme_id, m.member_id, "123456")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "confirmation_not_started")


def test_without_a_gateway_or_the_development_setting_a_code_is_refused_and_nothing_is_stored(
        api: Members, member: member_pb2.Member, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    # No `sms` fixture: the server's own sender, chosen from default settings.
    assert refused(lambda: start(api, member.programme_id, member.member_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "sms_gateway_not_configured")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM phone_confirmation WHERE member_id = %s",
                            (member.member_id,)).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM member_event WHERE member_id = %s AND kind = 'sms_sent'",
                            (member.member_id,)).fetchone() == (0,)
    assert "confirmation code" not in caplog.text


def test_each_message_is_in_history_without_its_code(api: Members, sms: RecordingSender,
                                                     member: member_pb2.Member) -> None:
    start(api, member.programme_id, member.member_id)
    code = code_sent(sms, member.phone)
    event, = api.history(member.programme_id, member.member_id, membership_pb2.HISTORY_TAB_MESSAGES).events
    assert (event.kind, event.details["phone"], event.details["purpose"]) == (
        "sms_sent", member.phone, "phone_confirmation")
    assert code not in event.details["text"] and "******" in event.details["text"]
