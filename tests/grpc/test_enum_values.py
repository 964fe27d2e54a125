"""An enum number the API does not define is refused with one reason, enum_value_unknown, naming the
field by its proto path, wherever the enum is; nothing is written."""

from __future__ import annotations

import grpc
import pytest

from loyalty.v1 import membership_pb2, membership_pb2_grpc, points_pb2
from tests.grpc.conftest import new_id, refusal

UNKNOWN = 99


def bad_request_fields(err: grpc.RpcError) -> list[str]:
    from loyalty.errors import refusal as read

    return [v.field for v in read(err).field_violations]


@pytest.mark.parametrize("field", ["compatibility", "negative_balance_policy", "purchase_counts_when"])
def test_unknown_programme_enum(api, rows, field):
    before = rows.count()
    with pytest.raises(grpc.RpcError) as refused:
        api.programme(**{field: UNKNOWN})
    assert refusal(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "enum_value_unknown")
    assert bad_request_fields(refused.value) == [f"programme.{field}"]
    assert rows.count() == before


def test_unknown_member_status(api, channel, rows):
    programme = api.programme()
    member = api.enrol(programme.programme_id)
    before = rows.count()
    with pytest.raises(grpc.RpcError) as refused:
        membership_pb2_grpc.MembershipServiceStub(channel).ChangeMemberStatus(membership_pb2.ChangeMemberStatusRequest(
            request_id=new_id(), programme_id=programme.programme_id, member_id=member.member_id, status=UNKNOWN))
    assert refusal(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "enum_value_unknown")
    assert bad_request_fields(refused.value) == ["status"]
    assert rows.count() == before


def test_unknown_level_privilege(api, channel):
    programme = api.programme()
    with pytest.raises(grpc.RpcError) as refused:
        membership_pb2_grpc.MembershipServiceStub(channel).CreateLevel(membership_pb2.CreateLevelRequest(
            request_id=new_id(), level=membership_pb2.Level(
                programme_id=programme.programme_id, name="gold", priority=1, privilege=UNKNOWN)))
    assert refusal(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "enum_value_unknown")
    assert bad_request_fields(refused.value) == ["level.privilege"]
    levels = membership_pb2_grpc.MembershipServiceStub(channel).ListLevels(
        membership_pb2.ListLevelsRequest(programme_id=programme.programme_id))
    assert list(levels.levels) == []


def test_unknown_history_tab_and_movement_kind(api, channel):
    programme = api.programme()
    member = api.enrol(programme.programme_id)
    with pytest.raises(grpc.RpcError) as tab:
        membership_pb2_grpc.MembershipServiceStub(channel).ListMemberHistory(membership_pb2.ListMemberHistoryRequest(
            programme_id=programme.programme_id, member_id=member.member_id, tab=UNKNOWN))
    with pytest.raises(grpc.RpcError) as kind:
        api.points.ListPointsHistory(points_pb2.ListPointsHistoryRequest(
            programme_id=programme.programme_id, member_id=member.member_id,
            kinds=[points_pb2.MOVEMENT_KIND_EARNED, UNKNOWN]))
    assert refusal(tab.value) == refusal(kind.value) == (grpc.StatusCode.INVALID_ARGUMENT, "enum_value_unknown")
    assert bad_request_fields(tab.value) == ["tab"] and bad_request_fields(kind.value) == ["kinds[1]"]


@pytest.mark.parametrize(("level", "field"), [
    (dict(name="gold", priority=1), "level.privilege"),
    (dict(name="", priority=1, privilege=membership_pb2.LEVEL_PRIVILEGE_CASHBACK), "level.name"),
    (dict(name="gold", priority=1, privilege=membership_pb2.LEVEL_PRIVILEGE_CASHBACK,
          category_spend_needed=[membership_pb2.CategorySpend(category="bar", spend_needed_minor=-1)]),
     "level.category_spend_needed"),
])
def test_a_refused_level_names_the_request_path(api, channel, level, field):
    programme = api.programme()
    with pytest.raises(grpc.RpcError) as refused:
        membership_pb2_grpc.MembershipServiceStub(channel).CreateLevel(membership_pb2.CreateLevelRequest(
            request_id=new_id(), level=membership_pb2.Level(programme_id=programme.programme_id, **level)))
    assert bad_request_fields(refused.value) == [field]
