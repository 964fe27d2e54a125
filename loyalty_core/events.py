"""The events the outbox publishes: their types, payload versions, and which event each domain change makes.

Every change of a member writes its events in its own transaction (``store.outbox``); this module
only says what they are. Payloads are plain mappings whose keys are the field names of the
payload messages in ``protos/loyalty/v1/events.proto`` (``PAYLOAD_FIELDS`` names the ``Event``
oneof field each type fills), so the stream and the webhooks send the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from loyalty_core.model import WriteContext

# Every type with its payload version. A payload that changes its meaning gets a new version and
# the old one stays documented; a field added keeps the version (receivers ignore unknown fields).
EVENT_TYPES: dict[str, int] = {
    "member.enrolled": 1,
    "member.status_changed": 1,
    "member.level_changed": 1,
    "member.phone_confirmed": 1,
    "member.offboarded": 1,
    "member.erased": 1,
    "points.earned": 1,
    "points.spent": 1,
    "points.held": 1,
    "points.released": 1,
    "points.expired": 1,
    "points.activated": 1,
    "points.adjusted": 1,
    "points.expiring_soon": 1,
    "order.captured": 1,
    "order.refunded": 1,
    "order.voided": 1,
    **{f"certificate.{kind}": 1 for kind in ("issued", "held", "spent", "released", "expired", "cancelled",
                                             "returned")},
}

# The Event message's payload field (its oneof) for each type.
PAYLOAD_FIELDS: dict[str, str] = {
    **{t: "points_moved" for t in EVENT_TYPES if t.startswith("points.") and t != "points.expiring_soon"},
    "points.expiring_soon": "points_expiring_soon",
    **{t: "certificate_moved" for t in EVENT_TYPES if t.startswith("certificate.")},
    **{t: t.replace(".", "_") for t in EVENT_TYPES if not t.startswith(("points.", "certificate."))},
}

# A movement's kind -> its event type; the kinds not named (reversed, refund_return, debt_repaid,
# debt_incurred) change the balance outside a sale's own flow: points.adjusted.
_MOVEMENT_TYPES = {
    "earned": "points.earned", "welcome": "points.earned", "manual_accrual": "points.earned",
    "event_bonus": "points.earned",
    "spent": "points.spent", "held": "points.held", "released": "points.released", "expired": "points.expired",
    "activated": "points.activated",
}


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to write with the change that makes it."""

    type: str
    payload: Mapping[str, object]

    def __post_init__(self) -> None:
        assert self.type in EVENT_TYPES, f"unknown event type {self.type!r}"


def movement_event(kind: str, points: int, *, order_id: str | None, hold_id: str | None, refund_id: str | None,
                   comment: str) -> NewEvent:
    """The event of one ledger movement; ``points`` as the points history shows it (docs/ledger.md)."""
    return NewEvent(_MOVEMENT_TYPES.get(kind, "points.adjusted"), {
        "movement_kind": kind, "points": points, "order_id": order_id or "", "hold_id": hold_id or "",
        "refund_id": refund_id or "", "comment": comment,
    })


def certificate_event(kind: str, certificate_id: str, points: int, held_points: int, forfeited_points: int,
                      order_id: str | None, comment: str) -> NewEvent:
    """The event of one certificate movement: its changes of what is left and what is held (never
    the code, which no event or row carries)."""
    return NewEvent(f"certificate.{kind}", {
        "certificate_id": certificate_id, "movement_kind": kind, "points": points, "held_points": held_points,
        "forfeited_points": forfeited_points, "order_id": order_id or "", "comment": comment,
    })


def history_event(kind: str, details: Mapping[str, object], comment: str) -> NewEvent | None:
    """The event of a member history entry, None for entries that publish none (messages sent,
    cards locked, recalculations: the member's own data or noise, not a change others act on)."""
    if kind == "enrolled":
        return NewEvent("member.enrolled", {"status": str(details["status"]),
                                            "welcome_bonus_points": int(str(details["welcome_bonus_points"]))})
    if kind == "status_changed":
        return NewEvent("member.status_changed", {"previous_status": str(details["from"]), "status": str(details["to"]),
                                                  "reason": str(details.get("reason", "")), "comment": comment})
    if kind == "level_assigned":
        return NewEvent("member.level_changed", {
            "previous_level_id": str(details["from"]), "level_id": str(details["to"]),
            "level_name": str(details["level_name"]), "reason": str(details["reason"]), "comment": comment})
    if kind == "phone_confirmed":
        # Not the phone itself: events outlive an erasure of the member's personal data.
        return NewEvent("member.phone_confirmed", {})
    if kind == "offboarded":
        return NewEvent("member.offboarded", {"comment": comment})
    if kind == "erased":
        # Receivers that keep a copy of the member's data erase theirs too.
        return NewEvent("member.erased", {})
    return None


# -- Webhook subscriptions (the use cases' requests and answers) -----------------------------------

@dataclass(frozen=True)
class Webhook:
    """A subscription of ``url`` to a programme's events of ``event_types`` (empty: all)."""

    programme_id: str
    url: str
    event_types: tuple[str, ...] = ()
    description: str = ""
    # Output only.
    webhook_id: str = ""
    created_at: int = 0
    attempts: int = 0
    last_error: str = ""
    dead_letters: int = 0
    events_waiting: int = 0


@dataclass(frozen=True)
class CreateWebhook:
    request_id: str
    webhook: Webhook
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class DeleteWebhook:
    request_id: str
    programme_id: str
    webhook_id: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class RedeliverWebhook:
    request_id: str
    programme_id: str
    webhook_id: str
    # Empty: every dead letter of the subscription.
    event_id: str = ""
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Redelivered:
    redeliveries: int
