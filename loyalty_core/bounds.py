"""The bounds on every amount a caller sends (docs/ledger.md "Bounds"), and the check that says so."""

from __future__ import annotations

from loyalty_core.errors import InvalidArgument

INT64_MAX = 2**63 - 1
# Points in one request or setting, and money (minor units) in one price, line or basket. Below
# JavaScript's largest exact integer (2^53 - 1, about 9.007e15), so every client counts it exactly,
# and thousands of such amounts still fit a member's int64 totals. A client that overflows (a
# JavaScript 1e19 arrives as int64's largest value) is refused, never stored.
MAX_AMOUNT = 10**15
# Units on one basket line, and visits a level may ask for.
MAX_QUANTITY = 1_000_000
MAX_VISITS = 1_000_000


def at_most(value: int, most: int, field: str) -> int:
    """``value`` when it is at most ``most``; else ``value_out_of_range`` on ``field``, giving the bound."""
    if value > most:
        raise InvalidArgument(
            "value_out_of_range",
            f"{field} must be at most {most:,} (a larger figure is a client's overflow, such as a "
            f"JavaScript 1e19; send the real amount)", field=field,
        )
    return value
