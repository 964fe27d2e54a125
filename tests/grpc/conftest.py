"""Fixtures for the ledger's gRPC tests: stubs, a programme factory, row counts and ledger checks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalty.v1 import (
    checkout_pb2, checkout_pb2_grpc, common_pb2, member_pb2, member_pb2_grpc, points_pb2, points_pb2_grpc,
    programme_pb2, programme_pb2_grpc,
)

TABLES = ("programme", "member", "lot", "hold", "orders", "order_line", "refund", "movement", "idempotency_key",
          "outbox_event")


def new_id() -> str:
    return str(uuid.uuid4())


class Api:
    """The four services' stubs on one channel, and shortcuts for the calls most tests make."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.programmes = programme_pb2_grpc.ProgrammeServiceStub(channel)
        self.members = member_pb2_grpc.MemberServiceStub(channel)
        self.checkout = checkout_pb2_grpc.CheckoutServiceStub(channel)
        self.points = points_pb2_grpc.PointsServiceStub(channel)

    def programme(self, **fields: Any) -> programme_pb2.Programme:
        """A new enabled EUR programme (point worth 1.00) with ``fields`` overriding the defaults."""
        values: dict[str, Any] = dict(
            name=f"test {new_id()}", enabled=True, currency_code="EUR", point_value_minor=100,
            order_pay_share_bps=10_000, default_cashback_bps=1_000, default_pay_share_bps=10_000,
            hold_ttl_seconds=600,
        )
        values.update(fields)
        return self.programmes.CreateProgramme(programme_pb2.CreateProgrammeRequest(
            request_id=new_id(), programme=programme_pb2.Programme(**values))).programme

    def enrol(self, programme_id: str, **fields: Any) -> member_pb2.Member:
        fields.setdefault("phone", f"+1555{uuid.uuid4().int % 10**7:07d}")
        return self.members.EnrolMember(member_pb2.EnrolMemberRequest(
            request_id=new_id(), programme_id=programme_id, **fields)).member

    def accrue(self, programme_id: str, member_id: str, points: int, **fields: Any) -> points_pb2.Movement:
        return self.points.AccruePoints(points_pb2.AccruePointsRequest(
            request_id=new_id(), programme_id=programme_id, member_id=member_id, points=points, **fields)).movement

    def redeem(self, programme_id: str, member_id: str, points: int, **fields: Any) -> points_pb2.Movement:
        return self.points.RedeemPoints(points_pb2.RedeemPointsRequest(
            request_id=new_id(), programme_id=programme_id, member_id=member_id, points=points, **fields)).movement

    def balance(self, programme_id: str, member_id: str) -> member_pb2.Balance:
        return self.members.GetBalance(member_pb2.GetBalanceRequest(programme_id=programme_id,
                                                                    member_id=member_id)).balance

    def checkout_order(self, programme_id: str, member_id: str, lines: list[tuple[str, int, int]],
                       points: int = 0, order_id: str | None = None, **fields: Any) -> checkout_pb2.Order:
        """Check out ``lines`` of (category, quantity, unit price)."""
        return self.checkout.Checkout(checkout_request(programme_id, member_id, lines, points, order_id,
                                                       **fields)).order

    def capture(self, programme_id: str, order_id: str, **fields: Any) -> checkout_pb2.CaptureResponse:
        return self.checkout.Capture(checkout_pb2.CaptureRequest(
            request_id=new_id(), programme_id=programme_id, order_id=order_id, **fields))

    def history(self, programme_id: str, member_id: str, *kinds: str) -> list[points_pb2.Movement]:
        """The member's movements, newest first, of ``kinds`` (names such as "HELD"; all when none)."""
        return list(self.points.ListPointsHistory(points_pb2.ListPointsHistoryRequest(
            programme_id=programme_id, member_id=member_id, page_size=500,
            kinds=[points_pb2.MovementKind.Value(f"MOVEMENT_KIND_{k}") for k in kinds])).movements)

    def lots_of(self, movement: points_pb2.Movement) -> dict[str, int]:
        return {a.lot_id: a.points for a in movement.lots}

    def verify(self) -> points_pb2.VerifyLedgerResponse:
        return self.points.VerifyLedger(points_pb2.VerifyLedgerRequest())


def basket(lines: list[tuple[str, int, int]]) -> list[checkout_pb2.BasketLine]:
    return [checkout_pb2.BasketLine(line_id=str(i + 1), sku=f"sku-{i + 1}", category=c, quantity=q,
                                    unit_price_minor=p) for i, (c, q, p) in enumerate(lines)]


def checkout_request(programme_id: str, member_id: str, lines: list[tuple[str, int, int]], points: int = 0,
                     order_id: str | None = None, **fields: Any) -> checkout_pb2.CheckoutRequest:
    return checkout_pb2.CheckoutRequest(
        request_id=new_id(), programme_id=programme_id, order_id=order_id or new_id(),
        member=common_pb2.MemberRef(member_id=member_id), lines=basket(lines), requested_points=points, **fields)


def refusal(err: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """(status code, ErrorInfo reason) of a refused call."""
    status = rpc_status.from_call(err)
    reason = ""
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = info.reason
    return err.code(), reason


# The refusals of a member too busy to queue on (docs/trust.md, the bounds on one member's calls):
# a till retries them, as a till retries UNAVAILABLE.
MEMBER_BUSY = {(grpc.StatusCode.RESOURCE_EXHAUSTED, "member_busy_calls"), (grpc.StatusCode.UNAVAILABLE, "member_busy")}


def until_not_busy(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, again after a short pause while the member is too busy."""
    while True:
        try:
            return call(*args, **kwargs)
        except grpc.RpcError as err:
            if refusal(err) not in MEMBER_BUSY:
                raise
        time.sleep(0.01)


@pytest.fixture
def api(channel: grpc.Channel) -> Api:
    return Api(channel)


class Rows:
    """Row counts of every ledger table, to show that a refused request wrote nothing."""

    def __init__(self, url: str) -> None:
        self.url = url

    def count(self) -> dict[str, int]:
        with psycopg.connect(self.url) as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


@pytest.fixture
def rows(database_url: str) -> Rows:
    return Rows(database_url)


@pytest.fixture(autouse=True)
def ledger_agrees(api: Api) -> Iterator[None]:
    """After every test, VerifyLedger finds no disagreement anywhere in the database."""
    yield
    assert list(api.verify().disagreements) == []
