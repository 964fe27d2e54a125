"""Both calculation twins give the same results and the same refusals, on random inputs and at the int64 edges."""

from __future__ import annotations

import dataclasses
import random
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import loyalty_core._calc_py as py

# Imported directly, not through the facade, so that an unbuilt twin fails this module instead of skipping it.
import loyalty_core._fastcalc as fast
from loyalty_core.errors import InvalidArgument, LoyaltyError
from tests.calc.baskets import programme, q

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
NEVER = py.NEVER
FIELDS = [f.name for f in dataclasses.fields(py.BasketPricing)]
NOW = 1_000_000

# Sized so that this module runs in a few seconds; raise locally when hunting a bug.
fast_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
slow_settings = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])



def plain(value):
    """Results as plain lists, tuples and ints, so that arrays and lists, and both BasketPricing classes, compare."""
    if isinstance(value, (py.BasketPricing, fast.BasketPricing)):
        return {name: plain(getattr(value, name)) for name in FIELDS}
    if isinstance(value, (list, array)):
        return [plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    return value


def outcome(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except LoyaltyError as exc:
        # LoyaltyError.__eq__ compares kind, code and field; the details (e.g. `available`) must agree too.
        return ("refused", exc, exc.details)
    return ("ok", plain(result))


def same(name: str, *args, **kwargs):
    """Call both twins; assert they agree; return the reference's outcome."""
    expected = outcome(getattr(py, name), *args, **kwargs)
    actual = outcome(getattr(fast, name), *args, **kwargs)
    assert actual == expected
    return expected


# --- baskets -------------------------------------------------------------------------------------

bps = st.one_of(st.sampled_from([0, 1, 5000, 9999, 10000]), st.integers(0, 10_000))


@st.composite
def programmes(draw, categories: int) -> dict:
    return dict(
        discount_bps=draw(bps),
        cashback_bps=q(draw(st.lists(bps, min_size=categories, max_size=categories))),
        category_pay_share_bps=q(draw(st.lists(bps, min_size=categories, max_size=categories))),
        order_pay_share_bps=draw(bps),
        point_value_minor=draw(st.one_of(st.sampled_from([1, 100]), st.integers(1, 10**6))),
        available_points=draw(st.one_of(st.integers(0, 10**6), st.integers(0, 10**12))),
        requested_points=draw(st.one_of(st.just(0), st.integers(0, 10**6), st.integers(0, 10**12))),
        discounted_items_earn=draw(st.booleans()),
        points_instead_of_discounts=draw(st.booleans()),
    )


def line_arrays(lines: list[tuple[int, int, int, int]]) -> tuple[array, array, array, array]:
    return tuple(q(column) for column in zip(*lines)) if lines else (q([]), q([]), q([]), q([]))


@st.composite
def small_baskets(draw):
    """Up to 30 lines drawn field by field, so that hypothesis shrinks a failure to its smallest basket."""
    categories = draw(st.integers(1, 4))
    max_price = draw(st.sampled_from([100, 10**6, 10**12]))
    max_quantity = draw(st.sampled_from([1, 1000, 10**6]))
    lines = []
    for _ in range(draw(st.integers(0, 30))):
        quantity = draw(st.integers(1, max_quantity))
        price = draw(st.integers(0, max_price))
        discount = draw(st.one_of(st.just(0), st.integers(0, quantity * price)))
        lines.append((draw(st.integers(0, categories - 1)), quantity, price, min(discount, INT64_MAX)))
    return line_arrays(lines), draw(programmes(categories))


@st.composite
def large_baskets(draw):
    """0..500 lines from a seeded generator: hypothesis would take too long to draw them one by one."""
    categories = draw(st.integers(1, 8))
    rng = random.Random(draw(st.integers(0, 2**32)))
    max_price = draw(st.sampled_from([100, 10**6, 10**9, 10**12]))
    max_quantity = draw(st.sampled_from([1, 1000, 10**6]))
    discounted = draw(st.sampled_from([0.0, 0.3, 1.0]))
    lines = []
    for _ in range(draw(st.integers(0, 500))):
        quantity = rng.randint(1, max_quantity)
        price = rng.randint(0, max_price)
        discount = rng.randint(0, quantity * price) if rng.random() < discounted else 0
        lines.append((rng.randrange(categories), quantity, price, min(discount, INT64_MAX)))
    return line_arrays(lines), draw(programmes(categories))


def price_both(lines, programme):
    return same("price_basket", *lines, **programme)


@fast_settings
@given(small_baskets())
def test_small_baskets_agree(basket):
    price_both(*basket)


@slow_settings
@given(large_baskets())
def test_large_baskets_agree(basket):
    price_both(*basket)


EDGES = [INT64_MIN, -1, 0, 1, 2, 10_000, 10_001, 2**31, 2**62, INT64_MAX]
SCALAR_EDGES = EDGES + [INT64_MIN - 1, 2**63, 2**64]
SCALARS = ["discount_bps", "order_pay_share_bps", "point_value_minor", "available_points", "requested_points"]


@fast_settings
@given(small_baskets(), st.data())
def test_baskets_with_an_edge_value_agree(basket, data):
    """One line field, rate or scalar set to an int64 edge: both twins refuse alike, or price alike."""
    (categories, quantities, prices, discounts), programme = basket
    columns = [categories, quantities, prices, discounts]
    where = data.draw(st.sampled_from(["line", "rate", "scalar"]))
    if where == "line" and len(categories):
        column = data.draw(st.sampled_from(columns))
        column[data.draw(st.integers(0, len(column) - 1))] = data.draw(st.sampled_from(EDGES))
    elif where == "rate":
        rates = programme[data.draw(st.sampled_from(["cashback_bps", "category_pay_share_bps"]))]
        rates[data.draw(st.integers(0, len(rates) - 1))] = data.draw(st.sampled_from(EDGES))
    else:
        programme[data.draw(st.sampled_from(SCALARS))] = data.draw(st.sampled_from(SCALAR_EDGES))
    price_both(columns, programme)


def one_line(quantity, price, discount=0):
    return q([0]), q([quantity]), q([price]), q([discount])


def test_empty_basket_prices_to_zero_in_both():
    kind, result = price_both(line_arrays([]), programme(requested_points=5, discount_bps=1000))
    assert kind == "ok" and result["gross"] == [] and result["earned_total"] == 0 and result["points_applied"] == 0


@pytest.mark.parametrize("rate", [0, 10_000])
def test_zero_and_full_rates_agree(rate):
    lines = line_arrays([(0, 3, 999, 7), (0, 1, 1, 0), (0, 2, 10**12, 0)])
    for instead in (False, True):
        price_both(
            lines,
            programme(
                discount_bps=rate,
                cashback_bps=q([rate]),
                category_pay_share_bps=q([rate]),
                order_pay_share_bps=rate,
                requested_points=10**9,
                available_points=10**13,
                points_instead_of_discounts=instead,
                discounted_items_earn=True,
            ),
        )


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([(0, 2, 2**62, 0)], "lines[0]"),  # quantity * price
        ([(0, 1, 2**62, 0), (0, 1, 2**62, 0)], "lines"),  # the gross total
        ([(0, 1, INT64_MAX, 0), (0, 1, 1, 0)], "lines"),
    ],
)
def test_int64_overflow_is_refused_by_both(lines, field):
    kind, error, _ = price_both(line_arrays(lines), programme())
    assert kind == "refused"
    assert error == InvalidArgument("amount_overflows_int64", "", field=field)


def test_largest_products_stay_exact_in_both():
    # Earning weights reach INT64_MAX * 10000 and their product with the total exceeds 128 bits.
    lines = line_arrays([(0, 1, INT64_MAX, 0)])
    kind, result = price_both(lines, programme(cashback_bps=q([10_000]), requested_points=3, discount_bps=1))
    assert kind == "ok" and result["earned_total"] == result["money_due_total"]
    lines = line_arrays([(0, 1, INT64_MAX - 7, 0), (0, 1, 7, 0)])
    price_both(lines, programme(cashback_bps=q([9_999]), category_pay_share_bps=q([10_000])))


def test_overflowing_scalars_are_refused_by_both():
    for name in ["point_value_minor", "available_points", "requested_points"]:
        kind, error, _ = price_both(line_arrays([]), programme(**{name: 2**63}))
        assert error == InvalidArgument("amount_overflows_int64", "", field=name)


def test_mismatched_line_arrays_are_refused_by_both():
    kind, error, _ = price_both((q([0]), q([1, 1]), q([1]), q([0])), programme())
    assert error == InvalidArgument("value_out_of_range", "", field="lines")


# --- spread and prorate ----------------------------------------------------------------------------

@fast_settings
@given(
    st.one_of(st.integers(0, 10**6), st.integers(0, INT64_MAX), st.sampled_from([-1, 2**63])),
    st.lists(st.one_of(st.integers(0, 1000), st.integers(0, INT64_MAX), st.just(-1)), max_size=50),
)
def test_spread_agrees(total, weights):
    kind, *rest = same("spread", total, q(weights))
    if kind == "ok":
        assert sum(rest[0]) == total


@slow_settings
@given(st.integers(0, 20_000), st.sampled_from([[0, 3, 7], range(11), range(10**12)]), st.integers(0, 2**32), st.data())
def test_long_spreads_agree(n, choices, seed, data):
    """Thousands of weights, many with equal remainders: the compiled twin selects rather than sorts them."""
    rng = random.Random(seed)
    weights = [rng.choice(choices) for _ in range(n)]
    total = data.draw(st.one_of(st.integers(0, 3 * n), st.integers(0, 10**15))) if any(weights) else 0
    same("spread", total, q(weights))


@fast_settings
@given(
    st.one_of(st.integers(0, 10**6), st.integers(0, INT64_MAX), st.sampled_from([-1, 2**63])),
    st.integers(-1, 1000),
    st.integers(-1, 1000),
    st.one_of(st.integers(-1, 1000), st.just(INT64_MAX), st.just(2**63)),
)
def test_prorate_agrees(value, done, more, of):
    same("prorate", value, done, more, of)


# --- the burn queue ----------------------------------------------------------------------------------

TIMES = [INT64_MIN, 0, NOW - 1000, NOW - 1, NOW, NOW + 1, NOW + 1000, NOW + 5000, NEVER]


@st.composite
def lot_sets(draw):
    """0..10,000 lots with few distinct times (so expiries tie), some empty, some pending or expired."""
    n = draw(st.one_of(st.integers(0, 30), st.integers(0, 1_000), st.integers(5_000, 10_000)))
    rng = random.Random(draw(st.integers(0, 2**32)))
    huge = draw(st.booleans()) and draw(st.booleans())  # a quarter of the sets risk int64 sums
    unique_ids = draw(st.booleans())
    ids = rng.sample(range(1, 4 * n + 2), n) if unique_ids else [rng.randint(1, max(1, n // 3)) for _ in range(n)]
    lots = [
        (
            lot_id,
            rng.choice([0, rng.randint(1, 100), rng.randint(1, 10**9), 2**62 if huge else 5]),
            rng.choice(TIMES[:-1]),
            rng.choice(TIMES),
        )
        for lot_id in ids
    ]
    if draw(st.booleans()):
        # As the store keeps them (earning order): each of the expiring and the never-expiring
        # lots in burn order, the never-expiring ones scattered among the others.
        key = lambda lot: (lot[3], lot[2], lot[0])  # noqa: E731
        never = sorted((lot for lot in lots if lot[3] == NEVER), key=key)
        others = iter(sorted((lot for lot in lots if lot[3] != NEVER), key=key))
        at = set(rng.sample(range(n), len(never)))
        never_iter = iter(never)
        lots = [next(never_iter) if i in at else next(others) for i in range(n)]
    columns = list(zip(*lots)) if lots else [(), (), (), ()]
    return tuple(q(column) for column in columns)


@slow_settings
@given(lot_sets(), st.data())
def test_burn_queue_agrees(lots, data):
    ids, remaining, activates, expires = lots
    usable = sum(r for r, a, e in zip(remaining, activates, expires) if a <= NOW < e)
    amount = data.draw(
        st.one_of(st.integers(0, usable + 2), st.sampled_from([0, 1, usable, usable + 1, INT64_MAX, 2**63, -1]))
    )
    now = data.draw(st.sampled_from([NOW, NOW, INT64_MIN, NEVER, NEVER + 1]))
    window_end = data.draw(st.sampled_from(TIMES))
    preferred = ids[data.draw(st.integers(0, len(ids) - 1))] if len(ids) else 0
    same("draw_fifo", ids, remaining, activates, expires, amount, now)
    same("clawback", ids, remaining, activates, expires, amount, now, preferred)
    same("expired_lots", ids, remaining, expires, now)
    same("lot_summary", remaining, activates, expires, now, window_end)
    same("burn_forecast", remaining, activates, expires, now, window_end)


def test_ties_in_expiry_draw_alike():
    ids, remaining = q([5, 4, 3, 2, 1, 3]), q([1, 1, 1, 1, 1, 1])
    activates = q([0, 0, 10, 10, 0, 10])
    expires = q([NEVER, 100, 100, 100, 100, 100])
    kind, drawn = same("draw_fifo", ids, remaining, activates, expires, 6, 50)
    assert drawn == [(1, 1), (4, 1), (2, 1), (3, 1), (3, 1), (5, 1)]


def test_bad_lots_are_refused_alike():
    kind, error, _ = same("draw_fifo", q([1]), q([1, 2]), q([0]), q([9]), 1, 0)
    assert error == InvalidArgument("value_out_of_range", "", field="lots")
    kind, error, _ = same("lot_summary", q([1, -1]), q([0, 0]), q([9, 9]), 0, 5)
    assert error == InvalidArgument("value_out_of_range", "", field="lots[1].remaining")
    kind, error, _ = same("lot_summary", q([INT64_MAX, 1]), q([0, 0]), q([9, 9]), 0, 5)
    assert error == InvalidArgument("amount_overflows_int64", "", field="lots")
    kind, error, details = same("draw_fifo", q([1, 2]), q([3, 4]), q([0, 0]), q([9, 9]), 8, 0)
    assert error.code == "points_must_not_exceed_balance" and details == {"available": 7}


def test_the_compiled_twin_takes_any_contiguous_int64_buffer_and_nothing_else():
    remaining, activates, expires = q([1, 2]), q([0, 0]), q([9, 9])
    assert fast.lot_summary(memoryview(remaining), activates, expires, 0, 5) == (3, 0, 0)
    for wrong in (array("d", [1.0, 2.0]), array("i", [1, 2]), array("Q", [1, 2]), memoryview(q([1, 0, 2]))[::2]):
        with pytest.raises((TypeError, BufferError)):
            fast.lot_summary(wrong, activates, expires, 0, 5)
