"""CertificateService: issue, cancel, get and list bonus certificates."""

from __future__ import annotations

from typing import Any

from grpc import aio

from loyalty.v1 import certificate_pb2, certificate_pb2_grpc
from loyalty_core import certificates
from loyalty_core.certificates import CancelCertificates, Certificate, CertificateExpiry, CertificateFilter, Issue
from loyalty_core.service import certificates as cases
from server.servicers.convert import enum_value, micros, timestamp, write_context

STATE = {
    certificate_pb2.CERTIFICATE_STATE_ACTIVE: certificates.ACTIVE,
    certificate_pb2.CERTIFICATE_STATE_HELD: certificates.HELD,
    certificate_pb2.CERTIFICATE_STATE_USED: certificates.USED,
    certificate_pb2.CERTIFICATE_STATE_EXPIRED: certificates.EXPIRED,
    certificate_pb2.CERTIFICATE_STATE_CANCELLED: certificates.CANCELLED,
}
STATE_VALUE = {name: value for value, name in STATE.items()}


def expiry_to_domain(message: certificate_pb2.CertificateExpiry) -> CertificateExpiry:
    term = message.WhichOneof("term")
    if term == "days":
        return CertificateExpiry(certificates.IN_DAYS, count=message.days)
    if term == "months":
        return CertificateExpiry(certificates.IN_MONTHS, count=message.months)
    if term == "expire_time":
        return CertificateExpiry(certificates.ON_DATE, expires_at=micros(message, "expire_time") or 0)
    return CertificateExpiry(certificates.NEVER if term == "never" and message.never else "")


def certificate_to_proto(c: Certificate) -> certificate_pb2.Certificate:
    return certificate_pb2.Certificate(
        certificate_id=c.certificate_id, member_id=c.member_id, programme_id=c.programme_id,
        value_points=c.value_points, remaining_points=c.remaining_points + c.held_points, held_points=c.held_points,
        held_order_id=c.held_order_id, multiple_orders=c.multiple_orders, state=STATE_VALUE[c.state],
        expire_time=timestamp(c.expires_at), note=c.note, issue_time=timestamp(c.issued_at),
        end_time=timestamp(c.ended_at), end_reason=c.end_reason,
    )


class CertificateServicer(certificate_pb2_grpc.CertificateServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.db, self.clock = deps.db, deps.clock

    async def IssueCertificates(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Issue(request.request_id, request.programme_id, tuple(request.member_ids), request.value_points,
                    expiry_to_domain(request.expiry), request.note,
                    write_context(request.context, context, request.request_id))
        issued = await cases.issue(self.db, self.clock, req)
        return certificate_pb2.IssueCertificatesResponse(certificates=[
            certificate_pb2.IssuedCertificate(certificate=certificate_to_proto(c.certificate), code=c.code)
            for c in issued.certificates])

    async def CancelCertificates(self, request: Any, context: aio.ServicerContext) -> Any:
        req = CancelCertificates(request.request_id, request.programme_id,
                                 tuple((r.member_id, r.certificate_id) for r in request.certificates), request.reason,
                                 write_context(request.context, context, request.request_id))
        cancelled = await cases.cancel(self.db, self.clock, req)
        return certificate_pb2.CancelCertificatesResponse(
            certificates=[certificate_to_proto(c) for c in cancelled.certificates])

    async def GetCertificate(self, request: Any, context: aio.ServicerContext) -> Any:
        found = await cases.get(self.db, request.programme_id, request.member_id, request.certificate_id)
        return certificate_pb2.GetCertificateResponse(certificate=certificate_to_proto(found))

    async def ListCertificates(self, request: Any, context: aio.ServicerContext) -> Any:
        page = await cases.list_certificates(self.db, CertificateFilter(
            request.programme_id, request.member_id,
            tuple(enum_value(STATE, s, f"states[{i}]", unset=None) for i, s in enumerate(request.states)),
            micros(request, "expire_from_time"), micros(request, "expire_before_time"), request.page_size,
            request.page_token,
        ))
        return certificate_pb2.ListCertificatesResponse(certificates=[certificate_to_proto(c) for c in page.items],
                                                        next_page_token=page.next_page_token)
