"""What a member may do (status, discounts) and purchase counting: the ledger's minimal stand-in for issue 5."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loyalty_core.model import Member, Order, Programme


@dataclass(frozen=True)
class Privileges:
    """What one member may do now, and at which rates."""

    may_pay_with_points: bool
    earns: bool
    purchases_count: bool
    discount_bps: int
    # "none", "personal", "accumulative" or "level".
    discount_source: str
    # Level overrides: per-category cashback and the order's pay share; None keeps the programme's.
    cashback_bps: dict[str, int] | None = None
    order_pay_share_bps: int | None = None


def privileges(member: Member, programme: Programme, levels: Sequence[Any], now: int) -> Privileges:
    """active: everything; not_confirmed: earns and counts but cannot pay; deactivated: nothing.

    The discount is the larger of the personal and the accumulative rate (ties go to personal).
    """
    if member.status == "deactivated":
        return Privileges(False, False, False, 0, "none")
    if member.personal_discount_bps >= member.accumulative_discount_bps:
        rate, source = member.personal_discount_bps, "personal"
    else:
        rate, source = member.accumulative_discount_bps, "accumulative"
    if rate == 0:
        source = "none"
    return Privileges(member.status == "active", True, True, rate, source)


async def count_purchase(conn: Any, member: Member, order: Order, now: int) -> None:
    """Add the order's net total to the member's purchases."""
    await conn.execute(
        "UPDATE member SET purchases_total_minor = purchases_total_minor + %s WHERE member_id = %s",
        (order.pricing.net_minor, member.member_id),
    )


async def uncount_purchase(conn: Any, member: Member, order: Order, now: int, *, money_minor: int) -> None:
    """Take ``money_minor`` of a counted order (a refund, whole or partial) off the member's purchases."""
    await conn.execute(
        "UPDATE member SET purchases_total_minor = greatest(purchases_total_minor - %s, 0) WHERE member_id = %s",
        (money_minor, member.member_id),
    )
