"""The points account as an operator reads it: every future burn-out, points awaiting activation,
the lots themselves, and the lot an accrual made."""

import grpc
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import member_pb2, points_pb2
from tests.grpc.conftest import new_id, refusal

DAY_S = 86_400


def _at(clock, days: float) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=clock.now_us() // 10**6 + int(days * DAY_S))


def _forecast(api, p, m, **fields) -> member_pb2.GetPointsForecastResponse:
    return api.members.GetPointsForecast(member_pb2.GetPointsForecastRequest(
        programme_id=p.programme_id, member_id=m.member_id, **fields))


def test_every_future_burn_out_is_forecast_not_only_the_next_30_days(api, clock):
    p = api.programme(point_lifetime_days=365)
    m = api.enrol(p.programme_id)
    for days, points in ((10, 1), (40, 2), (400, 3), (10, 4)):
        api.accrue(p.programme_id, m.member_id, points, expiry={"expire_time": _at(clock, days)})
    api.accrue(p.programme_id, m.member_id, 5, expiry={"never": True})
    # The card's headline stays 30 days.
    b = api.balance(p.programme_id, m.member_id)
    assert (b.burning_points, [x.points for x in b.burn_outs]) == (5, [5])
    got = _forecast(api, p, m)
    assert [(x.expire_time.seconds, x.points) for x in got.burn_outs] == [
        (_at(clock, 10).seconds, 5), (_at(clock, 40).seconds, 2), (_at(clock, 400).seconds, 3)]
    assert got.as_of_time.seconds == clock.now_us() // 10**6 and got.next_page_token == ""
    # From a later time, up to an end time.
    window = _forecast(api, p, m, as_of_time=_at(clock, 20), end_time=_at(clock, 100))
    assert [x.points for x in window.burn_outs] == [2]
    # Paged by expiry time.
    first = _forecast(api, p, m, page_size=2)
    rest = _forecast(api, p, m, page_size=2, page_token=first.next_page_token)
    assert [x.points for x in first.burn_outs] + [x.points for x in rest.burn_outs] == [5, 2, 3]
    assert rest.next_page_token == ""


def test_points_awaiting_activation_are_listed_with_their_source(api, clock):
    p = api.programme(activation_delay_days=14, default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 10_000)])
    api.capture(p.programme_id, order.order_id)
    got = _forecast(api, p, m)
    assert [(x.source, x.points, x.order_id, x.activate_time.seconds) for x in got.pending_activations] == [
        ("earned", 10, order.order_id, _at(clock, 14).seconds)]  # 10 % of 100.00, a point worth 1.00
    assert _forecast(api, p, m, as_of_time=_at(clock, 15)).pending_activations == []


@pytest.mark.parametrize("fields, field", [
    ({"as_of_time": timestamp_pb2.Timestamp(seconds=1)}, "as_of_time"),
    ({"end_time": timestamp_pb2.Timestamp(seconds=1)}, "end_time"),
    ({"page_size": 501}, "page_size"),
    ({"page_token": "bm90IG91cnM="}, "page_token"),
])
def test_a_forecast_refuses_bad_times_and_pages(api, fields, field):
    p = api.programme()
    m = api.enrol(p.programme_id)
    with pytest.raises(grpc.RpcError) as err:
        _forecast(api, p, m, **fields)
    assert refusal(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    assert field in err.value.details()


def test_lots_are_listed_for_operators_and_an_accrual_answers_with_its_lot(api, clock):
    p = api.programme(point_lifetime_days=365)
    m = api.enrol(p.programme_id)
    made = api.points.AccruePoints(points_pb2.AccruePointsRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id, points=30,
        expiry={"lifetime_days": 7})).lot
    assert (made.source, made.amount, made.remaining, made.expire_time.seconds) == (
        "manual_accrual", 30, 30, _at(clock, 7).seconds)
    api.accrue(p.programme_id, m.member_id, 20, expiry={"never": True})
    api.redeem(p.programme_id, m.member_id, 30)  # empties the first lot (it expires first)
    listed = api.points.ListLots(points_pb2.ListLotsRequest(programme_id=p.programme_id, member_id=m.member_id))
    assert [(x.lot_id, x.remaining, x.HasField("expire_time")) for x in listed.lots] == [
        (made.lot_id, 0, True), (listed.lots[1].lot_id, 20, False)]
    left = api.points.ListLots(points_pb2.ListLotsRequest(programme_id=p.programme_id, member_id=m.member_id,
                                                          only_with_points_left=True))
    assert [x.amount for x in left.lots] == [20]
    page = api.points.ListLots(points_pb2.ListLotsRequest(programme_id=p.programme_id, member_id=m.member_id,
                                                          page_size=1))
    after = api.points.ListLots(points_pb2.ListLotsRequest(programme_id=p.programme_id, member_id=m.member_id,
                                                           page_size=1, page_token=page.next_page_token))
    assert [x.lot_id for x in [*page.lots, *after.lots]] == [x.lot_id for x in listed.lots]
    # A replayed accrual answers with the lot as it was made.
    request = points_pb2.AccruePointsRequest(request_id=new_id(), programme_id=p.programme_id,
                                             member_id=m.member_id, points=5)
    once, twice = api.points.AccruePoints(request), api.points.AccruePoints(request)
    assert once.lot == twice.lot and once.lot.amount == 5
