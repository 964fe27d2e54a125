"""Domain errors: every refusal loyalty-core can give, each named after the rule it enforces."""

from __future__ import annotations

from typing import Any, ClassVar


class LoyaltyError(Exception):
    """A refusal by a business rule: a stable snake_case ``code`` and a message a caller can act on.

    The subclass says what kind of refusal it is; ``server.status`` maps each kind to one
    gRPC status code. Codes are registered once in ``CODES`` below; raising an unregistered
    code, or a code under the wrong kind, is a programmer error.
    """

    kind: ClassVar[str] = "internal"

    def __init__(self, code: str, message: str, *, field: str | None = None, **details: Any) -> None:
        registered = CODES.get(code)
        assert registered is type(self), f"error code {code!r} is registered as {registered}, not {type(self).__name__}"
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.details = details

    def __repr__(self) -> str:
        where = f" field={self.field}" if self.field else ""
        return f"{type(self).__name__}({self.code}{where}: {self.message})"

    def __eq__(self, other: object) -> bool:
        # Two refusals are the same refusal when kind, code and field agree (parity tests compare them).
        return (
            isinstance(other, LoyaltyError)
            and type(self) is type(other)
            and (self.code, self.field) == (other.code, other.field)
        )

    __hash__ = Exception.__hash__


class InvalidArgument(LoyaltyError):
    """The request itself is malformed or out of range; ``field`` names the offending field."""

    kind = "invalid_argument"


class NotFound(LoyaltyError):
    """A programme, member, order, hold or lot the request names does not exist."""

    kind = "not_found"


class AlreadyExists(LoyaltyError):
    """The request would create something that must be unique and already is taken."""

    kind = "already_exists"


class FailedPrecondition(LoyaltyError):
    """The request is well formed but the state it meets does not allow it."""

    kind = "failed_precondition"


class IdempotencyConflict(LoyaltyError):
    """An idempotency key was reused with a different request."""

    kind = "idempotency_conflict"


class PermissionDenied(LoyaltyError):
    """The caller is known but lacks the right or programme the request needs."""

    kind = "permission_denied"


class Unauthenticated(LoyaltyError):
    """The caller sent no credential, or one loyalty-core does not know."""

    kind = "unauthenticated"


class Unavailable(LoyaltyError):
    """A dependency (the database) cannot be reached now; the same request may succeed later."""

    kind = "unavailable"


class ResourceExhausted(LoyaltyError):
    """A rate limit was hit; the request may be retried later."""

    kind = "resource_exhausted"


CODES: dict[str, type[LoyaltyError]] = {}


def register(code: str, kind: type[LoyaltyError]) -> str:
    """Register a code once; a second registration of the same code is refused."""
    if code in CODES:
        raise ValueError(f"error code {code!r} is already registered")
    CODES[code] = kind
    return code


# One table of every code. Add a code here, next to the rule that raises it, and nowhere else.
for _code, _kind in [
    # Request shape
    ("field_required", InvalidArgument),
    ("value_out_of_range", InvalidArgument),
    ("value_too_long", InvalidArgument),
    ("malformed_id", InvalidArgument),
    ("too_many_items", InvalidArgument),
    ("basket_must_not_be_empty", InvalidArgument),
    ("amount_overflows_int64", InvalidArgument),
    ("line_discount_must_not_exceed_line_total", InvalidArgument),
    ("currency_mismatch", InvalidArgument),
    ("category_share_must_not_exceed_total", InvalidArgument),
    ("enum_value_unknown", InvalidArgument),
    # Lookups
    ("programme_not_found", NotFound),
    ("member_not_found", NotFound),
    ("order_not_found", NotFound),
    ("order_line_not_found", NotFound),
    ("hold_not_found", NotFound),
    ("level_not_found", NotFound),
    ("api_key_not_found", NotFound),
    # Uniqueness
    ("programme_name_taken", AlreadyExists),
    ("phone_taken", AlreadyExists),
    ("card_number_taken", AlreadyExists),
    ("order_already_checked_out", AlreadyExists),
    ("level_priority_taken", AlreadyExists),
    # Idempotency
    ("idempotency_key_reused_with_different_request", IdempotencyConflict),
    # State rules
    ("points_must_not_exceed_balance", FailedPrecondition),
    ("points_must_not_exceed_payable_limit", FailedPrecondition),
    ("programme_disabled", FailedPrecondition),
    ("programme_not_active_now", FailedPrecondition),
    ("store_not_in_programme", FailedPrecondition),
    ("channel_not_in_programme", FailedPrecondition),
    ("member_not_confirmed", FailedPrecondition),
    ("member_deactivated", FailedPrecondition),
    ("member_offboarded", FailedPrecondition),
    ("hold_not_open", FailedPrecondition),
    ("hold_expired", FailedPrecondition),
    ("capture_must_not_exceed_hold", FailedPrecondition),
    ("order_not_captured", FailedPrecondition),
    ("refund_must_not_exceed_captured", FailedPrecondition),
    ("clawback_exceeds_balance", FailedPrecondition),
    ("debt_limit_exceeded", FailedPrecondition),
    ("level_below_member_spend", FailedPrecondition),
    ("confirmation_not_started", FailedPrecondition),
    ("confirmation_code_expired", FailedPrecondition),
    ("confirmation_code_wrong", FailedPrecondition),
    ("confirmation_locked", FailedPrecondition),
    ("card_secret_required", FailedPrecondition),
    ("card_secret_wrong", FailedPrecondition),
    ("member_has_no_phone", FailedPrecondition),
    ("member_has_no_card", FailedPrecondition),
    ("phone_already_confirmed", FailedPrecondition),
    ("confirmation_resend_too_soon", ResourceExhausted),
    # Trust
    ("credential_missing", Unauthenticated),
    ("credential_unknown", Unauthenticated),
    ("right_not_granted", PermissionDenied),
    ("programme_not_granted", PermissionDenied),
    ("api_key_name_taken", AlreadyExists),
    # Dependencies
    ("database_unavailable", Unavailable),
    ("sms_gateway_unavailable", Unavailable),
]:
    register(_code, _kind)
del _code, _kind
