"""Issue 11, defect 11: an expiry never acts on a time later than now."""

import grpc
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import checkout_pb2, points_pb2
from tests.grpc.conftest import new_id, refusal

DAY_S = 86_400


def test_an_expiry_as_of_a_later_time_is_refused_and_burns_nothing(api, clock):
    p = api.programme(point_lifetime_days=365)
    m = api.enrol(p.programme_id)
    api.accrue(p.programme_id, m.member_id, 100)
    order = api.checkout_order(p.programme_id, m.member_id, [("bar", 1, 5_000)], points=20)
    later = timestamp_pb2.Timestamp(seconds=clock.now_us() // 10**6 + 400 * DAY_S)
    with pytest.raises(grpc.RpcError) as err:
        api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id, as_of_time=later))
    assert refusal(err.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    assert "as_of_time" in err.value.details()
    b = api.balance(p.programme_id, m.member_id)
    assert (b.active_points, b.held_points, b.expired_total_points) == (80, 20, 0)
    # The live hold is still the till's.
    captured = api.capture(p.programme_id, order.order_id)
    assert captured.order.state == checkout_pb2.ORDER_STATE_CAPTURED
    # Now (or any earlier time) is accepted.
    now = timestamp_pb2.Timestamp(seconds=clock.now_us() // 10**6)
    api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=p.programme_id, as_of_time=now))
