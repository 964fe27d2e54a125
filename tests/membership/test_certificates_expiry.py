"""Certificates in the expiry run and the liability gauge, and two tills presenting one certificate at
once (issue 13): exactly one holds it."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from prometheus_client import CollectorRegistry

from loyalty.v1 import certificate_pb2, checkout_pb2, member_pb2, points_pb2
from loyalty_core.clock import ManualClock
from server.metrics import Metrics
from tests.grpc.conftest import new_id, refusal, until_not_busy
from tests.membership.conftest import refused
from tests.membership.test_certificates import Certificates
from tests.membership.test_certificates_at_the_till import check_out, issued, movements

DAY_US = 86_400_000_000
EXPIRED = certificate_pb2.CERTIFICATE_STATE_EXPIRED
ACTIVE = certificate_pb2.CERTIFICATE_STATE_ACTIVE


@pytest.fixture
def desk(channel_with: Callable[..., grpc.Channel]) -> Certificates:
    return Certificates(channel_with())


def run_expiry(api: Certificates, programme_id: str) -> points_pb2.RunExpiryResponse:
    return api.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=programme_id))


def test_the_expiry_run_burns_what_is_left_on_expired_certificates_once(
        desk: Certificates, clock: ManualClock, database_url: str) -> None:
    p = desk.programme()
    m = desk.enrol(p.programme_id)
    short, _ = issued(desk, p.programme_id, m.member_id, 70, days=5)
    long, _ = issued(desk, p.programme_id, m.member_id, 90, days=50)
    (never,) = desk.issue(p.programme_id, m.member_id, expiry=certificate_pb2.CertificateExpiry(never=True))
    clock.advance(days=5)

    run = run_expiry(desk, p.programme_id)

    assert (run.certificates_expired, run.certificate_points_expired) == (1, 70)
    assert (desk.get(short).state, desk.get(short).remaining_points) == (EXPIRED, 0)
    assert desk.get(long).state == ACTIVE and desk.get(never.certificate).state == ACTIVE
    assert movements(database_url, short.certificate_id)[-1] == ("expired", -70, 0)
    assert run_expiry(desk, p.programme_id).certificates_expired == 0
    assert list(desk.verify().disagreements) == []


def test_a_lapsed_checkout_hold_goes_back_and_a_certificate_expired_meanwhile_burns(
        desk: Certificates, clock: ManualClock, database_url: str) -> None:
    p = desk.programme(hold_ttl_seconds=3_600)
    m = desk.enrol(p.programme_id)
    lasting, lasting_code = issued(desk, p.programme_id, m.member_id, 30, days=10)
    ending, ending_code = issued(desk, p.programme_id, m.member_id, 20, days=1)
    clock.advance(seconds=23 * 3_600)
    order = check_out(desk, p.programme_id, m.member_id, [lasting_code, ending_code])
    clock.advance(seconds=2 * 3_600)

    run = run_expiry(desk, p.programme_id)

    assert (run.certificate_holds_released, run.certificates_expired, run.certificate_points_expired) == (2, 1, 20)
    assert (desk.get(lasting).state, desk.get(lasting).remaining_points) == (ACTIVE, 30)
    assert desk.get(ending).state == EXPIRED
    assert [k for k, _, _ in movements(database_url, ending.certificate_id)] == [
        "issued", "held", "released", "expired"]
    # The run cancelled the order whose hold it released.
    assert refused(lambda: desk.capture(p.programme_id, order.order_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "hold_not_open")
    assert list(desk.verify().disagreements) == []


def test_the_liability_gauge_counts_what_is_left_on_certificates_held_part_included(
        desk: Certificates, clock: ManualClock, database_url: str) -> None:
    p = desk.programme()
    m = desk.enrol(p.programme_id)
    when = timestamp_pb2.Timestamp()
    when.FromJsonString("2099-05-10T12:00:00Z")
    (c,) = desk.issue(p.programme_id, m.member_id, value=400,
                      expiry=certificate_pb2.CertificateExpiry(expire_time=when))
    check_out(desk, p.programme_id, m.member_id, [c.code])
    gone, _ = issued(desk, p.programme_id, m.member_id, 55)
    desk.cancel(p.programme_id, gone)
    metrics = Metrics(CollectorRegistry())
    metrics.watch_ledger(database_url, clock, max_age_s=0)

    owed = metrics.registry.get_sample_value("loyalty_outstanding_points",
                                             {"programme_id": p.programme_id, "expiry_month": "2099-05"})

    assert owed == 400


def test_two_tills_presenting_one_certificate_at_once_exactly_one_holds_it(
        desk: Certificates, channel_with: Callable[..., grpc.Channel]) -> None:
    p = desk.programme()
    m = desk.enrol(p.programme_id)
    c, code = issued(desk, p.programme_id, m.member_id, 500)
    tills = [Certificates(channel_with("pos")) for _ in range(4)]

    def present(till: Certificates) -> str:
        try:
            until_not_busy(check_out, till, p.programme_id, m.member_id, [code])
        except grpc.RpcError as err:
            return refusal(err)[1]
        return "held"

    with ThreadPoolExecutor(max_workers=len(tills)) as pool:
        outcomes = sorted(pool.map(present, tills))

    assert outcomes == ["certificate_not_usable"] * 3 + ["held"]
    held = desk.get(c)
    assert (held.held_points, held.remaining_points) == (100, 500)
    assert list(desk.verify().disagreements) == []


def test_a_lapsed_hold_of_certificates_only_refuses_its_capture_and_the_run_cancels_its_order(
        desk: Certificates, clock: ManualClock) -> None:
    p = desk.programme(hold_ttl_seconds=60)
    m = desk.enrol(p.programme_id)
    _, code = issued(desk, p.programme_id, m.member_id, 30)
    order = check_out(desk, p.programme_id, m.member_id, [code])
    clock.advance(seconds=61)
    assert refused(lambda: desk.capture(p.programme_id, order.order_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "hold_expired")

    run_expiry(desk, p.programme_id)

    got = desk.checkout.GetOrder(checkout_pb2.GetOrderRequest(programme_id=p.programme_id, order_id=order.order_id))
    assert got.order.state == checkout_pb2.ORDER_STATE_CANCELLED


def test_off_boarding_releases_the_certificates_its_checkouts_hold_and_erasure_waits_for_them(
        desk: Certificates, channel_with: Callable[..., grpc.Channel]) -> None:
    p = desk.programme()
    m = desk.enrol(p.programme_id)
    c, code = issued(desk, p.programme_id, m.member_id, 30)
    check_out(desk, p.programme_id, m.member_id, [code])
    privacy = Certificates(channel_with("privacy"))

    assert refused(lambda: privacy.members.EraseMember(member_pb2.EraseMemberRequest(
        request_id=new_id(), programme_id=p.programme_id, member_id=m.member_id))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_has_open_holds")
    desk.members.OffboardMember(member_pb2.OffboardMemberRequest(request_id=new_id(), programme_id=p.programme_id,
                                                                 member_id=m.member_id))

    assert (desk.get(c).state, desk.get(c).remaining_points) == (ACTIVE, 30)
    assert list(desk.verify().disagreements) == []
