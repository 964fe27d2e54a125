"""The card's four history tabs over gRPC (seed 001): all (with the points movements), orders (every
order with its state), participation (with the operators' manual balance changes), SMS; each filtered
by time and paged; bad filters refused with their field."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from loyalty.errors import refusal
from loyalty.v1 import checkout_pb2, member_pb2, membership_pb2, programme_pb2
from loyalty_core.clock import ManualClock
from loyalty_core.sms import RecordingSender
from tests.grpc.conftest import new_id
from tests.membership.conftest import Members
from tests.membership.test_confirmation import start
from tests.membership.test_custom_fields import update, value

ALL, ORDERS = membership_pb2.HISTORY_TAB_ALL, membership_pb2.HISTORY_TAB_ORDERS
PARTICIPATION, MESSAGES = membership_pb2.HISTORY_TAB_PARTICIPATION, membership_pb2.HISTORY_TAB_MESSAGES
POINTS = membership_pb2.HISTORY_TAB_POINTS


def at(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def every_page(api: Members, programme_id: str, member_id: str, tab: int, **fields: Any) -> list[Any]:
    """Every entry of the tab, two per page."""
    seen, token = [], ""
    while True:
        page = api.history(programme_id, member_id, tab, page_size=2, page_token=token, **fields)
        seen += page.events
        if not (token := page.next_page_token):
            return seen


def refund(api: Members, programme_id: str, order_id: str, *lines: tuple[str, int]) -> None:
    api.checkout.Refund(checkout_pb2.RefundRequest(
        request_id=new_id(), programme_id=programme_id, order_id=order_id,
        lines=[checkout_pb2.RefundLine(line_id=i, quantity=q) for i, q in lines]))


@pytest.fixture
def lived(api: Members, clock: ManualClock, sms: RecordingSender) -> dict[str, Any]:
    """A member with a day of each thing: enrolment, SMS, a manual accrual and redemption, five orders
    (captured, held, cancelled, refunded in part and in whole), a status and a custom field change."""
    p = api.programme(welcome_bonus_points=5, custom_fields=[programme_pb2.CustomFieldDefinition(
        name="nickname", type=programme_pb2.CUSTOM_FIELD_TYPE_TEXT)])
    m = api.enrol(p.programme_id)
    times = {"enrolled": clock.now_us()}
    clock.advance(days=1)
    start(api, p.programme_id, m.member_id)
    clock.advance(days=1)
    times["manual"] = clock.now_us()
    api.accrue(p.programme_id, m.member_id, 100, comment="goodwill")
    api.redeem(p.programme_id, m.member_id, 30, comment="gift")
    clock.advance(days=1)
    times["orders"] = clock.now_us()
    orders = {"captured": api.buy(p.programme_id, m.member_id, [("bar", 1, 1_000)]),
              "held": api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 2_000)], points=10).order_id}
    cancelled = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 3_000)]).order_id
    api.checkout.Cancel(checkout_pb2.CancelRequest(request_id=new_id(), programme_id=p.programme_id,
                                                   order_id=cancelled))
    orders["cancelled"] = cancelled
    orders["partial"] = api.buy(p.programme_id, m.member_id, [("bar", 2, 1_000)])
    refund(api, p.programme_id, orders["partial"], ("1", 1))
    orders["whole"] = api.buy(p.programme_id, m.member_id, [("bar", 1, 4_000)])
    refund(api, p.programme_id, orders["whole"])
    clock.advance(days=1)
    times["changes"] = clock.now_us()
    api.set_status(p.programme_id, m.member_id, member_pb2.MEMBER_STATUS_DEACTIVATED, "paused")
    update(api, p.programme_id, m.member_id, [value("nickname", "Ace")], ["nickname"], comment="asked")
    return {"programme_id": p.programme_id, "member_id": m.member_id, "orders": orders, "times": times}


def test_the_orders_tab_lists_every_order_with_its_state(api: Members, lived: dict[str, Any]) -> None:
    events = every_page(api, lived["programme_id"], lived["member_id"], ORDERS)
    states = {e.details["order_id"]: (e.details["state"], e.details["refund"]) for e in events if e.kind == "order"}
    o = lived["orders"]
    assert states == {o["captured"]: ("captured", "none"), o["held"]: ("held", "none"),
                      o["cancelled"]: ("cancelled", "none"), o["partial"]: ("captured", "partial"),
                      o["whole"]: ("captured", "whole")}
    whole = next(e for e in events if e.event_id == f"order:{o['whole']}")
    assert (whole.tab, whole.details["refunded_money_minor"], whole.details["counted"]) == (ORDERS, "4000", "false")
    # The purchase events stay in the tab; nothing but orders and purchases is in it.
    assert {e.kind for e in events} == {"order", "purchase_counted", "purchase_reduced", "purchase_uncounted"}


def test_the_participation_tab_holds_changes_and_manual_balance_changes(api: Members, lived: dict[str, Any]) -> None:
    events = every_page(api, lived["programme_id"], lived["member_id"], PARTICIPATION)
    assert [(e.kind, e.comment) for e in events] == [
        ("custom_field_changed", "asked"), ("status_changed", "paused"),
        ("points_spent", "gift"), ("points_manual_accrual", "goodwill"), ("enrolled", "")]
    redemption = events[2]
    assert (redemption.tab, redemption.details["points"], redemption.event_id.startswith("movement:")) == (
        POINTS, "-30", True)


def test_the_sms_tab_holds_each_message_with_its_purpose_never_its_code(
        api: Members, lived: dict[str, Any], sms: RecordingSender) -> None:
    events = every_page(api, lived["programme_id"], lived["member_id"], MESSAGES)
    (sent,) = events
    assert (sent.kind, sent.details["purpose"]) == ("sms_sent", "phone_confirmation")
    code = next(w for w in sms.messages[-1].text.replace(".", " ").split() if w.isdigit())
    assert code not in sent.details["text"] and "******" in sent.details["text"]


def test_the_all_tab_holds_everything_and_the_points_movements(api: Members, lived: dict[str, Any]) -> None:
    programme_id, member_id = lived["programme_id"], lived["member_id"]
    everything = every_page(api, programme_id, member_id, ALL)
    assert len({e.event_id for e in everything}) == len(everything)  # pages neither repeat nor skip
    one_page = api.history(programme_id, member_id, ALL, page_size=500).events
    assert [e.event_id for e in one_page] == [e.event_id for e in everything]
    times = [e.create_time.ToMicroseconds() for e in everything]
    assert times == sorted(times, reverse=True)
    kinds = {e.kind for e in everything}
    assert {"points_welcome", "points_earned", "points_held", "points_reversed", "order", "sms_sent",
            "enrolled", "custom_field_changed"} <= kinds
    for tab in (ORDERS, PARTICIPATION, MESSAGES):
        assert {e.event_id for e in every_page(api, programme_id, member_id, tab)} <= {e.event_id for e in everything}
    movements = every_page(api, programme_id, member_id, POINTS)
    assert movements and all(e.kind.startswith("points_") for e in movements)


def test_each_tab_filters_by_time(api: Members, lived: dict[str, Any]) -> None:
    programme_id, member_id, times = lived["programme_id"], lived["member_id"], lived["times"]
    window = {"start_time": at(times["manual"]), "end_time": at(times["orders"])}
    assert [e.kind for e in every_page(api, programme_id, member_id, ALL, **window)] == [
        "points_spent", "points_manual_accrual"]
    since = every_page(api, programme_id, member_id, ORDERS, start_time=at(times["orders"]))
    assert since == every_page(api, programme_id, member_id, ORDERS)
    assert every_page(api, programme_id, member_id, ORDERS, end_time=at(times["orders"])) == []
    assert [e.kind for e in every_page(api, programme_id, member_id, PARTICIPATION,
                                       start_time=at(times["changes"]))] == ["custom_field_changed", "status_changed"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"start_time": at(2_000_000), "end_time": at(1_000_000)}, "end_time"),
    ({"start_time": timestamp_pb2.Timestamp(seconds=-100)}, "start_time"),
    ({"page_token": "bm90IGEgdG9rZW4="}, "page_token"),
    ({"tab": 99}, "tab"),
])
def test_bad_filters_are_refused_with_their_field(api: Members, lived: dict[str, Any], fields: dict[str, Any],
                                                  field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        api.membership.ListMemberHistory(membership_pb2.ListMemberHistoryRequest(
            programme_id=lived["programme_id"], member_id=lived["member_id"], **fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in refusal(err.value).field_violations] == [field]
