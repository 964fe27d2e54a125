"""Bonus certificates over gRPC (issue 13, seed 004): issue to one or many members, codes stored only
hashed, expiry terms, cancel, list, the ledger's records and VerifyLedger, rights, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import certificate_pb2, certificate_pb2_grpc, member_pb2, programme_pb2
from loyalty_core import certificates
from loyalty_core.clock import ManualClock
from tests.grpc.conftest import new_id
from tests.grpc.test_int64_bounds import violated_field
from tests.membership.conftest import Members, refused
from tests.membership.test_privacy import export_request

DAY_US = 86_400_000_000
ACTIVE = certificate_pb2.CERTIFICATE_STATE_ACTIVE
CANCELLED = certificate_pb2.CERTIFICATE_STATE_CANCELLED
MULTIPLE = programme_pb2.CERTIFICATE_REDEMPTION_MULTIPLE_ORDERS


class Certificates(Members):
    """The membership shortcuts plus CertificateService and its shortcuts."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.certificates = certificate_pb2_grpc.CertificateServiceStub(channel)

    def issue(self, programme_id: str, *member_ids: str, value: int = 500, days: int = 30,
              **fields: Any) -> list[certificate_pb2.IssuedCertificate]:
        return list(self.certificates.IssueCertificates(issue_request(programme_id, list(member_ids), value, days,
                                                                      **fields)).certificates)

    def cancel(self, programme_id: str, *issued: certificate_pb2.Certificate,
               reason: str = "goodwill withdrawn") -> list[certificate_pb2.Certificate]:
        return list(self.certificates.CancelCertificates(certificate_pb2.CancelCertificatesRequest(
            request_id=new_id(), programme_id=programme_id, reason=reason,
            certificates=[certificate_pb2.CertificateRef(member_id=c.member_id, certificate_id=c.certificate_id)
                          for c in issued])).certificates)

    def listed(self, programme_id: str, **fields: Any) -> certificate_pb2.ListCertificatesResponse:
        return self.certificates.ListCertificates(certificate_pb2.ListCertificatesRequest(
            programme_id=programme_id, **fields))

    def get(self, c: certificate_pb2.Certificate) -> certificate_pb2.Certificate:
        return self.certificates.GetCertificate(certificate_pb2.GetCertificateRequest(
            programme_id=c.programme_id, member_id=c.member_id, certificate_id=c.certificate_id)).certificate


def issue_request(programme_id: str, member_ids: list[str], value: int = 500, days: int | None = 30,
                  **fields: Any) -> certificate_pb2.IssueCertificatesRequest:
    fields.setdefault("expiry", certificate_pb2.CertificateExpiry(days=days))
    return certificate_pb2.IssueCertificatesRequest(request_id=new_id(), programme_id=programme_id,
                                                    member_ids=member_ids, value_points=value, **fields)


@pytest.fixture
def cert(channel_with: Callable[..., grpc.Channel]) -> Certificates:
    return Certificates(channel_with())


def written(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("certificate", "certificate_movement", "idempotency_key")}


def every_stored_text(database_url: str) -> str:
    """Every row of every table that may hold a request, a result or a certificate, as text."""
    with psycopg.connect(database_url) as conn:
        return "\n".join(str(row) for table in ("certificate", "certificate_movement", "idempotency_key",
                                                "member_event", "outbox_event")
                         for row in conn.execute(f"SELECT t::text FROM {table} t"))


def test_issuing_to_many_members_gives_each_a_certificate_with_its_own_code_shown_once(
        cert: Certificates, clock: ManualClock, database_url: str) -> None:
    p = cert.programme()
    a, b = cert.enrol(p.programme_id), cert.enrol(p.programme_id)
    request = issue_request(p.programme_id, [a.member_id, b.member_id], 500, 30, note="sorry for the wait")

    first = cert.certificates.IssueCertificates(request).certificates

    assert [c.certificate.member_id for c in first] == [a.member_id, b.member_id]
    assert len({c.certificate.certificate_id for c in first}) == len({c.code for c in first}) == 2
    for c in first:
        assert (c.certificate.value_points, c.certificate.remaining_points, c.certificate.state) == (500, 500, ACTIVE)
        assert c.certificate.expire_time.ToMicroseconds() == clock.now_us() + 30 * DAY_US
        assert (c.certificate.note, c.certificate.multiple_orders) == ("sorry for the wait", False)
        assert len(c.code.replace("-", "")) == certificates.CODE_LENGTH
    # A replay answers the same certificates, without their codes: they were never stored.
    again = cert.certificates.IssueCertificates(request).certificates
    assert [c.certificate for c in again] == [c.certificate for c in first]
    assert [c.code for c in again] == ["", ""]
    stored = every_stored_text(database_url)
    for c in first:
        assert c.code not in stored and c.code.replace("-", "") not in stored
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM certificate WHERE member_id = ANY(%s::uuid[])",
                            ([a.member_id, b.member_id],)).fetchone()[0] == 2


def test_expiry_terms_days_months_a_date_and_never(cert: Certificates, clock: ManualClock) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    on = timestamp_pb2.Timestamp()
    on.FromMicroseconds(clock.now_us() + 10 * DAY_US)
    terms = [certificate_pb2.CertificateExpiry(months=1), certificate_pb2.CertificateExpiry(expire_time=on),
             certificate_pb2.CertificateExpiry(never=True)]

    months, date, never = (cert.issue(p.programme_id, m.member_id, expiry=t)[0].certificate for t in terms)

    assert months.expire_time.ToMicroseconds() == certificates.add_months(clock.now_us(), 1)
    assert date.expire_time.ToMicroseconds() == on.ToMicroseconds()
    assert not never.HasField("expire_time")


@pytest.mark.parametrize("start, months, end", [
    ("2026-01-31T10:00", 1, "2026-02-28T10:00"),
    ("2028-01-31T10:00", 1, "2028-02-29T10:00"),
    ("2026-03-31T00:00", 1, "2026-04-30T00:00"),
    ("2026-01-15T23:59", 1, "2026-02-15T23:59"),
    ("2026-11-30T08:00", 3, "2027-02-28T08:00"),
    ("2026-02-28T08:00", 1, "2026-03-28T08:00"),
    ("2026-05-31T08:00", 12, "2027-05-31T08:00"),
])
def test_months_are_calendar_months_ending_on_the_last_day_of_a_shorter_month(start: str, months: int,
                                                                               end: str) -> None:
    def us(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)

    assert certificates.add_months(us(start), months) == us(end)


def test_cancelling_burns_what_is_left_keeps_the_reason_and_lists_by_state(
        cert: Certificates, database_url: str) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    kept, gone = (cert.issue(p.programme_id, m.member_id)[0].certificate for _ in range(2))

    (cancelled,) = cert.cancel(p.programme_id, gone, reason="issued by mistake")

    assert (cancelled.state, cancelled.remaining_points, cancelled.end_reason) == (CANCELLED, 0, "issued by mistake")
    assert cert.get(gone) == cancelled
    assert [c.certificate_id for c in cert.listed(p.programme_id, states=[ACTIVE]).certificates] == [
        kept.certificate_id]
    assert [c.certificate_id for c in cert.listed(p.programme_id, member_id=m.member_id,
                                                  states=[CANCELLED]).certificates] == [gone.certificate_id]
    assert refused(lambda: cert.cancel(p.programme_id, gone)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "certificate_not_active")
    with psycopg.connect(database_url) as conn:
        kinds = conn.execute("SELECT kind, points FROM certificate_movement WHERE certificate_id = %s"
                             " ORDER BY movement_id", (gone.certificate_id,)).fetchall()
    assert kinds == [("issued", 500), ("cancelled", -500)]
    assert list(cert.verify().disagreements) == []


def test_a_cancel_of_several_is_all_or_nothing(cert: Certificates, database_url: str) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    one, two = (cert.issue(p.programme_id, m.member_id)[0].certificate for _ in range(2))
    cert.cancel(p.programme_id, two)
    before = written(database_url)

    assert refused(lambda: cert.cancel(p.programme_id, one, two)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "certificate_not_active")
    assert cert.get(one).state == ACTIVE
    assert {k: v for k, v in written(database_url).items() if k != "idempotency_key"} == {
        k: v for k, v in before.items() if k != "idempotency_key"}


def test_lists_page_by_member_and_programme_and_filter_by_expiry(cert: Certificates, clock: ManualClock) -> None:
    p = cert.programme()
    a, b = cert.enrol(p.programme_id), cert.enrol(p.programme_id)
    soon = [cert.issue(p.programme_id, a.member_id, b.member_id, days=5)]
    clock.advance(seconds=1)
    late = [cert.issue(p.programme_id, a.member_id, days=50)]
    ids = [c.certificate.certificate_id for batch in soon + late for c in batch]

    seen, token = [], ""
    while True:
        page = cert.listed(p.programme_id, page_size=2, page_token=token)
        seen += [c.certificate_id for c in page.certificates]
        token = page.next_page_token
        if not token:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 3
    before = timestamp_pb2.Timestamp()
    before.FromMicroseconds(clock.now_us() + 10 * DAY_US)
    assert {c.member_id for c in cert.listed(p.programme_id, expire_before_time=before).certificates} == {
        a.member_id, b.member_id}
    assert [c.certificate_id for c in cert.listed(p.programme_id, member_id=a.member_id,
                                                  expire_from_time=before).certificates] == [
        late[0][0].certificate.certificate_id]


def test_a_programme_that_lets_certificates_pay_several_orders_issues_such_certificates(cert: Certificates) -> None:
    p = cert.programme(certificate_redemption=MULTIPLE)
    m = cert.enrol(p.programme_id)

    assert p.certificate_redemption == MULTIPLE
    assert cert.issue(p.programme_id, m.member_id)[0].certificate.multiple_orders


def test_a_deactivated_or_offboarded_member_receives_none_and_the_whole_issue_is_refused(
        cert: Certificates, database_url: str) -> None:
    p = cert.programme()
    fine, off = cert.enrol(p.programme_id), cert.enrol(p.programme_id)
    cert.set_status(p.programme_id, off.member_id, member_pb2.MEMBER_STATUS_DEACTIVATED)
    before = written(database_url)

    assert refused(lambda: cert.issue(p.programme_id, fine.member_id, off.member_id)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "member_deactivated")
    after = written(database_url)
    assert (after["certificate"], after["certificate_movement"]) == (before["certificate"],
                                                                    before["certificate_movement"])


@pytest.mark.parametrize("change, field", [
    (dict(member_ids=[]), "member_ids"),
    (dict(member_ids=["not-a-uuid"]), "member_ids[0]"),
    (dict(value_points=0), "value_points"),
    (dict(expiry=certificate_pb2.CertificateExpiry()), "expiry"),
    (dict(expiry=certificate_pb2.CertificateExpiry(days=0)), "expiry.days"),
    (dict(expiry=certificate_pb2.CertificateExpiry(months=121)), "expiry.months"),
    (dict(note="x" * 1001), "note"),
    (dict(request_id=""), "request_id"),
])
def test_bad_issues_are_refused_naming_the_field_and_write_nothing(
        cert: Certificates, database_url: str, change: dict[str, Any], field: str) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    request = issue_request(p.programme_id, [m.member_id])
    request.MergeFrom(certificate_pb2.IssueCertificatesRequest(**{k: v for k, v in change.items()
                                                                  if k not in ("member_ids", "expiry")}))
    for name, value in change.items():
        if name == "member_ids":
            del request.member_ids[:]
            request.member_ids.extend(value)
        elif name == "expiry":
            request.expiry.CopyFrom(value)
        elif not value:
            request.ClearField(name)
    before = written(database_url)

    with pytest.raises(grpc.RpcError) as err:
        cert.certificates.IssueCertificates(request)

    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_field(err.value) == field
    assert written(database_url) == before


def test_the_same_member_twice_is_refused(cert: Certificates) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    with pytest.raises(grpc.RpcError) as err:
        cert.issue(p.programme_id, m.member_id, m.member_id)
    assert violated_field(err.value) == "member_ids[1]"


def test_issuing_and_cancelling_are_their_own_right_and_reading_is_read_onlys(
        cert: Certificates, channel_with: Callable[..., grpc.Channel]) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    till, admin, sre, desk = (Certificates(channel_with(r))
                              for r in ("pos", "programme_admin", "read_only", "certificate_issue"))

    for caller in (till, admin, sre):
        assert refused(lambda: caller.issue(p.programme_id, m.member_id)) == (
            grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    issued = desk.issue(p.programme_id, m.member_id)[0].certificate
    assert refused(lambda: till.cancel(p.programme_id, issued)) == (
        grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    assert [c.certificate_id for c in sre.listed(p.programme_id).certificates] == [issued.certificate_id]
    assert sre.get(issued).certificate_id == issued.certificate_id
    desk.cancel(p.programme_id, issued)


def test_the_export_holds_the_members_certificates_without_their_code_hash(
        cert: Certificates, channel_with: Callable[..., grpc.Channel]) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    (issued,) = cert.issue(p.programme_id, m.member_id, value=250)
    desk = Members(channel_with("privacy"))

    document = json.loads(desk.members.ExportMemberData(export_request(p.programme_id, m.member_id)).document_json)

    assert [(c["certificate_id"], c["value_points"]) for c in document["certificates"]] == [
        (issued.certificate.certificate_id, 250)]
    assert all("code_hash" not in c for c in document["certificates"])
    assert [mv["kind"] for mv in document["certificate_movements"]] == ["issued"]


def test_verify_finds_a_certificate_whose_balance_disagrees_with_its_movements(
        cert: Certificates, database_url: str) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    (issued,) = cert.issue(p.programme_id, m.member_id)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE certificate SET remaining_points = 400 WHERE certificate_id = %s",
                     (issued.certificate.certificate_id,))

    found = {d.invariant for d in cert.verify().disagreements}

    assert found == {"certificate_remaining_equals_movements"}
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE certificate SET remaining_points = 500 WHERE certificate_id = %s",
                     (issued.certificate.certificate_id,))


@pytest.mark.parametrize("refs, reason, field", [
    ([], "goodwill", "certificates"),
    ([("bad", None)], "goodwill", "certificates[0].member_id"),
    ([(None, "bad")], "goodwill", "certificates[0]"),
    ([(None, None)], "", "reason"),
    ([(None, None)], "x" * 1001, "reason"),
])
def test_bad_cancels_are_refused_naming_the_field_and_write_nothing(
        cert: Certificates, database_url: str, refs: list[tuple[str | None, str | None]], reason: str,
        field: str) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    (issued,) = cert.issue(p.programme_id, m.member_id)
    before = written(database_url)
    request = certificate_pb2.CancelCertificatesRequest(
        request_id=new_id(), programme_id=p.programme_id, reason=reason,
        certificates=[certificate_pb2.CertificateRef(member_id=member or m.member_id,
                                                     certificate_id=cid or issued.certificate.certificate_id)
                      for member, cid in refs])

    with pytest.raises(grpc.RpcError) as err:
        cert.certificates.CancelCertificates(request)

    assert (err.value.code(), violated_field(err.value)) == (grpc.StatusCode.INVALID_ARGUMENT, field)
    assert written(database_url) == before


def test_a_cancel_replayed_answers_the_same_and_cancels_once(cert: Certificates, database_url: str) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    (issued,) = cert.issue(p.programme_id, m.member_id)
    request = certificate_pb2.CancelCertificatesRequest(
        request_id=new_id(), programme_id=p.programme_id, reason="duplicate",
        certificates=[certificate_pb2.CertificateRef(member_id=m.member_id,
                                                     certificate_id=issued.certificate.certificate_id)])
    first = cert.certificates.CancelCertificates(request)
    after = written(database_url)

    assert cert.certificates.CancelCertificates(request) == first
    assert written(database_url) == after
    request.reason = "another reason"
    assert refused(lambda: cert.certificates.CancelCertificates(request)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "idempotency_key_reused_with_different_request")


def test_an_unknown_certificate_is_not_found(cert: Certificates) -> None:
    p = cert.programme()
    m = cert.enrol(p.programme_id)
    ghost = certificate_pb2.Certificate(member_id=m.member_id, certificate_id=new_id(), programme_id=p.programme_id)

    assert refused(lambda: cert.cancel(p.programme_id, ghost)) == (grpc.StatusCode.NOT_FOUND, "certificate_not_found")
    assert refused(lambda: cert.get(ghost)) == (grpc.StatusCode.NOT_FOUND, "certificate_not_found")
