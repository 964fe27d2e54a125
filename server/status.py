"""The one table from domain error kinds to gRPC status codes, and the rich status it produces."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from loyalty_core import errors

DOMAIN = "loyalty-core"

# Kind -> code. Every LoyaltyError subclass must appear (tests/server/test_status.py checks).
# idempotency_conflict: AIP-155 leaves ALREADY_EXISTS or FAILED_PRECONDITION open; a key reused
# with a different request is a state the caller must fix (new key), not a duplicate resource, so
# FAILED_PRECONDITION, with ErrorInfo reason "idempotency_key_reused_with_different_request".
STATUS_BY_KIND: dict[str, grpc.StatusCode] = {
    errors.InvalidArgument.kind: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound.kind: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists.kind: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition.kind: grpc.StatusCode.FAILED_PRECONDITION,
    errors.IdempotencyConflict.kind: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied.kind: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated.kind: grpc.StatusCode.UNAUTHENTICATED,
    errors.Unavailable.kind: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted.kind: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

INTERNAL_MESSAGE = "internal error; the server log has the details"


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(err: errors.LoyaltyError) -> grpc.Status:
    """A refusal as a rich status: ErrorInfo(reason=err.code) always, BadRequest for a field."""
    code = STATUS_BY_KIND[err.kind]
    info = error_details_pb2.ErrorInfo(
        reason=err.code,
        domain=DOMAIN,
        metadata={k: str(v) for k, v in err.details.items()},
    )
    details = [_pack(info)]
    if isinstance(err, errors.InvalidArgument) and err.field:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[error_details_pb2.BadRequest.FieldViolation(
                        field=err.field, description=err.message, reason=err.code
                    )]
                )
            )
        )
    status = status_pb2.Status(code=code.value[0], message=err.message, details=details)
    return rpc_status.to_status(status)


def internal_status() -> grpc.Status:
    """Any unexpected exception: a generic message; the traceback goes to the log only."""
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE))
