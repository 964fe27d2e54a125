"""Issue 11, defect 8: enrolment keeps to the programme's window, and the welcome bonus has the same
explicit expiry choice as a manual accrual (including never)."""

import grpc
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import member_pb2, points_pb2, programme_pb2
from tests.grpc.conftest import new_id, refusal

DAY_S = 86_400


def at(clock, days: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=clock.now_us() // 10**6 + days * DAY_S)


def welcome_lot(api, programme_id: str, member_id: str) -> points_pb2.Lot:
    lot, = api.points.ListLots(points_pb2.ListLotsRequest(programme_id=programme_id, member_id=member_id)).lots
    assert lot.source == "welcome"
    return lot


def test_defect_8_enrolment_after_the_programmes_end_is_refused_and_writes_nothing(api, rows, clock):
    p = api.programme(start_time=at(clock, -10), end_time=at(clock, 1), welcome_bonus_points=50)
    api.enrol(p.programme_id)
    clock.advance(days=2)
    before = rows.count()
    with pytest.raises(grpc.RpcError) as err:
        api.enrol(p.programme_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "programme_not_active_now")
    after = rows.count()
    after["idempotency_key"] -= 1  # the refusal is kept under its key
    assert after == before


def test_defect_8_enrolment_before_the_programmes_start_is_refused_until_it_starts(api, clock):
    p = api.programme(start_time=at(clock, 3))
    with pytest.raises(grpc.RpcError) as err:
        api.enrol(p.programme_id)
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "programme_not_active_now")
    clock.advance(days=3)
    assert api.enrol(p.programme_id).member_id


def test_defect_8_a_welcome_bonus_can_never_expire_where_points_do(api, clock):
    p = api.programme(point_lifetime_days=30, welcome_bonus_points=100,
                      welcome_bonus_expiry=points_pb2.Expiry(never=True))
    assert p.welcome_bonus_expiry.WhichOneof("rule") == "never"
    m = api.enrol(p.programme_id)
    assert not welcome_lot(api, p.programme_id, m.member_id).HasField("expire_time")
    clock.advance(days=400)
    api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id))
    assert api.balance(p.programme_id, m.member_id).active_points == 100


@pytest.mark.parametrize("expiry, days", [
    (points_pb2.Expiry(lifetime_days=7), 7),
    (points_pb2.Expiry(programme_default=True), 30),
    (None, 30),  # unset, with a lifetime of 0: the programme's point lifetime, as before
])
def test_defect_8_a_welcome_bonus_lives_as_its_expiry_says(api, clock, expiry, days):
    fields = {} if expiry is None else {"welcome_bonus_expiry": expiry}
    p = api.programme(point_lifetime_days=30, welcome_bonus_points=100, **fields)
    m = api.enrol(p.programme_id)
    lot = welcome_lot(api, p.programme_id, m.member_id)
    assert lot.expire_time.ToSeconds() - clock.now_us() // 10**6 == days * DAY_S


def test_defect_8_a_welcome_bonus_until_a_date_is_not_given_once_the_date_passed(api, clock):
    p = api.programme(welcome_bonus_points=100, welcome_bonus_expiry=points_pb2.Expiry(expire_time=at(clock, 5)))
    first = api.enrol(p.programme_id)
    assert welcome_lot(api, p.programme_id, first.member_id).expire_time == at(clock, 5)
    clock.advance(days=5)
    late = api.members.EnrolMember(member_pb2.EnrolMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, phone="+15550001111"))
    assert late.welcome_bonus_points == 0
    assert api.balance(p.programme_id, late.member.member_id).active_points == 0


def test_defect_8_a_lifetime_beside_another_expiry_rule_is_refused(api):
    with pytest.raises(grpc.RpcError) as err:
        api.programmes.CreateProgramme(programme_pb2.CreateProgrammeRequest(
            request_id=new_id(), programme=programme_pb2.Programme(
                name=new_id(), currency_code="EUR", point_value_minor=100, welcome_bonus_points=10,
                welcome_bonus_lifetime_days=7, welcome_bonus_expiry=points_pb2.Expiry(never=True))))
    assert refusal(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
