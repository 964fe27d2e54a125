"""The use cases' one way to calc for lots: arrays in, draws, splits, balances and lifetimes out."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from loyalty_core import calc
from loyalty_core.model import US_PER_DAY, Balance, BurnOut, Expiry, Member
from loyalty_core.store.ledger import Lots

BURN_WINDOW_DAYS = 30
# Put a limit on everything: points live at most 100 years (a longer term is a typo; use never).
MAX_LIFETIME_DAYS = 36_500


def int64s(values: Sequence[int]) -> array:
    """The int64 buffer calc's twins take (the compiled one reads it without boxing)."""
    return array("q", values)


def _arrays(lots: Lots) -> tuple[array, array, array, array]:
    return int64s(lots.lot_ids), int64s(lots.remaining), int64s(lots.activates_at), int64s(lots.expires_at)


def available_points(lots: Lots, now: int) -> int:
    """Points that may pay now: the active part of the member's lots."""
    _, remaining, activates_at, expires_at = _arrays(lots)
    active, _, _ = calc.lot_summary(remaining, activates_at, expires_at, now, now)
    return active


def draw(lots: Lots, amount: int, now: int) -> list[tuple[int, int]]:
    """``amount`` points from the usable lots, earliest expiry first: [(lot_id, taken)]."""
    return calc.draw_fifo(*_arrays(lots), amount, now)


def claw(lots: Lots, amount: int, now: int, preferred_lot_id: int | None) -> tuple[list[tuple[int, int]], int]:
    """A refund's take-back: the order's own lot first (even pending), then FIFO; and the shortfall."""
    return calc.clawback(*_arrays(lots), amount, now, -1 if preferred_lot_id is None else preferred_lot_id)


def expiring(lots: Lots, as_of: int) -> list[tuple[int, int]]:
    ids, remaining, _, expires_at = _arrays(lots)
    return calc.expired_lots(ids, remaining, expires_at, as_of)


def fill(caps: Sequence[int], amount: int) -> list[int]:
    """Split ``amount`` over ``caps`` in their order, each part at most its cap, as the burn queue
    draws lots: the caps are lots that expire in list order. Refuses when the caps hold less."""
    n = len(caps)
    ids = int64s(range(1, n + 1))
    taken = dict(calc.draw_fifo(ids, int64s(caps), int64s([0] * n), ids, amount, 0))
    return [taken.get(i, 0) for i in range(1, n + 1)]


def burn_forecast(lots: Lots, after: int, window_end: int) -> list[BurnOut]:
    """The lots' points that burn after ``after`` and by ``window_end``, summed per expiry time."""
    _, remaining, activates_at, expires_at = _arrays(lots)
    return [BurnOut(at, points) for at, points in calc.burn_forecast(remaining, activates_at, expires_at,
                                                                     after, window_end)]


def balance_of(member: Member, lots: Lots, now: int) -> Balance:
    """Active, pending and burning points from the lots; held, debt and totals from the member."""
    window_end = now + BURN_WINDOW_DAYS * US_PER_DAY
    _, remaining, activates_at, expires_at = _arrays(lots)
    active, pending, burning = calc.lot_summary(remaining, activates_at, expires_at, now, window_end)
    burn_outs = tuple(burn_forecast(lots, now, window_end))
    return Balance(
        active_points=active, pending_points=pending, held_points=member.held_points, burning_points=burning,
        burn_outs=burn_outs, debt_points=member.debt_points, earned_total_points=member.earned_total_points,
        spent_total_points=member.spent_total_points, expired_total_points=member.expired_total_points, as_of=now,
    )


def lifetime_end(start: int, days: int) -> int:
    """When points that live ``days`` from ``start`` expire; 0 days means never."""
    return calc.NEVER if days == 0 else start + days * US_PER_DAY


def expiry_end(rule: Expiry, point_lifetime_days: int, start: int) -> int:
    """When points credited at ``start`` under ``rule`` expire (a rule its caller checked), with the
    programme's ``point_lifetime_days`` for its default."""
    if rule.rule == "expire_at":
        return rule.expires_at
    days = {"programme_default": point_lifetime_days, "never": 0}.get(rule.rule, rule.lifetime_days)
    return lifetime_end(start, days)
