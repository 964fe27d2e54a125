"""The outbox: every change of a member writes its event in its own transaction, in the member's order."""

from __future__ import annotations

import grpc
import psycopg
import pytest

from loyalty.v1 import checkout_pb2, member_pb2, membership_pb2
from loyalty_core.events import EVENT_TYPES, PAYLOAD_FIELDS
from loyalty_core.model import WriteContext
from loyalty_core.store import ledger
from loyalty_core.store.ledger import NEW_LOT, Entry, NewLot
from tests.events.conftest import EventsApi, take
from tests.grpc.conftest import new_id, refusal


def _events_of(database_url: str, member_id: str) -> list[tuple[int, str]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT seq, type FROM outbox_event WHERE member_id = %s ORDER BY seq",
                            (member_id,)).fetchall()


def test_a_sale_writes_each_change_as_an_event_in_the_members_order(api: EventsApi, grpc_server, database_url):
    p = api.programme(welcome_bonus_points=10)
    stream = api.watch(p.programme_id)  # from now on
    m = api.enrol(p.programme_id)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 5_000)], points=4)
    api.capture(p.programme_id, order.order_id)
    api.checkout.Refund(checkout_pb2.RefundRequest(request_id=new_id(), programme_id=p.programme_id,
                                                   order_id=order.order_id))
    api.membership.ChangeMemberStatus(membership_pb2.ChangeMemberStatusRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id,
        status=member_pb2.MEMBER_STATUS_DEACTIVATED, comment="fraud check"))
    expected = ["member.enrolled", "points.earned", "points.held", "points.spent", "points.earned",
                "order.captured", "points.adjusted", "order.refunded", "member.status_changed"]
    got = take(stream, len(expected))
    stream.cancel()
    assert [e.type for e in got] == expected
    assert [e.sequence for e in got] == list(range(1, len(expected) + 1))
    assert {e.member_id for e in got} == {m.member_id} and {e.programme_id for e in got} == {p.programme_id}
    assert len({e.event_id for e in got}) == len(got)
    for e in got:
        assert e.WhichOneof("payload") == PAYLOAD_FIELDS[e.type]
        assert e.payload_version == EVENT_TYPES[e.type]
    welcome, held, captured, changed = got[1], got[2], got[5], got[-1]
    assert (welcome.points_moved.movement_kind, welcome.points_moved.points) == ("welcome", 10)
    assert (held.points_moved.points, held.points_moved.order_id) == (4, order.order_id)
    assert (captured.order_captured.spent_points, captured.order_captured.order_id) == (4, order.order_id)
    assert (changed.member_status_changed.previous_status, changed.member_status_changed.status,
            changed.member_status_changed.comment) == ("active", "deactivated", "fraud check")
    # The same, read from the table: the stream lost and added nothing.
    assert [t for _, t in _events_of(database_url, m.member_id)] == expected


async def test_a_rolled_back_change_leaves_no_event(db, api: EventsApi, database_url):
    p = api.programme()
    m = api.enrol(p.programme_id)
    before = _events_of(database_url, m.member_id)

    async def credit_then_fail(conn):
        await conn.execute("SELECT 1 FROM member WHERE member_id = %s FOR UPDATE", (m.member_id,))
        await ledger.post(conn, m.member_id, 0, WriteContext(), [Entry("manual_accrual", 5, lots=[(NEW_LOT, 5)])],
                          NewLot("manual_accrual", 5, 0, 10**15))
        raise RuntimeError("the change fails after its event was written")

    with pytest.raises(RuntimeError):
        await db.run_in_transaction(credit_then_fail)
    assert _events_of(database_url, m.member_id) == before
    # The next change takes the next number: the rolled-back one left no gap.
    api.accrue(p.programme_id, m.member_id, 3)
    after = _events_of(database_url, m.member_id)
    assert [seq for seq, _ in after] == list(range(1, len(after) + 1))
    assert after[-1][1] == "points.earned"


def test_a_refused_write_leaves_no_event(api: EventsApi, database_url):
    p = api.programme()
    m = api.enrol(p.programme_id)
    before = _events_of(database_url, m.member_id)
    with pytest.raises(grpc.RpcError) as refused:
        api.redeem(p.programme_id, m.member_id, 50)
    assert refusal(refused.value) == (grpc.StatusCode.FAILED_PRECONDITION, "points_must_not_exceed_balance")
    assert _events_of(database_url, m.member_id) == before


def test_a_void_writes_its_event_after_the_capture(api: EventsApi, database_url):
    p = api.programme()
    m = api.enrol(p.programme_id)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 5_000)], points=0)
    api.capture(p.programme_id, order.order_id)
    api.checkout.VoidOrder(checkout_pb2.VoidOrderRequest(request_id=new_id(), programme_id=p.programme_id,
                                                         order_id=order.order_id, comment="till error"))
    types = [t for _, t in _events_of(database_url, m.member_id)]
    assert types[-2:] == ["order.captured", "order.voided"]
    with psycopg.connect(database_url) as conn:
        (payload,) = conn.execute("SELECT payload FROM outbox_event WHERE member_id = %s AND type = 'order.voided'",
                                  (m.member_id,)).fetchone()
    assert payload == {"order_id": order.order_id}
