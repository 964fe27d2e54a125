"""Read a refusal: its gRPC code, the ErrorInfo reason (docs/errors.md lists them) and the BadRequest fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: its proto path (``lines[0].unit_price_minor``), the reason and a message."""

    field: str
    reason: str
    description: str


@dataclass(frozen=True)
class Refusal:
    """What a caller needs to act on a failed call; ``reason`` is empty when the server gave none."""

    code: grpc.StatusCode
    reason: str
    message: str
    field_violations: tuple[FieldViolation, ...] = ()


def refusal(err: grpc.RpcError) -> Refusal:
    """(code, reason, field violations) of a failed call, sync (grpc.RpcError) or grpc.aio (AioRpcError)."""
    call: Any = err
    code, message = call.code(), call.details() or ""
    status = status_pb2.Status()
    for key, value in call.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            status.ParseFromString(value)
    reason = ""
    violations: list[FieldViolation] = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad_request):
            violations.extend(FieldViolation(v.field, v.reason, v.description) for v in bad_request.field_violations)
    return Refusal(code, reason, message, tuple(violations))
