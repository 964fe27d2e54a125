"""Checks on request fields shared by the use cases: ids, strings, amounts, page sizes; each raises the rule it enforces."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from loyalty_core.bounds import INT64_MAX, MAX_AMOUNT, at_most
from loyalty_core.errors import FailedPrecondition, InvalidArgument, NotFound
from loyalty_core.model import Member

# Put a limit on everything a caller controls.
MAX_TEXT = 200
MAX_ID = 64
MAX_LINES = 500
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


def member_not_erased(member: Member) -> Member:
    """An erased member takes no more writes (docs/trust.md "Members' data"): not even a refund of an old order."""
    if member.erased_at is not None:
        raise FailedPrecondition("member_erased", "the member's personal data was erased; the member takes no changes")
    return member


def member_in_programme(member: Member) -> Member:
    """The member takes changes: neither erased nor off-boarded (an erased member is off-boarded too,
    and is told the stronger reason)."""
    member_not_erased(member)
    if member.offboarded_at is not None:
        raise FailedPrecondition("member_offboarded", "the member has left the programme")
    return member


def uuid_arg(value: str, field: str) -> str:
    """A required UUID field, in canonical form; anything else is ``malformed_id``."""
    if not value:
        raise InvalidArgument("field_required", f"{field} is required", field=field)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument("malformed_id", f"{field} must be a UUID", field=field) from None


def text_arg(value: str, field: str, *, max_len: int = MAX_TEXT, required: bool = False) -> str:
    if required and not value:
        raise InvalidArgument("field_required", f"{field} is required", field=field)
    if len(value) > max_len:
        raise InvalidArgument("value_too_long", f"{field} must be at most {max_len} characters", field=field)
    return value


def positive_points(value: int, field: str = "points") -> int:
    if value < 1:
        raise InvalidArgument("value_out_of_range", f"{field} must be at least 1", field=field)
    return at_most(value, MAX_AMOUNT, field)


def check_member_room(member: Member, field: str, *, earned_points: int = 0, purchase_minor: int = 0) -> None:
    """Refuse a write whose points or purchase would push the member's earned or purchase total past
    int64, before it changes anything. Every other total is bounded by these two: spending, expiry,
    holds and refund returns only move points that were earned first."""
    for name, total, amount in (("earned_total_points", member.earned_total_points, earned_points),
                                ("purchases_total_minor", member.purchases_total_minor, purchase_minor)):
        room = INT64_MAX - total
        if amount > room:
            raise FailedPrecondition(
                "overflows_member_total",
                f"the member's {name} ({total:,}) would pass int64's limit: {field} may add at most {room:,}",
                field=field, total=name, room=room,
            )


def as_of_now_or_before(as_of: int | None, now: int) -> int:
    """The time a job acts as of (expiry, level review): now when unset, never later than now."""
    when = now if as_of is None else as_of
    if not 0 <= when <= now:
        raise InvalidArgument("value_out_of_range", "as_of_time must not be later than now (leave it unset for now)",
                              field="as_of_time")
    return when


def bounded(value: int, field: str, default: int, most: int) -> int:
    """A count the caller picks (a page or batch size): 0 means ``default``, else 1..``most``."""
    if value == 0:
        return default
    if not 1 <= value <= most:
        raise InvalidArgument("value_out_of_range", f"{field} must be 0..{most}", field=field)
    return value


def page_size(value: int) -> int:
    return bounded(value, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(*key: Any) -> str:
    """An opaque page token holding the sort key of the page's last item."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_token(token: str, arity: int) -> list[Any] | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidArgument("value_out_of_range", "page_token is not one this server gave", field="page_token")
    return key


def decode_position(token: str, start: int) -> int:
    """The one integer (a lot id, a time) a page token holds, ``start`` without a token."""
    key = decode_token(token, 1)
    if key is None:
        return start
    if not isinstance(key[0], int) or key[0] < start:
        raise InvalidArgument("value_out_of_range", "page_token is not one this server gave", field="page_token")
    return key[0]


def found_member(member: Member | None, what: str) -> Member:
    if member is None:
        raise NotFound("member_not_found", f"no member {what} in this programme")
    return member
