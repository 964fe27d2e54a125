"""The error table: every domain error kind has a status; statuses carry ErrorInfo/BadRequest."""

import grpc
from google.rpc import error_details_pb2, status_pb2

from loyalty_core import errors
from server import status


def _details(st: grpc.Status) -> status_pb2.Status:
    (key, raw), = [(k, v) for k, v in st.trailing_metadata if k == "grpc-status-details-bin"]
    return status_pb2.Status.FromString(raw)


def test_every_error_kind_has_a_status_code():
    kinds = {cls.kind for cls in errors.LoyaltyError.__subclasses__()}
    assert kinds == set(status.STATUS_BY_KIND)
    assert {kind for kind in {c.kind for c in errors.CODES.values()}} <= set(status.STATUS_BY_KIND)


def test_invalid_argument_carries_a_field_violation_and_error_info():
    st = status.to_status(errors.InvalidArgument("field_required", "programme_id is required", field="programme_id"))
    assert st.code == grpc.StatusCode.INVALID_ARGUMENT
    proto = _details(st)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    assert proto.details[0].Unpack(info) and proto.details[1].Unpack(bad)
    assert (info.reason, info.domain) == ("field_required", "loyalty-core")
    assert bad.field_violations[0].field == "programme_id"


def test_idempotency_conflict_is_failed_precondition_with_its_reason():
    st = status.to_status(errors.IdempotencyConflict("idempotency_key_reused_with_different_request", "reused"))
    assert st.code == grpc.StatusCode.FAILED_PRECONDITION
    info = error_details_pb2.ErrorInfo()
    assert _details(st).details[0].Unpack(info)
    assert info.reason == "idempotency_key_reused_with_different_request"


def test_internal_says_nothing_of_the_cause():
    st = status.internal_status()
    assert st.code == grpc.StatusCode.INTERNAL
    assert st.details == status.INTERNAL_MESSAGE
