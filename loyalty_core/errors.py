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
    ("custom_field_not_declared", InvalidArgument),
    ("basket_must_not_be_empty", InvalidArgument),
    ("amount_overflows_int64", InvalidArgument),
    ("line_discount_must_not_exceed_line_total", InvalidArgument),
    ("currency_mismatch", InvalidArgument),
    ("category_share_must_not_exceed_total", InvalidArgument),
    ("request_not_decodable", InvalidArgument),
    ("enum_value_unknown", InvalidArgument),
    # Lookups
    ("programme_not_found", NotFound),
    ("member_not_found", NotFound),
    ("order_not_found", NotFound),
    ("order_line_not_found", NotFound),
    ("hold_not_found", NotFound),
    ("level_not_found", NotFound),
    ("event_type_not_found", NotFound),
    ("certificate_not_found", NotFound),
    ("api_key_not_found", NotFound),
    ("webhook_not_found", NotFound),
    # Uniqueness
    ("programme_name_taken", AlreadyExists),
    ("event_type_code_taken", AlreadyExists),
    ("phone_taken", AlreadyExists),
    ("card_number_taken", AlreadyExists),
    ("order_already_checked_out", AlreadyExists),
    # A posted (offline) sale's time
    ("sale_time_in_future", InvalidArgument),
    ("sale_time_too_old", InvalidArgument),
    ("sale_older_than_point_lifetime", FailedPrecondition),
    ("level_priority_taken", AlreadyExists),
    # Idempotency
    ("idempotency_key_reused_with_different_request", IdempotencyConflict),
    # Importing members (docs/membership.md "Importing members")
    ("external_id_reused_with_different_row", IdempotencyConflict),
    ("external_id_repeated_in_batch", InvalidArgument),
    ("purchases_total_below_purchases", InvalidArgument),
    ("level_not_on_members_ladder", InvalidArgument),
    # State rules
    ("points_must_not_exceed_balance", FailedPrecondition),
    ("points_must_not_exceed_payable_limit", FailedPrecondition),
    ("programme_disabled", FailedPrecondition),
    ("programme_not_active_now", FailedPrecondition),
    ("store_not_in_programme", FailedPrecondition),
    ("channel_not_in_programme", FailedPrecondition),
    ("member_not_confirmed", FailedPrecondition),
    ("member_deactivated", FailedPrecondition),
    ("event_type_not_active", FailedPrecondition),
    ("event_frequency_limit_reached", FailedPrecondition),
    ("certificate_not_usable", FailedPrecondition),
    ("certificate_held", FailedPrecondition),
    ("certificate_not_active", FailedPrecondition),
    ("member_offboarded", FailedPrecondition),
    ("member_erased", FailedPrecondition),
    ("member_has_open_holds", FailedPrecondition),
    ("hold_not_open", FailedPrecondition),
    ("hold_expired", FailedPrecondition),
    ("capture_must_not_exceed_hold", FailedPrecondition),
    ("order_not_captured", FailedPrecondition),
    ("order_voided", FailedPrecondition),
    ("refund_must_not_exceed_captured", FailedPrecondition),
    ("clawback_exceeds_balance", FailedPrecondition),
    ("debt_limit_exceeded", FailedPrecondition),
    ("overflows_member_total", FailedPrecondition),
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
    # Card lockout (docs/trust.md "Abuse")
    ("card_locked", FailedPrecondition),
    # Who may spend points (docs/trust.md "Who may spend points")
    ("spend_identification_not_allowed", FailedPrecondition),
    ("spend_code_not_sent", FailedPrecondition),
    ("spend_code_used", FailedPrecondition),
    ("spend_code_locked", FailedPrecondition),
    ("spend_code_expired", FailedPrecondition),
    ("spend_code_wrong", FailedPrecondition),
    ("phone_not_confirmed", FailedPrecondition),
    # One member's lock (docs/trust.md "Abuse")
    ("member_busy", Unavailable),
    ("member_busy_calls", ResourceExhausted),
    # Trust
    ("credential_missing", Unauthenticated),
    ("credential_unknown", Unauthenticated),
    ("right_not_granted", PermissionDenied),
    ("programme_not_granted", PermissionDenied),
    ("api_key_name_taken", AlreadyExists),
    # Dependencies
    ("database_unavailable", Unavailable),
    ("sms_gateway_unavailable", Unavailable),
    ("sms_gateway_not_configured", FailedPrecondition),
    ("webhook_master_key_unset", FailedPrecondition),
]:
    register(_code, _kind)
del _code, _kind


# What each code means and what the caller should do: docs/errors.md is generated from this and
# CODES (`python -m server.errors_doc`); tests/server/test_errors_doc.py fails when a code lacks
# an entry here or the file is stale. Add a code's entry when you register it.
GUIDANCE: dict[str, tuple[str, str]] = {
    "webhook_not_found": ("No live webhook subscription with this id in the programme (it may have been deleted).", "List the programme's webhooks with ListWebhooks."),
    "webhook_master_key_unset": ("The server has no LOYALTY_WEBHOOK_MASTER_KEY, so it cannot give a webhook a signing secret.", "Ask the operator to set LOYALTY_WEBHOOK_MASTER_KEY on every replica."),
    "field_required": ("A required field is empty or unset.", "Set the field the BadRequest names."),
    "value_out_of_range": ("A field's value is outside its allowed range.", "Send a value within the range the message gives."),
    "value_too_long": ("A string or list is longer than its limit.", "Shorten the field the BadRequest names."),
    "malformed_id": ("An id is not in its expected form (a UUID).", "Send the id as loyalty-core returned it."),
    "too_many_items": ("A repeated field has more items than allowed.", "Split the request or send fewer items."),
    "custom_field_not_declared": ("The request names a custom field the programme does not declare.",
                                  "Use a field of the programme's custom_fields (GetProgramme), or declare it "
                                  "with UpdateProgramme first."),
    "basket_must_not_be_empty": ("The basket has no lines.", "Send at least one line."),
    "amount_overflows_int64": ("An amount, or a sum or product of amounts, does not fit in int64.", "Check the quantities and prices; they are almost certainly wrong."),
    "line_discount_must_not_exceed_line_total": ("A line's discount is more than quantity × unit price.", "Fix the line's line_discount_minor."),
    "currency_mismatch": ("The request's currency is not the programme's.", "Send the programme's currency, or leave currency_code empty."),
    "category_share_must_not_exceed_total": ("A category's pay share is above the programme's order share.", "Lower the category's share to at most the order share."),
    "request_not_decodable": ("The request's bytes are not a valid protobuf message of the method's request type (e.g. a string field that is not UTF-8).", "Send the request through generated stubs; check string fields are valid UTF-8."),
    "card_locked": ("Too many wrong card secrets: the card is locked for a cool-down (ErrorInfo locked_until_us says until when).", "Ask the member for the right secret after the cool-down, or have an operator with the card_unlock right call UnlockCard."),
    "spend_identification_not_allowed": ("The programme does not let points be spent by the way this call names the member (ErrorInfo allowed lists the ways it accepts); nothing was written.", "Send a spend code (SendSpendCode, then spend_code), scan the card with its secret, or sell without points."),
    "spend_code_not_sent": ("No spend code was sent to the member's confirmed phone (or the phone changed since).", "Call SendSpendCode, then send the code the member reads out."),
    "spend_code_used": ("The spend code paid already: each code pays once.", "Send a new code with SendSpendCode."),
    "spend_code_locked": ("Too many wrong spend codes locked this code.", "Send a new code with SendSpendCode."),
    "spend_code_expired": ("The spend code's lifetime ran out.", "Send a new code with SendSpendCode."),
    "spend_code_wrong": ("The spend code is wrong (ErrorInfo attempts_left says how many tries remain).", "Ask the member again; too many wrong codes lock the code."),
    "phone_not_confirmed": ("A spend code goes only to a confirmed phone, and the member's is not.", "Confirm the phone (StartPhoneConfirmation, ConfirmPhone) first."),
    "member_busy": ("Another call held this member's lock longer than LOYALTY_MEMBER_LOCK_TIMEOUT_S; nothing was written.", "Retry shortly with the same request_id."),
    "member_busy_calls": ("Too many calls about this member are already waiting in this server; nothing was written.", "Retry shortly with the same request_id; a till sends one call at a time per member."),
    "sms_gateway_not_configured": ("No SMS gateway is configured (LOYALTY_SMS_WEBHOOK_URL), so no code can be sent.", "Configure the gateway; for development only, set LOYALTY_SMS_LOG_CODES_DEV=true."),
    "enum_value_unknown": ("An enum field carries a number this API version does not define.", "Send one of the enum's defined values (the client may be newer than the server)."),
    "programme_not_found": ("No programme has this id.", "Check the programme_id; do not retry."),
    "member_not_found": ("No member matches the identifier in this programme.", "Check the identifier or enrol the member."),
    "order_not_found": ("No order has this id in the programme.", "Check the order_id; check out first."),
    "order_line_not_found": ("A refund names a line the order does not have.", "Use the line_id of the order's lines."),
    "hold_not_found": ("The order has no hold.", "Capture or cancel only orders that held points."),
    "level_not_found": ("No level has this id in the programme.", "Check the level_id."),
    "certificate_not_found": ("The member has no certificate with this id (or code) in this programme.", "Check the certificate with ListCertificates, or ask the member for the code again."),
    "certificate_not_usable": ("A presented certificate cannot pay now: it is held by another open checkout, used, cancelled or expired; nothing was written.", "Sell without it; if another till holds it, capture or cancel that order first."),
    "certificate_held": ("The certificate is held by an open checkout and cannot be cancelled; nothing was written.", "Capture or cancel that order (details.order_id), then cancel the certificate."),
    "certificate_not_active": ("The certificate was used, expired or cancelled before; nothing was written.", "Leave it: it pays nothing any more."),
    "event_type_not_found": ("The programme has no event type with this code.", "Check the code with ListEventTypes, or create the type (CreateEventType)."),
    "api_key_not_found": ("No API key has this name.", "Check the name with `loyalty-core keys list`."),
    "programme_name_taken": ("Another programme has this name.", "Choose another name."),
    "event_type_code_taken": ("The programme already has an event type with this code.", "Choose another code, or change the type with UpdateEventType."),
    "phone_taken": ("Another member of the programme has this phone.", "Look the member up by phone instead of enrolling; to move the phone to this member (ChangeMemberPhone), first change the holder's."),
    "card_number_taken": ("Another member of the programme has this card number.", "Use another card, or first change the holder's (ChangeMemberCard)."),
    "sale_time_in_future": ("A posted sale's sale_time is after the server's time.", "Send the time the till recorded the sale; check the till's clock."),
    "sale_time_too_old": ("A posted sale was made longer ago than PostSale accepts (max_age_days in the details).", "Post sales within the bound; older history belongs to the import."),
    "sale_older_than_point_lifetime": ("The points a posted sale earns would have expired already: the sale is older than the programme's activation delay and point lifetime.", "Do not post it as a sale; adjust the member's points by hand if owed."),
    "order_already_checked_out": ("An order with this id was checked out already, with another request_id.", "Use a new order_id, or read the order with GetOrder."),
    "level_priority_taken": ("Another level of the programme has this priority.", "Choose a free priority."),
    "external_id_reused_with_different_row": ("A row with this external_id was imported before with other data.", "The member exists already (member_id in the details): change it with the member edit calls, or give the row a new external_id if it is another member."),
    "external_id_repeated_in_batch": ("Two different rows of one import batch carry this external_id.", "Give each member of the previous system its own external_id; send a corrected row again."),
    "purchases_total_below_purchases": ("An imported member's purchases_total_minor is below the sum of the purchases listed with it.", "Send the all-time total (at least the listed purchases), or 0 to take their sum."),
    "level_not_on_members_ladder": ("The level named is not one of the programme's levels open to the member's customer group.", "Name a level of the programme (ListLevels) open to the group, or none to let the purchases decide."),
    "idempotency_key_reused_with_different_request": ("This request_id was used before with a different request.", "Send a new request_id for a new operation; resend the same request unchanged to retry."),
    "points_must_not_exceed_balance": ("The member has fewer available points than asked.", "Ask for at most the balance (GetBalance, or points_max of a quote)."),
    "points_must_not_exceed_payable_limit": ("The points asked are more than this order may take.", "Ask for at most the quote's points_max."),
    "programme_disabled": ("The programme is disabled.", "Enable it (UpdateProgramme) or use another programme."),
    "programme_not_active_now": ("The programme's start or end time excludes now.", "Wait for its start, or change its times."),
    "store_not_in_programme": ("The store is not one of the programme's stores.", "Send one of the programme's store_ids, or add the store."),
    "channel_not_in_programme": ("The channel is not one of the programme's channels.", "Send one of the programme's channels, or add it."),
    "member_not_confirmed": ("The member has not confirmed their phone; points cannot pay yet.", "Confirm the phone (StartPhoneConfirmation, ConfirmPhone), or sell without points."),
    "member_deactivated": ("The member is deactivated.", "Reactivate the member (ChangeMemberStatus) or sell without loyalty."),
    "event_type_not_active": ("The event type grants nothing now: outside its active window, or its points' fixed expiry date has passed; nothing was written.", "Record the event while the type is active, or change the type (UpdateEventType)."),
    "event_frequency_limit_reached": ("The member received this event type's bonus as often as its frequency allows (once, once per N days, once per calendar year); ErrorInfo last_granted_at_us says when; nothing was written.", "Do not retry this occurrence; the next one may be granted once the period has passed."),
    "member_offboarded": ("The member left the programme.", "Sell without loyalty; the member may enrol again."),
    "member_erased": ("The member's personal data was erased (EraseMember): the member takes no more changes; their ledger stays for the totals.", "Sell or refund without loyalty; the person may enrol again as a new member."),
    "member_has_open_holds": ("The member has checkouts still holding points, so the member cannot be erased yet.", "Capture or cancel the orders (or wait for their holds to expire), then erase."),
    "hold_not_open": ("The hold was captured or cancelled already.", "Read the order (GetOrder); do not capture or cancel twice."),
    "hold_expired": ("The hold's lifetime ran out and its points went back.", "Check out again."),
    "capture_must_not_exceed_hold": ("Capture asks for more points than are held.", "Capture at most the held points."),
    "order_not_captured": ("The order is not captured, so it cannot be refunded, completed or voided.", "Capture it first, or cancel it."),
    "order_voided": ("The order was voided: it no longer counts and can be neither refunded, completed nor voided again.", "Read the order (GetOrder); correct points by hand (AccruePoints, RedeemPoints) if needed."),
    "refund_must_not_exceed_captured": ("The refund is more than what is left to refund.", "Refund at most the remaining units or money."),
    "clawback_exceeds_balance": ("Taking back earned points would make the balance negative under the REFUSE policy.", "Refund without points, or change the programme's policy."),
    "debt_limit_exceeded": ("Taking back earned points would exceed the member's debt limit.", "Refund without points, or settle the debt."),
    "overflows_member_total": ("The points or purchase would push one of the member's all-time totals (ErrorInfo total) past int64's limit; nothing was written.", "Send at most the room the message gives (ErrorInfo room); the member's totals are at their limit."),
    "level_below_member_spend": ("A manual level change names a level below the one the member's purchases already qualify for (ErrorInfo qualified_level_id, qualified_level_name).", "Choose the qualified level or a higher one."),
    "confirmation_not_started": ("No phone confirmation is under way for the member.", "Call StartPhoneConfirmation first."),
    "confirmation_code_expired": ("The confirmation code's lifetime ran out.", "Start a new confirmation."),
    "confirmation_code_wrong": ("The confirmation code is wrong.", "Ask the member again; too many wrong codes lock the confirmation."),
    "confirmation_locked": ("Too many wrong codes locked this confirmation.", "Start a new confirmation."),
    "card_secret_required": ("The programme requires the card's secret for a lookup by card, so a card attached without one (ChangeMemberCard) could never be used.", "Send card_secret with the card number."),
    "card_secret_wrong": ("The card secret does not match.", "Ask for the secret again; do not retry unchanged."),
    "member_has_no_phone": ("The member has no phone to confirm or to send a code to.", "Set the member's phone first."),
    "member_has_no_card": ("The member has no card.", "Generate a virtual card (GenerateVirtualCard) first."),
    "phone_already_confirmed": ("The member's phone is confirmed already.", "Nothing to do."),
    "confirmation_resend_too_soon": ("A code was sent too recently, or too many today.", "Wait (the message says how long) and try again."),
    "credential_missing": ("The call carried no API key.", "Send `authorization: Bearer <key>` metadata."),
    "credential_unknown": ("The API key is unknown or revoked.", "Use a valid key; ask the operator for one."),
    "right_not_granted": ("The key lacks the right this RPC needs.", "Use a key with that right (docs/trust.md)."),
    "programme_not_granted": ("The key is not granted this programme.", "Use a key granted the programme."),
    "api_key_name_taken": ("Another API key has this name.", "Choose another name."),
    "database_unavailable": ("The database cannot be reached now.", "Retry with backoff and the same request_id."),
    "sms_gateway_unavailable": ("The SMS gateway cannot be reached now.", "Retry later with the same request_id."),
}
