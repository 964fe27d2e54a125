"""Event bonuses (seed 001): what an event type grants, how often one member may receive it, and what a
member's status lets through. Rules only; the use cases are loyalty_core.service.event_bonus."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from loyalty_core.bounds import MAX_AMOUNT
from loyalty_core.errors import FailedPrecondition, InvalidArgument
from loyalty_core.model import US_PER_DAY, Expiry, Movement, WriteContext

ONCE = "once"
EVERY_N_DAYS = "every_n_days"
CALENDAR_YEAR = "calendar_year"
FREQUENCIES = (ONCE, EVERY_N_DAYS, CALENDAR_YEAR)
EXPIRY_RULES = ("programme_default", "lifetime_days", "expire_at", "never")
# Discount windows, repeat periods and point lifetimes: ten years at most.
MAX_DAYS = 3650
EVENT_TYPES_PER_PROGRAMME_MAX = 100
CODE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
MAX_OCCURRENCE_KEY = 128
BPS = 10_000


@dataclass(frozen=True)
class EventType:
    """One kind of event of a programme and what it grants. ``discount_days`` 0 with a discount:
    the next captured order only. ``active_from``/``active_until``: the window events are granted in."""

    programme_id: str
    code: str
    name: str
    points: int
    expiry: Expiry
    discount_bps: int
    discount_days: int
    frequency: str
    frequency_days: int = 0
    active_from: int | None = None
    active_until: int | None = None


@dataclass(frozen=True)
class EventTypeRecord:
    event_type: EventType
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class SaveEventType:
    request_id: str
    event_type: EventType


@dataclass(frozen=True)
class RecordEvent:
    request_id: str
    programme_id: str
    member_id: str
    event_code: str
    occurrence_key: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Grant:
    """What one occurrence granted one member. ``discount_ends_at`` None with a discount: the next order."""

    member_id: str
    event_code: str
    occurrence_key: str
    points: int
    lot_id: int | None
    movement_id: int | None
    discount_bps: int
    discount_ends_at: int | None
    discount_withheld: bool
    granted_at: int


@dataclass(frozen=True)
class Recorded:
    grant: Grant
    movement: Movement | None
    already_granted: bool


def _bad(message: str, name: str, code: str = "value_out_of_range") -> InvalidArgument:
    return InvalidArgument(code, message, field=f"event_type.{name}")


def validate(t: EventType) -> EventType:
    """The event type's fields, each in its range; the first wrong one is refused with its field."""
    if not t.code:
        raise _bad("event_type.code is required", "code", "field_required")
    if not CODE.match(t.code):
        raise _bad("code must be 1..64 lower case letters, digits, '_', '.' or '-', starting with a letter or digit",
                   "code")
    if not t.name:
        raise _bad("event_type.name is required", "name", "field_required")
    if len(t.name) > 200:
        raise _bad("name must be at most 200 characters", "name", "value_too_long")
    if not 0 <= t.points <= MAX_AMOUNT:
        raise _bad(f"points must be 0..{MAX_AMOUNT}", "points")
    if t.expiry.rule not in EXPIRY_RULES:
        raise _bad(f"expiry must be one of {', '.join(EXPIRY_RULES)}", "expiry")
    if t.expiry.rule == "lifetime_days" and not 1 <= t.expiry.lifetime_days <= MAX_DAYS:
        raise _bad(f"expiry.lifetime_days must be 1..{MAX_DAYS}", "expiry.lifetime_days")
    if t.expiry.rule == "expire_at" and t.expiry.expires_at <= 0:
        raise _bad("expiry.expire_time must be after 1970", "expiry.expire_time")
    if not 0 <= t.discount_bps <= BPS:
        raise _bad(f"discount_bps must be 0..{BPS}", "discount_bps")
    if t.points == 0 and t.discount_bps == 0:
        raise _bad("an event type grants points, a discount or both", "points")
    if not 0 <= t.discount_days <= MAX_DAYS:
        raise _bad(f"discount_days must be 0..{MAX_DAYS}", "discount_days")
    if t.frequency not in FREQUENCIES:
        raise _bad("frequency is required", "frequency", "field_required")
    if t.frequency == EVERY_N_DAYS and not 1 <= t.frequency_days <= MAX_DAYS:
        raise _bad(f"frequency_days must be 1..{MAX_DAYS} with EVERY_N_DAYS", "frequency_days")
    if t.frequency != EVERY_N_DAYS and t.frequency_days:
        raise _bad("frequency_days is only for EVERY_N_DAYS", "frequency_days")
    if t.active_from is not None and t.active_until is not None and t.active_until <= t.active_from:
        raise _bad("active_end_time must be after active_start_time", "active_end_time")
    return t


def check_active(t: EventType, now: int) -> None:
    """Events are granted within the type's window (start included, end excluded), and while its
    points' fixed expiry date, if it has one, is still ahead."""
    if (t.active_from is not None and now < t.active_from) or (t.active_until is not None and now >= t.active_until):
        raise FailedPrecondition("event_type_not_active", f"event type {t.code!r} grants nothing at this time")
    if t.expiry.rule == "expire_at" and t.expiry.expires_at <= now:
        raise FailedPrecondition("event_type_not_active",
                                 f"event type {t.code!r}'s points would expire on a date that has passed")


def _year(us: int) -> int:
    return datetime.fromtimestamp(us / 1_000_000, UTC).year


def check_frequency(t: EventType, last_granted_at: int | None, now: int) -> None:
    """A new occurrence is refused while the type's frequency forbids another grant to this member."""
    if last_granted_at is None:
        return
    if t.frequency == ONCE:
        why = "is granted once per member, and this member received it"
    elif t.frequency == CALENDAR_YEAR and _year(last_granted_at) == _year(now):
        why = f"is granted once per calendar year, and this member received it in {_year(now)}"
    elif t.frequency == EVERY_N_DAYS and now < last_granted_at + t.frequency_days * US_PER_DAY:
        why = f"is granted once per {t.frequency_days} days, and this member received it less than that ago"
    else:
        return
    raise FailedPrecondition("event_frequency_limit_reached", f"event type {t.code!r} {why}",
                             last_granted_at_us=last_granted_at)


def granted_discount(t: EventType, member_active: bool, now: int) -> tuple[int, int | None, bool]:
    """The discount an occurrence grants: its rate, its end (None: the next order) and whether it was
    withheld. A member not confirmed gets the points but not the discount (seed 001)."""
    if t.discount_bps == 0:
        return 0, None, False
    if not member_active:
        return 0, None, True
    return t.discount_bps, (now + t.discount_days * US_PER_DAY) if t.discount_days else None, False
