"""The sender name of a member's messages over gRPC: their store's (the store they enrolled in) where the
programme lists one, else the programme's default; history keeps it; bad sender settings are refused."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from loyalty.errors import refusal
from loyalty.v1 import common_pb2, member_pb2, membership_pb2, programme_pb2
from loyalty_core.sms import RecordingSender
from tests.grpc.conftest import new_id
from tests.membership.conftest import Members
from tests.membership.test_confirmation import start
from tests.membership.test_custom_fields import written

SENDERS = [programme_pb2.StoreSmsSender(store_id="north-1", sender_name="NorthShop"),
           programme_pb2.StoreSmsSender(store_id="south-2", sender_name="SouthShop")]


def sender_of(api: Members, sms: RecordingSender, programme_id: str, store_id: str) -> tuple[str, str]:
    """Enrol a member in ``store_id``, send them a confirmation code: the message's sender, and history's."""
    member = api.enrol(programme_id, context=common_pb2.WriteContext(store_id=store_id))
    assert member.store_id == store_id
    start(api, programme_id, member.member_id)
    sent = next(e for e in api.history(programme_id, member.member_id, membership_pb2.HISTORY_TAB_MESSAGES).events
                if e.kind == "sms_sent")
    return sms.last_to(member.phone).sender, sent.details["sender"]


def test_a_member_gets_messages_under_their_stores_sender_else_the_default(api: Members, sms: RecordingSender) -> None:
    p = api.programme(store_ids=["north-1", "south-2", "east-3"], sms_senders=SENDERS, default_sms_sender="Loyalty")
    assert sender_of(api, sms, p.programme_id, "south-2") == ("SouthShop", "SouthShop")
    assert sender_of(api, sms, p.programme_id, "east-3") == ("Loyalty", "Loyalty")  # the store has none
    assert sender_of(api, sms, p.programme_id, "") == ("Loyalty", "Loyalty")  # enrolled in the back office
    bare = api.programme()
    assert sender_of(api, sms, bare.programme_id, "north-1") == ("", "")  # the gateway's own default


@pytest.mark.parametrize(("fields", "field"), [
    ({"store_ids": ["north-1"], "sms_senders": SENDERS}, "programme.sms_senders[1].store_id"),
    ({"sms_senders": [SENDERS[0], SENDERS[0]]}, "programme.sms_senders[1].store_id"),
    ({"sms_senders": [programme_pb2.StoreSmsSender(store_id="north-1")]}, "programme.sms_senders[0].sender_name"),
    ({"sms_senders": [programme_pb2.StoreSmsSender(sender_name="X")]}, "programme.sms_senders[0].store_id"),
    ({"default_sms_sender": "x" * 65}, "programme.default_sms_sender"),
])
def test_bad_sender_settings_are_refused_with_their_field(api: Members, database_url: str, fields: dict[str, Any],
                                                          field: str) -> None:
    before = written(database_url)
    with pytest.raises(grpc.RpcError) as err:
        api.programme(**fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in refusal(err.value).field_violations] == [field]
    assert written(database_url) == before


def test_an_enrolment_store_too_long_is_refused(api: Members, database_url: str) -> None:
    p = api.programme()
    before = written(database_url)
    with pytest.raises(grpc.RpcError) as err:
        api.members.EnrolMember(_enrol(p.programme_id, "s" * 65))
    assert [v.field for v in refusal(err.value).field_violations] == ["context.store_id"]
    assert written(database_url) == before


def _enrol(programme_id: str, store_id: str) -> Any:
    return member_pb2.EnrolMemberRequest(request_id=new_id(), programme_id=programme_id, phone="+15550009999",
                                         context=common_pb2.WriteContext(store_id=store_id))
