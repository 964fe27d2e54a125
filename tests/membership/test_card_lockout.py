"""A card's secret cannot be guessed: wrong secrets lock the card, stored, for a cool-down."""

from __future__ import annotations

import grpc

from loyalty.v1 import member_pb2, membership_pb2
from loyalty_core import cards
from tests.fixtures.keys import BearerKey
from tests.fixtures.server import ServerThread, make_test_settings
from tests.grpc.conftest import new_id
from tests.membership.conftest import Members, refused
from tests.membership.test_cards_api import lookup, other_than


def enrol_card(api: Members, programme_id: str, card_number: str) -> tuple[str, str]:
    enrolled = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=programme_id, card_number=card_number))
    return enrolled.member.member_id, enrolled.generated_card_secret


def test_wrong_secrets_lock_the_card_until_the_cool_down_even_for_the_right_one(api, grpc_server, clock) -> None:
    p = api.programme(card_secret_required=True)
    member_id, secret = enrol_card(api, p.programme_id, "4000111122223333")
    wrong = other_than(secret)
    for _ in range(cards.CARD_SECRET_ATTEMPTS):
        assert refused(lambda: lookup(api, p.programme_id, "4000111122223333", wrong)) == (
            grpc.StatusCode.FAILED_PRECONDITION, "card_secret_wrong")
    assert refused(lambda: lookup(api, p.programme_id, "4000111122223333", secret)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "card_locked")
    history = api.history(p.programme_id, member_id, membership_pb2.HISTORY_TAB_PARTICIPATION)
    assert [e.kind for e in history.events].count("card_locked") == 1
    assert grpc_server.registry.get_sample_value("loyalty_cards_locked_total",
                                                 {"programme_id": p.programme_id}) == 1
    clock.advance(seconds=cards.CARD_LOCKOUT_S)
    assert lookup(api, p.programme_id, "4000111122223333", secret).member_id == member_id


def test_a_right_secret_forgets_the_wrong_ones_before_it(api) -> None:
    p = api.programme(card_secret_required=True)
    member_id, secret = enrol_card(api, p.programme_id, "4000444455556666")
    for _ in range(3):
        for _ in range(cards.CARD_SECRET_ATTEMPTS - 1):
            refused(lambda: lookup(api, p.programme_id, "4000444455556666", other_than(secret)))
        assert lookup(api, p.programme_id, "4000444455556666", secret).member_id == member_id


def test_an_operator_with_the_card_unlock_right_unlocks_a_locked_card(api, channel_with) -> None:
    p = api.programme(card_secret_required=True)
    member_id, secret = enrol_card(api, p.programme_id, "4000777788889999")
    for _ in range(cards.CARD_SECRET_ATTEMPTS):
        refused(lambda: lookup(api, p.programme_id, "4000777788889999", other_than(secret)))
    request = membership_pb2.UnlockCardRequest(request_id=new_id(), programme_id=p.programme_id, member_id=member_id)
    till = Members(channel_with("pos", "programme_admin"))
    assert refused(lambda: till.membership.UnlockCard(request)) == (
        grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    desk = Members(channel_with("card_unlock"))
    assert desk.membership.UnlockCard(request).was_locked
    assert desk.membership.UnlockCard(request).was_locked  # a replay answers the same
    assert lookup(api, p.programme_id, "4000777788889999", secret).member_id == member_id
    kinds = [e.kind for e in api.history(p.programme_id, member_id, membership_pb2.HISTORY_TAB_PARTICIPATION).events]
    assert kinds.count("card_unlocked") == 1


def test_a_card_locked_through_one_server_is_locked_on_another(api, database_url, clock, make_key) -> None:
    p = api.programme(card_secret_required=True)
    member_id, secret = enrol_card(api, p.programme_id, "4000121234345656")
    for _ in range(cards.CARD_SECRET_ATTEMPTS):
        refused(lambda: lookup(api, p.programme_id, "4000121234345656", other_than(secret)))
    other = ServerThread(make_test_settings(database_url), clock).start()
    try:
        with grpc.insecure_channel(other.address) as raw:
            elsewhere = Members(grpc.intercept_channel(raw, BearerKey(make_key()[1])))
            assert refused(lambda: lookup(elsewhere, p.programme_id, "4000121234345656", secret)) == (
                grpc.StatusCode.FAILED_PRECONDITION, "card_locked")
    finally:
        other.stop()
