"""What the calculation tests share: int64 columns and a generous default programme."""

from __future__ import annotations

from array import array


def q(values) -> array:
    return array("q", values)


def programme(**overrides) -> dict:
    """price_basket's programme arguments: 5% cashback, points may pay everything; ``overrides`` win."""
    base = dict(
        discount_bps=0,
        cashback_bps=q([500]),
        category_pay_share_bps=q([10_000]),
        order_pay_share_bps=10_000,
        point_value_minor=1,
        available_points=10**6,
        requested_points=0,
        discounted_items_earn=False,
        points_instead_of_discounts=False,
    )
    return base | overrides
