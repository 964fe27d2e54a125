"""Conversions between the domain's values and PostgreSQL's: int64 microseconds and timestamptz, id lists."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from loyalty_core.calc import NEVER

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
# Python's datetime ends with year 9999; later times cannot be stored.
MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC) - EPOCH) // ONE_US


def to_dt(us: int | None) -> datetime | None:
    """Microseconds to a timestamptz value; None and ``NEVER`` (no expiry) become NULL."""
    if us is None or us == NEVER:
        return None
    return EPOCH + timedelta(microseconds=us)


def to_us(dt: datetime | None) -> int | None:
    return None if dt is None else (dt - EPOCH) // ONE_US


def expiry_us(dt: datetime | None) -> int:
    """A lot's or hold's expiry: NULL means never, which calc spells ``NEVER``."""
    return NEVER if dt is None else (dt - EPOCH) // ONE_US


def uuid_array(ids: Sequence[str]) -> str:
    """Member ids as a ``uuid[]`` parameter's text (the statement casts it): psycopg's list dumper
    walks a list item by item in Python, which a batch of hundreds of ids pays in every statement.
    The ids are the database's own (uuid text), so nothing in them needs quoting."""
    return "{" + ",".join(ids) + "}"
