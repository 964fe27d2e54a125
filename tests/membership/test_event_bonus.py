"""Event bonuses over gRPC (issue 13, seed 001): event types, RecordEvent's rules (occurrence, frequency,
window, statuses), the event discount in the order discount's "largest applies" rule, rights, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import (
    checkout_pb2, event_bonus_pb2, event_bonus_pb2_grpc, member_pb2, membership_pb2, points_pb2,
)
from loyalty_core.clock import ManualClock
from tests.grpc.conftest import Api, new_id, until_not_busy
from tests.grpc.test_int64_bounds import violated_field
from tests.membership.conftest import Members, refused
from tests.membership.test_privacy import export_request
from tests.membership.test_scenarios import quote

DAY_US = 86_400_000_000
ONCE = event_bonus_pb2.EVENT_FREQUENCY_ONCE
EVERY_N_DAYS = event_bonus_pb2.EVENT_FREQUENCY_EVERY_N_DAYS
CALENDAR_YEAR = event_bonus_pb2.EVENT_FREQUENCY_CALENDAR_YEAR
BASKET = [("bar", 1, 10_000)]


class Events(Members):
    """The membership shortcuts plus EventBonusService and its shortcuts."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.events = event_bonus_pb2_grpc.EventBonusServiceStub(channel)

    def event_type(self, programme_id: str, code: str = "birthday", **fields: Any) -> event_bonus_pb2.EventType:
        values: dict[str, Any] = dict(name=f"{code} bonus", points=100, frequency=CALENDAR_YEAR)
        values.update(fields)
        return self.events.CreateEventType(event_bonus_pb2.CreateEventTypeRequest(
            request_id=new_id(), event_type=event_bonus_pb2.EventType(programme_id=programme_id, code=code,
                                                                      **values))).event_type

    def record(self, programme_id: str, member_id: str, occurrence_key: str, code: str = "birthday",
               request_id: str | None = None) -> event_bonus_pb2.RecordEventResponse:
        return self.events.RecordEvent(record_request(programme_id, member_id, occurrence_key, code, request_id))


def record_request(programme_id: str, member_id: str, occurrence_key: str, code: str = "birthday",
                   request_id: str | None = None) -> event_bonus_pb2.RecordEventRequest:
    return event_bonus_pb2.RecordEventRequest(request_id=request_id or new_id(), programme_id=programme_id,
                                              member_id=member_id, event_code=code, occurrence_key=occurrence_key)


@pytest.fixture
def ev(channel_with: Callable[..., grpc.Channel]) -> Events:
    return Events(channel_with())


def written(database_url: str, member_id: str = "") -> dict[str, int]:
    """Rows that an event could write: event types (all), and the member's grants, lots, movements, history."""
    with psycopg.connect(database_url) as conn:
        counts = {"event_type": conn.execute("SELECT count(*) FROM event_type").fetchone()[0]}
        for table in ("event_grant", "lot", "movement", "member_event"):
            counts[table] = conn.execute(f"SELECT count(*) FROM {table} WHERE member_id::text = %s",
                                         (member_id,)).fetchone()[0]
    return counts


def test_an_event_grants_its_points_as_their_own_kind_and_lot_and_shows_in_participation(
        ev: Events, clock: ManualClock) -> None:
    p = ev.programme(point_lifetime_days=365)
    ev.event_type(p.programme_id, points=150, expiry=points_pb2.Expiry(lifetime_days=30))
    m = ev.enrol(p.programme_id)

    done = ev.record(p.programme_id, m.member_id, "2026")

    assert (done.already_granted, done.grant.points, done.grant.discount_bps) == (False, 150, 0)
    assert (done.movement.kind, done.movement.points) == (points_pb2.MOVEMENT_KIND_EVENT_BONUS, 150)
    assert ev.balance(p.programme_id, m.member_id).active_points == 150
    (lot,) = ev.points.ListLots(points_pb2.ListLotsRequest(programme_id=p.programme_id, member_id=m.member_id)).lots
    assert (lot.lot_id, lot.source, lot.amount) == (done.grant.lot_id, "event_bonus", 150)
    assert lot.expire_time.ToMicroseconds() == clock.now_us() + 30 * DAY_US
    assert [mv.movement_id for mv in Api.history(ev, p.programme_id, m.member_id, "EVENT_BONUS")] == [
        done.movement.movement_id]
    (event,) = [e for e in ev.history(p.programme_id, m.member_id, membership_pb2.HISTORY_TAB_PARTICIPATION).events
                if e.kind == "event_bonus"]
    assert {k: event.details[k] for k in ("event_code", "occurrence_key", "points", "discount")} == {
        "event_code": "birthday", "occurrence_key": "2026", "points": "150", "discount": "none"}
    assert list(ev.verify().disagreements) == []


def test_the_same_occurrence_grants_once_by_request_id_and_by_occurrence_key(
        ev: Events, database_url: str) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, frequency=EVERY_N_DAYS, frequency_days=1)
    m = ev.enrol(p.programme_id)
    request = record_request(p.programme_id, m.member_id, "2026")
    first = ev.events.RecordEvent(request)
    after_first = written(database_url, m.member_id)

    assert ev.events.RecordEvent(request) == first
    again = ev.record(p.programme_id, m.member_id, "2026")
    assert again.already_granted
    assert (again.grant, again.movement) == (first.grant, first.movement)
    assert written(database_url, m.member_id) == after_first
    assert ev.balance(p.programme_id, m.member_id).active_points == 100
    # The same request_id with another occurrence is another request.
    other = record_request(p.programme_id, m.member_id, "2027", request_id=request.request_id)
    assert refused(lambda: ev.events.RecordEvent(other)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "idempotency_key_reused_with_different_request")


def test_one_occurrence_recorded_at_once_by_several_callers_grants_once(ev: Events) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id)
    m = ev.enrol(p.programme_id)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: until_not_busy(ev.record, p.programme_id, m.member_id, "2026"), range(4)))

    assert sorted(a.already_granted for a in answers) == [False, True, True, True]
    assert len({a.grant.SerializeToString() for a in answers}) == 1
    assert ev.balance(p.programme_id, m.member_id).active_points == 100


def test_once_grants_a_single_occurrence_ever(ev: Events, database_url: str, clock: ManualClock) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, "app_install", frequency=ONCE)
    m = ev.enrol(p.programme_id)
    ev.record(p.programme_id, m.member_id, "phone-1", "app_install")
    before = written(database_url, m.member_id)
    clock.advance(days=800)

    assert refused(lambda: ev.record(p.programme_id, m.member_id, "phone-2", "app_install")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "event_frequency_limit_reached")
    assert written(database_url, m.member_id) == before


def test_once_per_calendar_year_grants_again_in_the_next_year(ev: Events, clock: ManualClock) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, frequency=CALENDAR_YEAR)
    m = ev.enrol(p.programme_id)
    ev.record(p.programme_id, m.member_id, "2026")  # the clock starts on 2026-01-01
    clock.advance(days=364)  # 2026-12-31

    assert refused(lambda: ev.record(p.programme_id, m.member_id, "2026-again")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "event_frequency_limit_reached")
    clock.advance(days=1)  # 2027-01-01
    assert ev.record(p.programme_id, m.member_id, "2027").grant.points == 100
    assert ev.balance(p.programme_id, m.member_id).active_points == 200


def test_once_per_n_days_counts_from_the_last_grant(ev: Events, clock: ManualClock) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, "review", frequency=EVERY_N_DAYS, frequency_days=30, points=10)
    m = ev.enrol(p.programme_id)
    ev.record(p.programme_id, m.member_id, "review-1", "review")
    clock.advance(days=29)

    assert refused(lambda: ev.record(p.programme_id, m.member_id, "review-2", "review")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "event_frequency_limit_reached")
    clock.advance(days=1)
    assert not ev.record(p.programme_id, m.member_id, "review-2", "review").already_granted
    assert ev.balance(p.programme_id, m.member_id).active_points == 20


def at(us: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(us)
    return ts


def test_an_event_type_grants_only_within_its_active_window(ev: Events, clock: ManualClock) -> None:
    p = ev.programme()
    now = clock.now_us()
    ev.event_type(p.programme_id, "summer", frequency=EVERY_N_DAYS, frequency_days=1,
                  active_start_time=at(now + DAY_US), active_end_time=at(now + 3 * DAY_US))
    m = ev.enrol(p.programme_id)

    assert refused(lambda: ev.record(p.programme_id, m.member_id, "a", "summer")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "event_type_not_active")
    clock.advance(days=1)
    assert ev.record(p.programme_id, m.member_id, "a", "summer").grant.points == 100
    clock.advance(days=2)
    assert refused(lambda: ev.record(p.programme_id, m.member_id, "b", "summer")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "event_type_not_active")


def test_a_member_not_confirmed_gets_the_points_but_not_the_discount(ev: Events) -> None:
    p = ev.programme(require_confirmation=True)
    ev.event_type(p.programme_id, points=50, discount_bps=1_000)
    m = ev.enrol(p.programme_id)
    assert m.status == member_pb2.MEMBER_STATUS_NOT_CONFIRMED

    done = ev.record(p.programme_id, m.member_id, "2026")

    assert (done.grant.points, done.grant.discount_bps, done.grant.discount_withheld) == (50, 0, True)
    assert ev.balance(p.programme_id, m.member_id).active_points == 50
    assert quote(ev, p.programme_id, m.member_id, BASKET).discount_source == checkout_pb2.DISCOUNT_SOURCE_NONE


def test_a_deactivated_member_receives_nothing_and_nothing_is_written(ev: Events, database_url: str) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, discount_bps=1_000)
    m = ev.enrol(p.programme_id)
    ev.set_status(p.programme_id, m.member_id, member_pb2.MEMBER_STATUS_DEACTIVATED)
    before = written(database_url, m.member_id)

    assert refused(lambda: ev.record(p.programme_id, m.member_id, "2026")) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_deactivated")
    assert written(database_url, m.member_id) == before
    # Reactivated, the member may receive that occurrence: the refusal granted nothing.
    ev.set_status(p.programme_id, m.member_id, member_pb2.MEMBER_STATUS_ACTIVE)
    assert ev.record(p.programme_id, m.member_id, "2026").grant.discount_bps == 1_000


def test_an_event_discount_granted_while_active_applies_only_while_the_member_is_active(ev: Events) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, points=0, discount_bps=1_000, discount_days=30)
    m = ev.enrol(p.programme_id)
    ev.record(p.programme_id, m.member_id, "2026")
    ev.set_status(p.programme_id, m.member_id, member_pb2.MEMBER_STATUS_DEACTIVATED)

    assert quote(ev, p.programme_id, m.member_id, BASKET).discount_source == checkout_pb2.DISCOUNT_SOURCE_NONE
    ev.set_status(p.programme_id, m.member_id, member_pb2.MEMBER_STATUS_ACTIVE)
    assert quote(ev, p.programme_id, m.member_id, BASKET).discount_source == checkout_pb2.DISCOUNT_SOURCE_EVENT


def set_personal(ev: Events, programme_id: str, member_id: str, bps: int) -> None:
    ev.membership.SetPersonalDiscount(membership_pb2.SetPersonalDiscountRequest(
        request_id=new_id(), programme_id=programme_id, member_id=member_id, discount_bps=bps, comment="test"))


def test_a_next_order_event_discount_is_the_largest_until_an_order_using_it_is_captured(ev: Events) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, points=0, discount_bps=1_500)
    m = ev.enrol(p.programme_id)
    set_personal(ev, p.programme_id, m.member_id, 500)
    done = ev.record(p.programme_id, m.member_id, "2026")
    assert not done.grant.HasField("discount_end_time") and not done.HasField("movement")

    priced = quote(ev, p.programme_id, m.member_id, BASKET)
    assert (priced.discount_bps, priced.discount_source) == (1_500, checkout_pb2.DISCOUNT_SOURCE_EVENT)
    # A cancelled order does not use it; a captured one does.
    order = ev.checkout_order(p.programme_id, m.member_id, BASKET)
    ev.checkout.Cancel(checkout_pb2.CancelRequest(request_id=new_id(), programme_id=p.programme_id,
                                                  order_id=order.order_id))
    assert quote(ev, p.programme_id, m.member_id, BASKET).discount_source == checkout_pb2.DISCOUNT_SOURCE_EVENT
    ev.buy(p.programme_id, m.member_id, BASKET)

    priced = quote(ev, p.programme_id, m.member_id, BASKET)
    assert (priced.discount_bps, priced.discount_source) == (500, checkout_pb2.DISCOUNT_SOURCE_PERSONAL)


def test_a_smaller_event_discount_gives_way_and_is_kept_for_later(ev: Events) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, points=0, discount_bps=1_000)
    m = ev.enrol(p.programme_id)
    set_personal(ev, p.programme_id, m.member_id, 1_000)  # a tie: the personal discount wins
    ev.record(p.programme_id, m.member_id, "2026")

    assert quote(ev, p.programme_id, m.member_id, BASKET).discount_source == checkout_pb2.DISCOUNT_SOURCE_PERSONAL
    ev.buy(p.programme_id, m.member_id, BASKET)
    set_personal(ev, p.programme_id, m.member_id, 0)
    priced = quote(ev, p.programme_id, m.member_id, BASKET)
    assert (priced.discount_bps, priced.discount_source) == (1_000, checkout_pb2.DISCOUNT_SOURCE_EVENT)


def test_a_window_event_discount_applies_to_every_order_until_it_ends(ev: Events, clock: ManualClock) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, points=0, discount_bps=2_000, discount_days=7)
    m = ev.enrol(p.programme_id)
    done = ev.record(p.programme_id, m.member_id, "2026")
    assert done.grant.discount_end_time.ToMicroseconds() == clock.now_us() + 7 * DAY_US

    ev.buy(p.programme_id, m.member_id, BASKET)
    clock.advance(days=6)
    captured = ev.capture(p.programme_id, ev.checkout_order(p.programme_id, m.member_id, BASKET).order_id)
    assert (captured.order.pricing.discount_bps, captured.order.pricing.discount_source) == (
        2_000, checkout_pb2.DISCOUNT_SOURCE_EVENT)
    clock.advance(days=1)
    assert quote(ev, p.programme_id, m.member_id, BASKET).discount_source == checkout_pb2.DISCOUNT_SOURCE_NONE


def test_a_next_order_discount_is_kept_when_a_window_discount_of_its_rate_priced_the_order(
        ev: Events, clock: ManualClock) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, "week", points=0, discount_bps=1_000, discount_days=7)
    ev.event_type(p.programme_id, "next", points=0, discount_bps=1_000)
    m = ev.enrol(p.programme_id)
    ev.record(p.programme_id, m.member_id, "1", "week")
    ev.record(p.programme_id, m.member_id, "1", "next")

    ev.buy(p.programme_id, m.member_id, BASKET)
    clock.advance(days=8)  # the window has ended: what is left is the next-order discount
    priced = quote(ev, p.programme_id, m.member_id, BASKET)
    assert (priced.discount_bps, priced.discount_source) == (1_000, checkout_pb2.DISCOUNT_SOURCE_EVENT)
    ev.buy(p.programme_id, m.member_id, BASKET)
    assert quote(ev, p.programme_id, m.member_id, BASKET).discount_source == checkout_pb2.DISCOUNT_SOURCE_NONE


def test_event_types_are_created_updated_and_listed(ev: Events, clock: ManualClock) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, "review", frequency=ONCE)
    created = ev.event_type(p.programme_id, "birthday", points=100)
    changed = event_bonus_pb2.EventType()
    changed.CopyFrom(created)
    changed.points, changed.discount_bps, changed.discount_days = 250, 500, 3
    updated = ev.events.UpdateEventType(event_bonus_pb2.UpdateEventTypeRequest(
        request_id=new_id(), event_type=changed)).event_type

    assert (updated.points, updated.discount_bps, updated.create_time) == (250, 500, created.create_time)
    listed = ev.events.ListEventTypes(event_bonus_pb2.ListEventTypesRequest(programme_id=p.programme_id))
    assert [(t.code, t.points) for t in listed.event_types] == [("birthday", 250), ("review", 100)]
    assert refused(lambda: ev.event_type(p.programme_id, "birthday")) == (
        grpc.StatusCode.ALREADY_EXISTS, "event_type_code_taken")
    replayed = event_bonus_pb2.CreateEventTypeRequest(request_id=new_id(), event_type=event_bonus_pb2.EventType(
        programme_id=p.programme_id, code="app", name="App", points=5, frequency=ONCE,
        expiry=points_pb2.Expiry(expire_time=at(clock.now_us() + 90 * DAY_US))))
    assert ev.events.CreateEventType(replayed) == ev.events.CreateEventType(replayed)
    changed.code = "unknown"
    assert refused(lambda: ev.events.UpdateEventType(event_bonus_pb2.UpdateEventTypeRequest(
        request_id=new_id(), event_type=changed))) == (grpc.StatusCode.NOT_FOUND, "event_type_not_found")


BAD_TYPES = [
    ({"code": ""}, "event_type.code"),
    ({"code": "Birthday!"}, "event_type.code"),
    ({"name": ""}, "event_type.name"),
    ({"points": -1}, "event_type.points"),
    ({"points": 0, "discount_bps": 0}, "event_type.points"),
    ({"discount_bps": 10_001}, "event_type.discount_bps"),
    ({"discount_days": -1}, "event_type.discount_days"),
    ({"frequency": event_bonus_pb2.EVENT_FREQUENCY_UNSPECIFIED}, "event_type.frequency"),
    ({"frequency": 99}, "event_type.frequency"),
    ({"frequency": EVERY_N_DAYS, "frequency_days": 0}, "event_type.frequency_days"),
    ({"frequency": ONCE, "frequency_days": 3}, "event_type.frequency_days"),
    ({"expiry": points_pb2.Expiry(lifetime_days=0)}, "event_type.expiry.lifetime_days"),
    ({"active_start_time": at(2 * DAY_US), "active_end_time": at(DAY_US)}, "event_type.active_end_time"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_TYPES)
def test_a_bad_event_type_is_refused_with_its_field_and_nothing_is_written(
        ev: Events, database_url: str, fields: dict[str, Any], field: str) -> None:
    p = ev.programme()
    before = written(database_url)
    values: dict[str, Any] = dict(code="birthday", name="Birthday", points=100, frequency=CALENDAR_YEAR)
    values.update(fields)
    with pytest.raises(grpc.RpcError) as err:
        ev.events.CreateEventType(event_bonus_pb2.CreateEventTypeRequest(
            request_id=new_id(), event_type=event_bonus_pb2.EventType(programme_id=p.programme_id, **values)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_field(err.value) == field
    assert written(database_url) == before


@pytest.mark.parametrize(("fields", "field"), [
    ({"event_code": ""}, "event_code"),
    ({"occurrence_key": ""}, "occurrence_key"),
    ({"occurrence_key": "x" * 129}, "occurrence_key"),
    ({"member_id": "not-a-uuid"}, "member_id"),
])
def test_a_bad_record_event_is_refused_with_its_field_and_nothing_is_written(
        ev: Events, database_url: str, fields: dict[str, Any], field: str) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id)
    m = ev.enrol(p.programme_id)
    before = written(database_url, m.member_id)
    request = record_request(p.programme_id, m.member_id, "2026")
    for name, value in fields.items():
        setattr(request, name, value)
    with pytest.raises(grpc.RpcError) as err:
        ev.events.RecordEvent(request)
    assert (err.value.code(), violated_field(err.value)) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    assert written(database_url, m.member_id) == before


def test_an_unknown_event_code_is_not_found(ev: Events, database_url: str) -> None:
    p = ev.programme()
    m = ev.enrol(p.programme_id)
    before = written(database_url, m.member_id)
    assert refused(lambda: ev.record(p.programme_id, m.member_id, "2026", "no_such_event")) == (
        grpc.StatusCode.NOT_FOUND, "event_type_not_found")
    assert written(database_url, m.member_id) == before


def test_events_are_the_event_bonus_right_and_event_types_the_programme_admins(
        ev: Events, channel_with: Callable[..., grpc.Channel]) -> None:
    p = ev.programme()
    m = ev.enrol(p.programme_id)
    till, service, admin = (Events(channel_with(right)) for right in ("pos", "event_bonus", "programme_admin"))

    assert refused(lambda: till.record(p.programme_id, m.member_id, "2026")) == (
        grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    assert refused(lambda: service.event_type(p.programme_id)) == (
        grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    admin.event_type(p.programme_id)
    assert refused(lambda: admin.record(p.programme_id, m.member_id, "2026")) == (
        grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    assert service.record(p.programme_id, m.member_id, "2026").grant.points == 100
    listed = service.events.ListEventTypes(event_bonus_pb2.ListEventTypesRequest(programme_id=p.programme_id))
    assert [t.code for t in listed.event_types] == ["birthday"]


def test_the_export_holds_the_members_event_grants(ev: Events, channel_with: Callable[..., grpc.Channel]) -> None:
    p = ev.programme()
    ev.event_type(p.programme_id, discount_bps=300)
    m = ev.enrol(p.programme_id)
    ev.record(p.programme_id, m.member_id, "2026")
    desk = Members(channel_with("privacy"))

    document = json.loads(desk.members.ExportMemberData(export_request(p.programme_id, m.member_id)).document_json)

    assert [(g["event_code"], g["occurrence_key"], g["points"], g["discount_bps"])
            for g in document["event_grants"]] == [("birthday", "2026", 100, 300)]
