"""Cards over gRPC: virtual card numbers, secret codes generated, regenerated and required at the till."""

from __future__ import annotations

import grpc

from loyalty.v1 import common_pb2, member_pb2, membership_pb2
from loyalty_core import cards
from tests.grpc.conftest import new_id
from tests.membership.conftest import Members, refused


def lookup(api: Members, programme_id: str, card_number: str, secret: str = "") -> member_pb2.Member:
    return api.members.LookupMember(member_pb2.LookupMemberRequest(
        programme_id=programme_id, member=common_pb2.MemberRef(card_number=card_number, card_secret=secret))).member


def other_than(secret: str) -> str:
    """A secret of the same shape that is not ``secret``."""
    return f"{(int(secret) + 1) % 10**8:08d}"


def test_a_card_without_a_secret_gets_one_shown_once_and_the_till_needs_it(api: Members) -> None:
    p = api.programme(card_secret_required=True)
    enrolled = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, card_number="4000123412341234"))
    secret = enrolled.generated_card_secret
    assert len(secret) == 8 and enrolled.member.has_card_secret
    assert lookup(api, p.programme_id, "4000123412341234", secret).member_id == enrolled.member.member_id
    assert refused(lambda: lookup(api, p.programme_id, "4000123412341234")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "card_secret_required")
    assert refused(lambda: lookup(api, p.programme_id, "4000123412341234", other_than(secret))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "card_secret_wrong")


def test_a_regenerated_secret_replaces_the_old_one_and_a_replay_does_not_show_it_again(api: Members) -> None:
    p = api.programme(card_secret_required=True)
    enrolled = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, card_number="CARD7777"))
    request = membership_pb2.RegenerateCardSecretRequest(request_id=new_id(), programme_id=p.programme_id,
                                                         member_id=enrolled.member.member_id)
    fresh = api.membership.RegenerateCardSecret(request)
    assert lookup(api, p.programme_id, "CARD7777", fresh.card_secret).member_id == enrolled.member.member_id
    assert refused(lambda: lookup(api, p.programme_id, "CARD7777", other_than(fresh.card_secret)))[1] == (
        "card_secret_wrong")
    replay = api.membership.RegenerateCardSecret(request)
    assert (replay.card_secret, replay.member.member_id) == ("", enrolled.member.member_id)
    assert lookup(api, p.programme_id, "CARD7777", fresh.card_secret).member_id == enrolled.member.member_id


def test_a_member_without_a_card_has_no_secret_to_regenerate(api: Members) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    assert refused(lambda: api.membership.RegenerateCardSecret(membership_pb2.RegenerateCardSecretRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_has_no_card")


def test_a_virtual_card_number_carries_a_luhn_check_digit_and_is_unique(api: Members) -> None:
    p = api.programme()
    m = api.enrol(p.programme_id)
    issued = api.membership.GenerateVirtualCard(membership_pb2.GenerateVirtualCardRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id))
    number = issued.member.card_number
    assert len(number) == 16 and cards.luhn_valid(number) and issued.card_secret
    assert lookup(api, p.programme_id, number, issued.card_secret).member_id == m.member_id
    assert refused(lambda: api.enrol(p.programme_id, card_number=number)) == (
        grpc.StatusCode.ALREADY_EXISTS, "card_number_taken")
    generated = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, generate_card_number=True)).member
    assert cards.luhn_valid(generated.card_number) and generated.card_number != number
    event = api.history(p.programme_id, m.member_id, membership_pb2.HISTORY_TAB_PARTICIPATION).events[0]
    assert (event.kind, event.details["to"]) == ("virtual_card_generated", number)
