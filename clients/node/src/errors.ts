// Read a refusal: its gRPC code, the ErrorInfo reason (docs/errors.md lists them) and the BadRequest
// fields, decoded from the google.rpc.Status in grpc-status-details-bin (protos/google/rpc).

import { status, type ServiceError } from "@grpc/grpc-js";

import { BadRequest, ErrorInfo } from "./gen/google/rpc/error_details";
import { Status } from "./gen/google/rpc/status";

export const STATUS_DETAILS_KEY = "grpc-status-details-bin";

/** One bad field: its proto path (`lines[0].unit_price_minor`), the reason and a message. */
export interface FieldViolation {
  field: string;
  reason: string;
  description: string;
}

/** What a caller needs to act on a failed call; `reason` is empty when the server gave none. */
export interface Refusal {
  code: status;
  /** The code's name, as in docs/errors.md: `INVALID_ARGUMENT`. */
  codeName: string;
  reason: string;
  message: string;
  fieldViolations: FieldViolation[];
}

function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && typeof (err as Partial<ServiceError>).code === "number";
}

/** (code, reason, field violations) of a failed call; an error that is not a gRPC status is rethrown. */
export function refusal(err: unknown): Refusal {
  if (!isServiceError(err)) throw err;
  const found: Refusal = {
    code: err.code,
    codeName: status[err.code],
    reason: "",
    message: err.details,
    fieldViolations: [],
  };
  for (const value of err.metadata?.get(STATUS_DETAILS_KEY) ?? []) {
    for (const detail of Status.decode(value as Buffer).details) {
      const type = detail.typeUrl.slice(detail.typeUrl.lastIndexOf("/") + 1);
      if (type === "google.rpc.ErrorInfo") {
        found.reason = ErrorInfo.decode(detail.value).reason;
      } else if (type === "google.rpc.BadRequest") {
        for (const v of BadRequest.decode(detail.value).fieldViolations) {
          found.fieldViolations.push({ field: v.field, reason: v.reason, description: v.description });
        }
      }
    }
  }
  return found;
}
