"""Pure-Python reference of the calculation and the FIFO burn-out queue: this file defines the behaviour."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

from loyalty_core.errors import FailedPrecondition, InvalidArgument

NEVER = 2**63 - 1
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
BPS = 10_000


def _scalar(value: int, field: str, lo: int = INT64_MIN, hi: int = INT64_MAX, *, amount: bool = False) -> int:
    """Check one scalar parameter against its domain ``lo..hi``.

    An amount (money or points) too large for int64 is ``amount_overflows_int64``; anything
    else outside its domain is ``value_out_of_range``. The field is the parameter's name.
    """
    value = operator.index(value)
    if lo <= value <= hi:
        return value
    if amount and value > INT64_MAX:
        raise InvalidArgument("amount_overflows_int64", f"{field} does not fit in int64", field=field)
    raise InvalidArgument("value_out_of_range", f"{field} must be between {lo} and {hi}, not {value}", field=field)


def _overflow(field: str) -> InvalidArgument:
    """The refusal for a sum over ``field`` that left int64."""
    return InvalidArgument("amount_overflows_int64", f"a sum over {field} does not fit in int64", field=field)


def _largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (non-negative, not all zero unless total is 0).

    Each part is ``floor(total * w_i / W)``; the units left over go one each to the largest
    remainders, ties to the lower index. Parts add up to ``total`` exactly.
    """
    whole = sum(weights)
    if whole == 0:
        return [0] * len(weights)
    parts = []
    remainders = []
    for w in weights:
        part, remainder = divmod(total * w, whole)
        parts.append(part)
        remainders.append(remainder)
    left = total - sum(parts)
    if left:
        for i in sorted(range(len(parts)), key=lambda i: (-remainders[i], i))[:left]:
            parts[i] += 1
    return parts


def spread(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` over ``weights`` by largest remainder (for refunds and the like).

    Rounding: each part is ``floor(total * w_i / sum(w))``, then the leftover units go one
    each to the largest remainders, ties to the lower index, so the parts add up to
    ``total`` exactly and no part is rounded up by more than one unit. ``total`` must be
    0..int64; weights must be non-negative with a sum that fits int64; all-zero weights
    split only a total of 0.
    """
    total = _scalar(total, "total", 0, amount=True)
    whole = 0
    for i, w in enumerate(weights):
        if w < 0:
            raise InvalidArgument("value_out_of_range", f"weights[{i}] must not be negative", field=f"weights[{i}]")
        whole += w
    if whole > INT64_MAX:
        raise _overflow("weights")
    if whole == 0 and total:
        raise InvalidArgument("value_out_of_range", "a non-zero total needs a non-zero weight", field="total")
    return _largest_remainder(total, weights)


def prorate(value: int, done_units: int, more_units: int, of_units: int) -> int:
    """The share of ``value`` for ``more_units`` more of ``of_units`` after ``done_units`` were taken.

    Rounding: ``floor(value*(done+more)/of) - floor(value*done/of)``, so repeated partial
    refunds never add up to more than ``value`` and refunding every unit gives exactly
    ``value``. ``value`` must be 0..int64; units need ``0 <= done``, ``0 <= more``,
    ``done + more <= of`` and ``of >= 1`` (field ``units``).
    """
    value = _scalar(value, "value", 0, amount=True)
    done = operator.index(done_units)
    more = operator.index(more_units)
    of = operator.index(of_units)
    if not (of >= 1 and done >= 0 and more >= 0 and done + more <= of <= INT64_MAX):
        raise InvalidArgument(
            "value_out_of_range", "units need 0 <= done, 0 <= more, done + more <= of, of >= 1", field="units"
        )
    return value * (done + more) // of - value * done // of


@dataclass(frozen=True)
class BasketPricing:
    """A priced basket: per-line lists (index = line) and order totals, all in minor units or points."""

    gross: list[int]
    line_discount: list[int]
    order_discount: list[int]
    net: list[int]
    points: list[int]
    points_money: list[int]
    money_due: list[int]
    earned: list[int]
    gross_total: int
    line_discount_total: int
    order_discount_total: int
    net_total: int
    points_max: int
    points_applied: int
    points_money_total: int
    money_due_total: int
    earned_total: int


def _bps_array(values: Sequence[int], name: str) -> None:
    """Every per-category rate is 0..10000 bps; the first that is not names the field."""
    for k, v in enumerate(values):
        if not 0 <= v <= BPS:
            raise InvalidArgument("value_out_of_range", f"{name}[{k}] must be 0..{BPS} bps", field=f"{name}[{k}]")


def price_basket(
    categories: Sequence[int],
    quantities: Sequence[int],
    unit_prices: Sequence[int],
    line_discounts: Sequence[int],
    *,
    discount_bps: int,
    cashback_bps: Sequence[int],
    category_pay_share_bps: Sequence[int],
    order_pay_share_bps: int,
    point_value_minor: int,
    available_points: int,
    requested_points: int,
    discounted_items_earn: bool,
    points_instead_of_discounts: bool,
) -> BasketPricing:
    """Price a basket: order discount, what points may pay, what is left in money, what it earns.

    Rounding (docs/calc.md), never creating value:
    - order discount ``floor(sum(after line discount) * discount_bps / 10000)``, spread by
      largest remainder over the lines' amounts after line discount;
    - a line's cap ``floor(net_i * share(cat_i) / 10000) // point_value_minor`` points, the
      order's cap ``floor(net_total * order_pay_share_bps / 10000) // point_value_minor``;
      ``points_max = min(available, order cap, sum of line caps)``,
      ``points_applied = min(requested, points_max)`` spread by largest remainder over the caps;
    - earning on the money part only, ``base_i = net_i - points_i * point_value_minor`` (0 for
      a line with a line discount unless ``discounted_items_earn``),
      ``earned_total = floor(sum(base_i * cashback(cat_i)) / (10000 * point_value_minor))``
      spread by largest remainder over ``base_i * cashback(cat_i)``;
    - with ``points_instead_of_discounts`` the order discount is 0 and lines with a line discount
      have cap 0 (the caller sets it only when points pay: ``service.pricing.quote_for``).
    Scalars are checked before lines; lines in order, each field in the order of the API.
    """
    discount_bps = _scalar(discount_bps, "discount_bps", 0, BPS)
    _bps_array(cashback_bps, "cashback_bps")
    if len(category_pay_share_bps) != len(cashback_bps):
        raise InvalidArgument(
            "value_out_of_range",
            "category_pay_share_bps must have one rate per category, as cashback_bps has",
            field="category_pay_share_bps",
        )
    _bps_array(category_pay_share_bps, "category_pay_share_bps")
    order_pay_share_bps = _scalar(order_pay_share_bps, "order_pay_share_bps", 0, BPS)
    pv = _scalar(point_value_minor, "point_value_minor", 1, amount=True)
    available_points = _scalar(available_points, "available_points", 0, amount=True)
    requested_points = _scalar(requested_points, "requested_points", 0, amount=True)

    n = len(categories)
    if not len(quantities) == len(unit_prices) == len(line_discounts) == n:
        raise InvalidArgument("value_out_of_range", "every line needs a category, quantity, price and discount", field="lines")
    categories_count = len(cashback_bps)
    gross = []
    for i in range(n):
        if not 0 <= categories[i] < categories_count:
            raise InvalidArgument("value_out_of_range", "unknown category", field=f"lines[{i}].category")
        if quantities[i] < 1:
            raise InvalidArgument("value_out_of_range", "quantity must be at least 1", field=f"lines[{i}].quantity")
        if unit_prices[i] < 0:
            raise InvalidArgument("value_out_of_range", "unit price must not be negative", field=f"lines[{i}].unit_price_minor")
        if line_discounts[i] < 0:
            raise InvalidArgument(
                "value_out_of_range", "line discount must not be negative", field=f"lines[{i}].line_discount_minor"
            )
        line_gross = quantities[i] * unit_prices[i]
        if line_gross > INT64_MAX:
            raise InvalidArgument("amount_overflows_int64", "quantity * unit price does not fit in int64", field=f"lines[{i}]")
        if line_discounts[i] > line_gross:
            raise InvalidArgument(
                "line_discount_must_not_exceed_line_total",
                "a line discount must not exceed quantity * unit price",
                field=f"lines[{i}].line_discount_minor",
            )
        gross.append(line_gross)
    # Every other sum (discounts, net, points' money, money due) is bounded by the gross total.
    gross_total = sum(gross)
    if gross_total > INT64_MAX:
        raise _overflow("lines")

    instead = bool(points_instead_of_discounts)
    line_discount = list(line_discounts)
    after = [g - d for g, d in zip(gross, line_discount)]
    after_total = sum(after)
    order_discount_total = 0 if instead else after_total * discount_bps // BPS
    order_discount = _largest_remainder(order_discount_total, after)
    net = [a - o for a, o in zip(after, order_discount)]
    net_total = sum(net)

    caps = [
        0 if instead and line_discount[i] else net[i] * category_pay_share_bps[categories[i]] // BPS // pv
        for i in range(n)
    ]
    order_cap = net_total * order_pay_share_bps // BPS // pv
    points_max = min(available_points, order_cap, sum(caps))
    points_applied = min(requested_points, points_max)
    points = _largest_remainder(points_applied, caps)
    points_money = [p * pv for p in points]
    money_due = [x - m for x, m in zip(net, points_money)]

    earns = [
        (money_due[i] if discounted_items_earn or not line_discount[i] else 0) * cashback_bps[categories[i]]
        for i in range(n)
    ]
    earned_total = sum(earns) // (BPS * pv)
    earned = _largest_remainder(earned_total, earns)

    return BasketPricing(
        gross=gross,
        line_discount=line_discount,
        order_discount=order_discount,
        net=net,
        points=points,
        points_money=points_money,
        money_due=money_due,
        earned=earned,
        gross_total=gross_total,
        line_discount_total=sum(line_discount),
        order_discount_total=order_discount_total,
        net_total=net_total,
        points_max=points_max,
        points_applied=points_applied,
        points_money_total=points_applied * pv,
        money_due_total=sum(money_due),
        earned_total=earned_total,
    )


def _check_lots(remaining: Sequence[int], *others: Sequence[int]) -> None:
    """Parallel lot arrays must have one length; remaining is never negative."""
    n = len(remaining)
    if any(len(other) != n for other in others):
        raise InvalidArgument("value_out_of_range", "lot arrays must have the same length", field="lots")
    for i, r in enumerate(remaining):
        if r < 0:
            raise InvalidArgument("value_out_of_range", "a lot's remaining must not be negative", field=f"lots[{i}].remaining")


def _fifo(
    lot_ids: Sequence[int],
    remaining: Sequence[int],
    activates_at: Sequence[int],
    expires_at: Sequence[int],
    now: int,
    skip: int,
) -> list[int]:
    """Indexes of usable lots (active now, remaining > 0), except ``skip``, in burn order.

    Burn order is ``(expires_at, activates_at, lot_id)`` ascending, then input order
    (the sort is stable); ``NEVER`` is the largest expiry, so never-expiring lots go last.
    """
    usable = [
        i
        for i in range(len(remaining))
        if remaining[i] > 0 and activates_at[i] <= now < expires_at[i] and i != skip
    ]
    usable.sort(key=lambda i: (expires_at[i], activates_at[i], lot_ids[i]))
    return usable


def _take(lot_ids: Sequence[int], remaining: Sequence[int], order: list[int], amount: int) -> tuple[list[tuple[int, int]], int]:
    """Take up to ``amount`` from the lots in ``order``; return the allocations and what is still left."""
    allocations = []
    for i in order:
        if not amount:
            break
        taken = min(remaining[i], amount)
        allocations.append((lot_ids[i], taken))
        amount -= taken
    return allocations, amount


def draw_fifo(
    lot_ids: Sequence[int],
    remaining: Sequence[int],
    activates_at: Sequence[int],
    expires_at: Sequence[int],
    amount: int,
    now: int,
) -> list[tuple[int, int]]:
    """Spend or hold ``amount`` points from the lots that expire first: ``[(lot_id, taken)]`` in draw order.

    Usable lots are those with ``activates_at <= now < expires_at`` and ``remaining > 0``,
    drawn in ``(expires_at, activates_at, lot_id)`` order, then input order. Whole points
    only, so no rounding. Refuses with ``points_must_not_exceed_balance`` (detail
    ``available``) when the usable lots hold less than ``amount``.
    """
    amount = _scalar(amount, "amount", 0, amount=True)
    now = _scalar(now, "now")
    _check_lots(remaining, lot_ids, activates_at, expires_at)
    order = _fifo(lot_ids, remaining, activates_at, expires_at, now, -1)
    available = sum(remaining[i] for i in order)
    if available > INT64_MAX:
        raise _overflow("lots")
    if amount == 0:
        return []
    if available < amount:
        raise FailedPrecondition(
            "points_must_not_exceed_balance",
            f"{amount} points asked, {available} usable",
            available=available,
        )
    return _take(lot_ids, remaining, order, amount)[0]


def clawback(
    lot_ids: Sequence[int],
    remaining: Sequence[int],
    activates_at: Sequence[int],
    expires_at: Sequence[int],
    amount: int,
    now: int,
    preferred_lot_id: int,
) -> tuple[list[tuple[int, int]], int]:
    """Take back ``amount`` points for a refund: ``([(lot_id, taken)], shortfall)``.

    First from the preferred lot (the first lot with that id, whatever its activation, if it
    is not expired, ``now < expires_at``, and has points left), then from usable lots in
    :func:`draw_fifo` order. Never refuses for lack of points: what could not be taken is
    the shortfall. Whole points only, so no rounding.
    """
    amount = _scalar(amount, "amount", 0, amount=True)
    now = _scalar(now, "now")
    preferred_lot_id = _scalar(preferred_lot_id, "preferred_lot_id")
    _check_lots(remaining, lot_ids, activates_at, expires_at)
    if amount == 0:
        return [], 0
    allocations = []
    preferred = next((i for i, lot_id in enumerate(lot_ids) if lot_id == preferred_lot_id), -1)
    if preferred >= 0 and remaining[preferred] > 0 and now < expires_at[preferred]:
        taken = min(remaining[preferred], amount)
        allocations.append((lot_ids[preferred], taken))
        amount -= taken
    order = _fifo(lot_ids, remaining, activates_at, expires_at, now, preferred)
    more, shortfall = _take(lot_ids, remaining, order, amount)
    return allocations + more, shortfall


def expired_lots(
    lot_ids: Sequence[int], remaining: Sequence[int], expires_at: Sequence[int], as_of: int
) -> list[tuple[int, int]]:
    """Lots to burn out at ``as_of``: ``expires_at <= as_of`` with points left, as ``[(lot_id, remaining)]``.

    Ordered by ``(expires_at, lot_id)``, then input order. Whole lots, so no rounding.
    """
    as_of = _scalar(as_of, "as_of")
    _check_lots(remaining, lot_ids, expires_at)
    due = [i for i in range(len(remaining)) if remaining[i] > 0 and expires_at[i] <= as_of]
    due.sort(key=lambda i: (expires_at[i], lot_ids[i]))
    return [(lot_ids[i], remaining[i]) for i in due]


def lot_summary(
    remaining: Sequence[int], activates_at: Sequence[int], expires_at: Sequence[int], now: int, window_end: int
) -> tuple[int, int, int]:
    """The balance as the member card shows it: ``(active, pending, burning)`` points.

    ``active``: lots with ``activates_at <= now < expires_at``; ``pending``: lots with
    ``activates_at > now`` and ``expires_at > now``; ``burning``: active or pending lots with
    ``expires_at <= window_end``. Sums of whole points, so no rounding.
    """
    now = _scalar(now, "now")
    window_end = _scalar(window_end, "window_end")
    _check_lots(remaining, activates_at, expires_at)
    active = pending = burning = 0
    for r, a, e in zip(remaining, activates_at, expires_at):
        if e <= now:
            continue
        if a <= now:
            active += r
        else:
            pending += r
        if e <= window_end:
            burning += r
    if max(active, pending, burning) > INT64_MAX:
        raise _overflow("lots")
    return active, pending, burning


def burn_forecast(
    remaining: Sequence[int], activates_at: Sequence[int], expires_at: Sequence[int], now: int, window_end: int
) -> list[tuple[int, int]]:
    """The detail of ``burning`` in :func:`lot_summary`: ``[(expires_at, points)]`` by ascending expiry.

    Lots with points left that are not expired at ``now`` and expire by ``window_end``,
    summed per expiry time. Whole points, so no rounding.
    """
    now = _scalar(now, "now")
    window_end = _scalar(window_end, "window_end")
    _check_lots(remaining, activates_at, expires_at)
    by_expiry: dict[int, int] = {}
    for r, e in zip(remaining, expires_at):
        if r > 0 and now < e <= window_end:
            by_expiry[e] = by_expiry.get(e, 0) + r
    if sum(by_expiry.values()) > INT64_MAX:
        raise _overflow("lots")
    return sorted(by_expiry.items())
