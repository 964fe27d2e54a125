"""Micro-benchmarks of both calculation twins: pytest-benchmark cases, or a speed-up table when run as a script."""

from __future__ import annotations

import argparse
import random
import sys
import timeit
from array import array
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loyalty_core.calc import load  # noqa: E402

IMPLEMENTATIONS = ("python", "cython")
LINES = (1, 20, 200)
LOTS = (10, 1_000, 100_000)
DAY_US = 86_400_000_000
NOW = 1_800_000_000_000_000  # early 2027, in microseconds
NEVER = 2**63 - 1

PROGRAMME = dict(
    discount_bps=500,
    cashback_bps=array("q", [300, 500, 100]),
    category_pay_share_bps=array("q", [10_000, 5_000, 1_000]),
    order_pay_share_bps=5_000,
    point_value_minor=100,
    available_points=100_000,
    requested_points=50,
    discounted_items_earn=False,
    points_instead_of_discounts=False,
)


def basket(lines: int, seed: int = 1) -> tuple[array, array, array, array]:
    """A checkout-shaped basket: a few categories, small quantities, one line in five discounted."""
    rng = random.Random(seed)
    categories, quantities, prices, discounts = (array("q") for _ in range(4))
    for _ in range(lines):
        quantity, price = rng.randint(1, 5), rng.randint(100, 50_000)
        categories.append(rng.randrange(3))
        quantities.append(quantity)
        prices.append(price)
        discounts.append(rng.randint(0, quantity * price // 4) if rng.random() < 0.2 else 0)
    return categories, quantities, prices, discounts


def lots(count: int, seed: int = 1) -> tuple[array, array, array, array]:
    """A member's lots as the store keeps them, in id (earning) order over two years.

    Most expire a year after earning and activate after 14 days; one in ten never expires
    (welcome and manual accruals), one in five is spent out, some have expired already.
    """
    rng = random.Random(seed)
    earned = sorted(NOW - rng.randrange(730 * DAY_US) for _ in range(count))
    ids, remaining, activates, expires = (array("q") for _ in range(4))
    for lot_id, at in enumerate(earned, start=1):
        ids.append(lot_id)
        remaining.append(0 if rng.random() < 0.2 else rng.randint(1, 5_000))
        activates.append(at + 14 * DAY_US)
        expires.append(NEVER if rng.random() < 0.1 else at + 365 * DAY_US)
    return ids, remaining, activates, expires


def half_balance(twin, lot_set) -> int:
    ids, remaining, activates, expires = lot_set
    return twin.lot_summary(remaining, activates, expires, NOW, NOW)[0] // 2


def cases(twin) -> dict[str, object]:
    """Every benchmarked call of ``twin``, as zero-argument callables named for the table."""
    calls: dict[str, object] = {}
    for n in LINES:
        lines = basket(n)
        calls[f"price_basket {n} lines"] = lambda lines=lines: twin.price_basket(*lines, **PROGRAMME)
    for n in LOTS:
        lot_set = lots(n)
        ids, remaining, activates, expires = lot_set
        amount = half_balance(twin, lot_set)
        calls[f"draw_fifo {n} lots"] = lambda a=lot_set, x=amount: twin.draw_fifo(*a, x, NOW)
        calls[f"lot_summary {n} lots"] = lambda r=remaining, a=activates, e=expires: twin.lot_summary(
            r, a, e, NOW, NOW + 30 * DAY_US
        )
    empty = array("q")
    # The boundary: calls that do no work, so they time crossing into the module and back.
    calls["boundary: prorate(0, 0, 0, 1)"] = lambda: twin.prorate(0, 0, 0, 1)
    calls["boundary: lot_summary of no lots"] = lambda: twin.lot_summary(empty, empty, empty, NOW, NOW)
    return calls


def per_call_us(calls: dict[str, object], budget_s: float, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` timeit runs of each call, each run sized to about ``budget_s``, in µs per call.

    The calls take turns run by run, so that a busy machine slows every twin alike
    instead of skewing the ratio between them.
    """
    timers = {name: timeit.Timer(call) for name, call in calls.items()}
    # One call each sizes the runs, and warms up.
    numbers = {name: max(1, int(budget_s / max(timer.timeit(number=1), 1e-7))) for name, timer in timers.items()}
    best = {name: float("inf") for name in timers}
    for _ in range(repeat):
        for name, timer in timers.items():
            best[name] = min(best[name], timer.timeit(number=numbers[name]) / numbers[name] * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run (less accurate)")
    args = parser.parse_args(argv)
    budget_s, repeat = (0.02, 1) if args.quick else (0.1, 7)
    twins = {impl: cases(load(impl)) for impl in IMPLEMENTATIONS}
    names = list(twins["python"])
    width = max(len(name) for name in names)
    print(f"{'case':<{width}}  {'python µs':>12}  {'cython µs':>12}  {'speed-up':>9}")
    for name in names:
        best = per_call_us({impl: twins[impl][name] for impl in IMPLEMENTATIONS}, budget_s, repeat)
        python_us, cython_us = best["python"], best["cython"]
        print(f"{name:<{width}}  {python_us:>12.2f}  {cython_us:>12.2f}  {python_us / cython_us:>8.1f}x", flush=True)
    return 0


# --- pytest-benchmark ----------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # the script mode needs only the standard library
    pytest = None

if pytest is not None:

    @pytest.fixture(params=IMPLEMENTATIONS)
    def twin(request):
        return load(request.param)

    @pytest.mark.parametrize("n", LINES)
    def test_price_basket(benchmark, twin, n):
        lines = basket(n)
        result = benchmark(twin.price_basket, *lines, **PROGRAMME)
        assert result.points_applied == PROGRAMME["requested_points"]

    @pytest.mark.parametrize("n", LOTS)
    def test_draw_fifo_half_the_balance(benchmark, twin, n):
        lot_set = lots(n)
        amount = half_balance(twin, lot_set)
        drawn = benchmark(twin.draw_fifo, *lot_set, amount, NOW)
        assert sum(taken for _, taken in drawn) == amount

    @pytest.mark.parametrize("n", LOTS)
    def test_lot_summary(benchmark, twin, n):
        _, remaining, activates, expires = lots(n)
        active, pending, burning = benchmark(twin.lot_summary, remaining, activates, expires, NOW, NOW + 30 * DAY_US)
        assert active > 0

    def test_boundary(benchmark, twin):
        assert benchmark(twin.prorate, 0, 0, 0, 1) == 0


if __name__ == "__main__":
    sys.exit(main())
