"""Fixtures for membership's gRPC tests: the stubs, a recording SMS sender in the server, a level maker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from loyalty.v1 import member_pb2, membership_pb2, membership_pb2_grpc
from loyalty_core.sms import RecordingSender
from tests.fixtures.server import ServerThread
from tests.grpc.conftest import Api, new_id, refusal


class Members(Api):
    """The ledger's stubs and shortcuts, plus MembershipService and its shortcuts."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.membership = membership_pb2_grpc.MembershipServiceStub(channel)

    def level(self, programme_id: str, name: str, priority: int, **fields: Any) -> membership_pb2.Level:
        fields.setdefault("privilege", membership_pb2.LEVEL_PRIVILEGE_CASHBACK)
        return self.membership.CreateLevel(membership_pb2.CreateLevelRequest(
            request_id=new_id(), level=membership_pb2.Level(programme_id=programme_id, name=name, priority=priority,
                                                            **fields))).level

    def member(self, programme_id: str, member_id: str) -> member_pb2.Member:
        return self.members.GetMember(member_pb2.GetMemberRequest(programme_id=programme_id,
                                                                  member_id=member_id)).member

    def set_status(self, programme_id: str, member_id: str, status: int, comment: str = "test") -> member_pb2.Member:
        return self.membership.ChangeMemberStatus(membership_pb2.ChangeMemberStatusRequest(
            request_id=new_id(), programme_id=programme_id, member_id=member_id, status=status,
            comment=comment)).member

    def buy(self, programme_id: str, member_id: str, lines: list[tuple[str, int, int]], points: int = 0) -> str:
        """Check out and capture ``lines``; the order's id."""
        order = self.checkout_order(programme_id, member_id, lines, points)
        self.capture(programme_id, order.order_id)
        return order.order_id

    def history(self, programme_id: str, member_id: str, tab: int = membership_pb2.HISTORY_TAB_ALL,
                **fields: Any) -> membership_pb2.ListMemberHistoryResponse:
        return self.membership.ListMemberHistory(membership_pb2.ListMemberHistoryRequest(
            programme_id=programme_id, member_id=member_id, tab=tab, **fields))


def refused(call: Any) -> tuple[grpc.StatusCode, str]:
    """(status code, ErrorInfo reason) of the refusal ``call()`` must end in."""
    with pytest.raises(grpc.RpcError) as err:
        call()
    return refusal(err.value)


@pytest.fixture
def api(channel_with: Callable[..., grpc.Channel]) -> Members:
    """The stubs on a channel whose key holds every right on every programme."""
    return Members(channel_with())


@pytest.fixture
def sms(grpc_server: ServerThread) -> RecordingSender:
    """The server's SMS sender, swapped for one that keeps what it sends, so a test can read codes."""
    recorder = RecordingSender()
    assert grpc_server.deps is not None
    grpc_server.deps.sms = recorder
    return recorder
