"""Bonus certificates (seed 004): their expiry terms, codes, states and how presented certificates
pay an order. Rules only; the use cases are loyalty_core.service.certificates."""

from __future__ import annotations

import calendar
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from loyalty_core.bounds import MAX_AMOUNT
from loyalty_core.errors import FailedPrecondition, InvalidArgument
from loyalty_core.model import US_PER_DAY, CertificatePayment, WriteContext

# Seed 004's redemption rules (Programme.certificate_redemption).
SINGLE_ORDER = "single_order"
MULTIPLE_ORDERS = "multiple_orders"
REDEMPTIONS = (SINGLE_ORDER, MULTIPLE_ORDERS)

ACTIVE, HELD, USED, EXPIRED, CANCELLED = "active", "held", "used", "expired", "cancelled"
STATES = (ACTIVE, HELD, USED, EXPIRED, CANCELLED)
KINDS = ("issued", "held", "spent", "released", "expired", "cancelled", "returned")

# Expiry terms (seed 004: "expire in" days or months, "expire on" a date, "never").
IN_DAYS, IN_MONTHS, ON_DATE, NEVER = "days", "months", "date", "never"
TERMS = (IN_DAYS, IN_MONTHS, ON_DATE, NEVER)
MAX_DAYS = 3650
MAX_MONTHS = 120
# Put a limit on everything: members per issue, certificates per cancel or per till.
ISSUE_MEMBERS_MAX = 500
CANCEL_MAX = 500
PRESENTED_MAX = 20
MAX_NOTE = 1000
# Codes: 16 characters of Crockford's base32 (80 random bits), shown grouped by 4 and read back in any
# case, with or without the dashes.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 16
MAX_CODE_TEXT = 32


@dataclass(frozen=True)
class CertificateExpiry:
    """When a certificate stops paying: ``days`` or ``months`` after its issue, on ``expires_at``, or never."""

    term: str = ""
    count: int = 0
    expires_at: int = 0


@dataclass(frozen=True)
class Issue:
    request_id: str
    programme_id: str
    member_ids: tuple[str, ...]
    value_points: int
    expiry: CertificateExpiry
    note: str = ""
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Certificate:
    """A certificate as callers see it (never its code). ``remaining_points`` may still pay, of which
    ``held_points`` an open checkout (``held_order_id``) holds; ``expires_at`` None: never."""

    certificate_id: str
    member_id: str
    programme_id: str
    value_points: int
    remaining_points: int
    held_points: int
    held_order_id: str
    multiple_orders: bool
    state: str
    expires_at: int | None
    note: str
    issued_at: int
    ended_at: int | None
    end_reason: str
    # While held: when the expiry run releases the hold (the order's hold lifetime).
    held_until: int | None = None


@dataclass(frozen=True)
class IssuedCertificate:
    """An issued certificate with its code, shown once: never stored, so empty on a replay."""

    certificate: Certificate
    code: str = ""


@dataclass(frozen=True)
class Issued:
    certificates: tuple[IssuedCertificate, ...]


@dataclass(frozen=True)
class CancelCertificates:
    request_id: str
    programme_id: str
    # (member_id, certificate_id) pairs.
    certificates: tuple[tuple[str, str], ...]
    reason: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class Cancelled:
    certificates: tuple[Certificate, ...]


@dataclass(frozen=True)
class CertificateFilter:
    """What ListCertificates matches: the member ('' for the whole programme), the states (none: any),
    and an expiry window (start included, end excluded; a certificate that never expires is in no window)."""

    programme_id: str
    member_id: str = ""
    states: tuple[str, ...] = ()
    expires_from: int | None = None
    expires_before: int | None = None
    page_size: int = 0
    page_token: str = ""


def _bad(message: str, name: str, code: str = "value_out_of_range") -> InvalidArgument:
    return InvalidArgument(code, message, field=name)


def _utc(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def add_months(us: int, months: int) -> int:
    """``months`` calendar months after ``us`` (UTC), at the same time of day: the same day of the month,
    or the month's last day when it is shorter (31 January + 1 month = 28 or 29 February)."""
    t = _utc(us)
    month0 = t.month - 1 + months
    year, month = t.year + month0 // 12, month0 % 12 + 1
    day = min(t.day, calendar.monthrange(year, month)[1])
    end = t.replace(year=year, month=month, day=day)
    return (end - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def validate_expiry(e: CertificateExpiry, now: int, max_us: int) -> None:
    if e.term not in TERMS:
        raise _bad("expiry is required: in days, in months, on a date, or never", "expiry", "field_required")
    if e.term == IN_DAYS and not 1 <= e.count <= MAX_DAYS:
        raise _bad(f"expiry.days must be 1..{MAX_DAYS}", "expiry.days")
    if e.term == IN_MONTHS and not 1 <= e.count <= MAX_MONTHS:
        raise _bad(f"expiry.months must be 1..{MAX_MONTHS}", "expiry.months")
    if e.term == ON_DATE and not now < e.expires_at <= max_us:
        raise _bad("expiry.expire_time must be in the future", "expiry.expire_time")


def expiry_end(e: CertificateExpiry, issued_at: int) -> int | None:
    """When a certificate issued at ``issued_at`` stops paying; None: never."""
    if e.term == IN_DAYS:
        return issued_at + e.count * US_PER_DAY
    if e.term == IN_MONTHS:
        return add_months(issued_at, e.count)
    return e.expires_at if e.term == ON_DATE else None


def validate_issue(req: Issue) -> None:
    if not req.member_ids:
        raise _bad("member_ids needs at least one member", "member_ids", "field_required")
    if len(req.member_ids) > ISSUE_MEMBERS_MAX:
        raise _bad(f"at most {ISSUE_MEMBERS_MAX} members per issue", "member_ids", "too_many_items")
    if not 1 <= req.value_points <= MAX_AMOUNT:
        raise _bad(f"value_points must be 1..{MAX_AMOUNT}", "value_points")
    if len(req.note) > MAX_NOTE:
        raise _bad(f"note must be at most {MAX_NOTE} characters", "note", "value_too_long")


def new_code() -> str:
    """A fresh code, grouped by 4 for reading aloud: XXXX-XXXX-XXXX-XXXX."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, CODE_LENGTH, 4))


def code_hash(code: str) -> bytes:
    """sha256 of the code's canonical form (upper case, no dashes or spaces; Crockford's I and L read
    as 1, O as 0). With 80 random bits a fast hash confirms no guess, and finds the row by equality."""
    canonical = code.upper().replace("-", "").replace(" ", "").translate(str.maketrans("ILO", "110"))
    return hashlib.sha256(canonical.encode()).digest()


def usable(c: Certificate, now: int) -> bool:
    """The certificate may pay now: active, something left, not past its expiry."""
    return c.state == ACTIVE and c.remaining_points > 0 and (c.expires_at is None or now < c.expires_at)


def check_usable(c: Certificate, now: int, index: int) -> None:
    """A presented certificate is refused, naming it, unless it may pay now."""
    if usable(c, now):
        return
    why = {HELD: "is held by another open checkout", USED: "was used", CANCELLED: "was cancelled",
           EXPIRED: "has expired"}.get(c.state, "has expired")
    raise FailedPrecondition("certificate_not_usable", f"certificate {c.certificate_id} {why}",
                             field=f"certificate_codes[{index}]", certificate_id=c.certificate_id, state=c.state)


def payment_order(certificates: list[Certificate]) -> list[Certificate]:
    """Presented certificates pay earliest expiry first (never last), then oldest issued."""
    return sorted(certificates, key=lambda c: (c.expires_at is None, c.expires_at or 0, c.issued_at,
                                               c.certificate_id))


def pay(certificates: list[Certificate], payable: int) -> tuple[CertificatePayment, ...]:
    """What each certificate pays of ``payable`` points' worth, in :func:`payment_order`: each pays
    what it has left, until nothing is payable (those after pay 0)."""
    paid = []
    for c in payment_order(certificates):
        take = min(c.remaining_points, payable)
        payable -= take
        paid.append(CertificatePayment(c.certificate_id, take, c.expires_at))
    return tuple(paid)


def split_return(returned: int, points_left: int) -> tuple[int, int]:
    """A refund's returned points split: to the member's points first, up to what the order spent of
    them and refunds did not give back yet (``points_left``), the rest to its certificates (drawn
    first, given back last)."""
    to_points = min(returned, points_left)
    return to_points, returned - to_points


def give_back_parts(paid: Sequence[CertificatePayment], earlier: dict[str, int], amount: int) -> list[tuple[str, int]]:
    """(certificate id, points) giving ``amount`` back to the certificates that paid, the last drawn
    first (latest expiry), each up to what it paid less what refunds gave it back before."""
    parts = []
    for p in reversed(paid):
        give = min(p.points - earlier.get(p.certificate_id, 0), amount)
        if give > 0:
            parts.append((p.certificate_id, give))
            amount -= give
    return parts


def takes_back(c: Certificate, now: int) -> bool:
    """A certificate takes a refund's return unless its life ended: cancelled, expired, or past its expiry."""
    return c.state not in (CANCELLED, EXPIRED) and (c.expires_at is None or now < c.expires_at)


def check_cancellable(c: Certificate) -> None:
    if c.state == HELD:
        raise FailedPrecondition("certificate_held", f"certificate {c.certificate_id} is held by open checkout "
                                 f"{c.held_order_id!r}; cancel or capture that order first",
                                 certificate_id=c.certificate_id, order_id=c.held_order_id)
    if c.state != ACTIVE:
        raise FailedPrecondition("certificate_not_active", f"certificate {c.certificate_id} is {c.state}",
                                 certificate_id=c.certificate_id, state=c.state)
