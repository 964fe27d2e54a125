"""What the fault tests share: a programme and members made through the API, calls that retry the
way a till does (same request_id until a final answer), and the ledger's own verdict."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from loyalty.v1 import (
    checkout_pb2,
    checkout_pb2_grpc,
    common_pb2,
    member_pb2,
    member_pb2_grpc,
    membership_pb2_grpc,
    points_pb2,
    points_pb2_grpc,
    programme_pb2,
    programme_pb2_grpc,
)

# A till retries these with the same request_id: the call may or may not have taken effect.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
CASHBACK_BPS = 1000  # 10 %: an order of 1000 paid in money earns 100 points


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reason(err: grpc.RpcError) -> str:
    st = rpc_status.from_call(err)
    info = error_details_pb2.ErrorInfo()
    if st is not None and st.details and st.details[0].Unpack(info):
        return info.reason
    return ""


@dataclass
class Stubs:
    """The five services over one channel."""

    channel: grpc.Channel
    programmes: Any = field(init=False)
    members: Any = field(init=False)
    checkout: Any = field(init=False)
    points: Any = field(init=False)
    membership: Any = field(init=False)

    def __post_init__(self) -> None:
        self.programmes = programme_pb2_grpc.ProgrammeServiceStub(self.channel)
        self.members = member_pb2_grpc.MemberServiceStub(self.channel)
        self.checkout = checkout_pb2_grpc.CheckoutServiceStub(self.channel)
        self.membership = membership_pb2_grpc.MembershipServiceStub(self.channel)
        self.points = points_pb2_grpc.PointsServiceStub(self.channel)


def programme_settings(**overrides: Any) -> programme_pb2.Programme:
    """A plain programme: 1 point = 1 minor unit, 10 % cashback, points may pay everything."""
    values: dict[str, Any] = dict(
        name=f"faults-{uuid.uuid4().hex[:12]}",
        enabled=True,
        currency_code="EUR",
        point_value_minor=1,
        point_lifetime_days=365,
        activation_delay_days=0,
        order_pay_share_bps=10_000,
        default_cashback_bps=CASHBACK_BPS,
        default_pay_share_bps=10_000,
        discounted_items_earn=True,
        compatibility=programme_pb2.COMPATIBILITY_POINTS_AFTER_DISCOUNTS,
        refund_returns_spent_points=True,
        hold_ttl_seconds=900,
        negative_balance_policy=programme_pb2.NEGATIVE_BALANCE_POLICY_TAKE_AVAILABLE,
        purchase_counts_when=programme_pb2.PURCHASE_COUNTS_WHEN_CAPTURED,
    )
    values.update(overrides)
    return programme_pb2.Programme(**values)


def create_programme(stubs: Stubs, **overrides: Any) -> str:
    resp = stubs.programmes.CreateProgramme(programme_pb2.CreateProgrammeRequest(
        request_id=uuid.uuid4().hex, programme=programme_settings(**overrides)), timeout=10)
    return resp.programme.programme_id


def enrol(stubs: Stubs, programme_id: str) -> str:
    resp = stubs.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=uuid.uuid4().hex, programme_id=programme_id, card_number=uuid.uuid4().hex[:16]), timeout=10)
    return resp.member.member_id


def accrue(stubs: Stubs, programme_id: str, member_id: str, points: int,
           expiry: points_pb2.Expiry | None = None) -> None:
    stubs.points.AccruePoints(points_pb2.AccruePointsRequest(
        request_id=uuid.uuid4().hex, programme_id=programme_id, member_id=member_id, points=points,
        expiry=expiry), timeout=10)


def basket(*prices: int) -> list[checkout_pb2.BasketLine]:
    return [checkout_pb2.BasketLine(line_id=str(i + 1), sku=f"sku-{i}", category="bar", quantity=1,
                                    unit_price_minor=p) for i, p in enumerate(prices)]


def checkout_request(programme_id: str, member_id: str, order_id: str, price: int, points: int,
                     request_id: str | None = None) -> checkout_pb2.CheckoutRequest:
    return checkout_pb2.CheckoutRequest(
        request_id=request_id or f"co-{order_id}", programme_id=programme_id, order_id=order_id,
        member=common_pb2.MemberRef(member_id=member_id), lines=basket(price), requested_points=points)


def capture_request(programme_id: str, order_id: str) -> checkout_pb2.CaptureRequest:
    return checkout_pb2.CaptureRequest(request_id=f"cap-{order_id}", programme_id=programme_id, order_id=order_id)


def balance(stubs: Stubs, programme_id: str, member_id: str) -> member_pb2.Balance:
    return stubs.members.GetBalance(member_pb2.GetBalanceRequest(
        programme_id=programme_id, member_id=member_id), timeout=10).balance


def until_final(call: Callable[..., Any], request: Any, *, give_up_s: float = 60.0,
                on_retry: Callable[[grpc.StatusCode], None] | None = None) -> Any:
    """Call with the same request (same request_id) until the answer is final; return the
    response, or raise the final RpcError. A retryable error past ``give_up_s`` is raised too."""
    deadline = time.monotonic() + give_up_s
    pause = 0.02
    while True:
        try:
            return call(request, timeout=5)
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE or time.monotonic() > deadline:
                raise
            if on_retry:
                on_retry(err.code())
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def assert_ledger_clean(stubs: Stubs, programme_id: str = "") -> None:
    resp = stubs.points.VerifyLedger(points_pb2.VerifyLedgerRequest(programme_id=programme_id), timeout=60)
    assert not resp.disagreements, [
        (d.member_id, d.invariant, d.detail) for d in resp.disagreements[:20]]
    assert resp.members_checked > 0


def movements_by_order(database_url: str, programme_id: str) -> dict[str, dict[str, int]]:
    """order id -> {movement kind: how many}, read straight from the ledger table."""
    out: dict[str, dict[str, int]] = {}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT mv.order_id, mv.kind, count(*) FROM movement mv JOIN member m USING (member_id)
               WHERE m.programme_id = %s AND mv.order_id IS NOT NULL GROUP BY 1, 2""", (programme_id,)).fetchall()
    for order_id, kind, count in rows:
        out.setdefault(order_id, {})[kind] = count
    return out
