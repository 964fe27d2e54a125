"""The calculation's rules on hand-computed scenarios from the seeds, for each twin."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty_core.calc import load
from loyalty_core.errors import FailedPrecondition, InvalidArgument
from tests.calc.baskets import programme, q

NEVER = 2**63 - 1


@pytest.fixture(params=["python", "cython"])
def twin(request):
    return load(request.param)


def price(twin, lines, **overrides):
    """Price ``lines`` of (category, quantity, unit price, line discount) under a generous default programme."""
    settings_ = programme(cashback_bps=q([0]), point_value_minor=100) | overrides
    columns = [q(column) for column in zip(*lines)] if lines else [q([])] * 4
    return twin.price_basket(*columns, **settings_)


# --- earning and paying --------------------------------------------------------------------------


def test_points_pay_part_of_an_order_and_only_money_earns(twin):
    # Seeds: an order of 720.00 paid with 7.00 in points (1 point = 1.00) earns on 713.00 only.
    paid = price(twin, [(0, 1, 72000, 0)], cashback_bps=q([1000]), requested_points=7)
    assert (paid.points_applied, paid.points_money_total, paid.money_due_total) == (7, 700, 71300)
    assert paid.earned_total == 71300 * 1000 // 10_000 // 100 == 71  # 71.30 rounds down
    unpaid = price(twin, [(0, 1, 72000, 0)], cashback_bps=q([1000]))
    assert (unpaid.money_due_total, unpaid.earned_total) == (72000, 72)


def test_a_ten_percent_order_cap_lets_points_pay_ten_of_a_hundred(twin):
    # Seeds: with a 10% pay share, points pay at most 10.00 of a 100.00 ticket; 90.00 is paid in money.
    priced = price(twin, [(0, 1, 10000, 0)], order_pay_share_bps=1000, requested_points=1000)
    assert (priced.points_max, priced.points_applied, priced.money_due_total) == (10, 10, 9000)


def test_category_caps_limit_each_line(twin):
    # Bar (category 0) may be paid in full, tickets (category 1) only 10%.
    lines = [(0, 1, 5000, 0), (1, 1, 10000, 0)]
    priced = price(twin, lines, cashback_bps=q([0, 0]), category_pay_share_bps=q([10_000, 1000]), requested_points=500)
    assert priced.points_max == 60
    assert list(priced.points) == [50, 10]
    assert list(priced.money_due) == [0, 9000]


def test_points_max_is_the_least_of_balance_order_cap_and_line_caps(twin):
    lines = [(0, 1, 10000, 0)]
    assert price(twin, lines, available_points=3, requested_points=50).points_max == 3
    assert price(twin, lines, order_pay_share_bps=2000, requested_points=50).points_max == 20
    assert price(twin, lines, category_pay_share_bps=q([500]), requested_points=50).points_max == 5
    # A point worth more than a line's cap pays nothing on it: caps round down to whole points.
    assert price(twin, lines, point_value_minor=10001, requested_points=50).points_max == 0


def test_discounted_lines_earn_only_when_the_programme_says_so(twin):
    lines = [(0, 1, 1000, 0), (0, 1, 1000, 100)]
    strict = price(twin, lines, cashback_bps=q([1000]), point_value_minor=1)
    assert list(strict.earned) == [100, 0]
    generous = price(twin, lines, cashback_bps=q([1000]), point_value_minor=1, discounted_items_earn=True)
    assert list(generous.earned) == [100, 90]


def test_order_discount_is_spread_over_amounts_after_line_discount(twin):
    priced = price(twin, [(0, 1, 100, 0), (0, 1, 100, 50), (0, 1, 150, 0)], discount_bps=1000)
    assert priced.order_discount_total == 30  # 10% of 300 after line discounts
    assert list(priced.order_discount) == [10, 5, 15]
    assert list(priced.net) == [90, 45, 135]


def test_rounding_leftovers_go_to_the_largest_remainders_then_the_lower_index(twin):
    # 10% of 25 is 2.5 -> 2; shares 1.0, 0.6, 0.4: one leftover unit goes to the 0.6.
    priced = price(twin, [(0, 1, 5, 0), (0, 1, 12, 0), (0, 1, 8, 0)], discount_bps=1000)
    # 2 * 5/25 = 0.4, 2 * 12/25 = 0.96, 2 * 8/25 = 0.64: floors 0, 0, 0; leftovers to 0.96 and 0.64.
    assert list(priced.order_discount) == [0, 1, 1]
    # Equal remainders: the lower index wins.
    assert list(twin.spread(1, q([1, 1, 1]))) == [1, 0, 0]
    assert list(twin.spread(2, q([1, 1, 1]))) == [1, 1, 0]


def test_points_instead_of_discounts_drops_the_order_discount_and_discounted_lines(twin):
    lines = [(0, 1, 10000, 0), (0, 1, 10000, 1000)]
    with_points = price(twin, lines, discount_bps=1000, requested_points=500, points_instead_of_discounts=True)
    assert with_points.order_discount_total == 0
    assert list(with_points.points) == [100, 0]
    # The flag alone decides (the caller sets it only when points pay): no points asked, no discount.
    chosen = price(twin, lines, discount_bps=1000, points_instead_of_discounts=True)
    assert chosen.order_discount_total == 0
    without_points = price(twin, lines, discount_bps=1000, points_instead_of_discounts=False)
    assert without_points.order_discount_total == 1900


def test_an_empty_basket_is_all_zeros(twin):
    priced = price(twin, [], requested_points=5, discount_bps=1000, cashback_bps=q([1000]))
    assert list(priced.gross) == [] and priced.points_applied == priced.earned_total == priced.money_due_total == 0


def test_lines_are_refused_in_the_documented_order(twin):
    with pytest.raises(InvalidArgument) as refused:
        price(twin, [(0, 1, 10, 0), (3, 0, -1, -1)])
    assert refused.value.field == "lines[1].category"
    with pytest.raises(InvalidArgument) as refused:
        price(twin, [(0, 1, 10, 11)])
    assert (refused.value.code, refused.value.field) == ("line_discount_must_not_exceed_line_total", "lines[0].line_discount_minor")
    with pytest.raises(InvalidArgument) as refused:
        price(twin, [(0, 0, 10, 0)], discount_bps=10_001)
    assert refused.value.field == "discount_bps"  # scalars before lines
    with pytest.raises(InvalidArgument) as refused:
        price(twin, [], cashback_bps=q([0, 10_001]), category_pay_share_bps=q([0, 0]))
    assert refused.value.field == "cashback_bps[1]"


# --- parts always add up -------------------------------------------------------------------------


@st.composite
def baskets(draw):
    lines = draw(
        st.lists(
            st.tuples(st.integers(0, 1), st.integers(1, 100), st.integers(0, 10**6), st.booleans()), max_size=20
        )
    )
    return [(c, n, p, (n * p) // 3 if discounted else 0) for c, n, p, discounted in lines]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(baskets(), st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10**7), st.integers(1, 1000), st.booleans())
def test_parts_of_every_spread_add_up_to_the_whole(basket, rate, share, requested, point_value, instead):
    for twin in (load("python"), load("cython")):
        p = price(
            twin,
            basket,
            discount_bps=rate,
            cashback_bps=q([rate, 10_000 - rate]),
            category_pay_share_bps=q([share, 10_000]),
            order_pay_share_bps=share,
            point_value_minor=point_value,
            requested_points=requested,
            discounted_items_earn=True,
            points_instead_of_discounts=instead,
        )
        assert sum(p.order_discount) == p.order_discount_total
        assert sum(p.points) == p.points_applied <= p.points_max
        assert sum(p.earned) == p.earned_total
        assert sum(p.net) == p.net_total == p.gross_total - p.line_discount_total - p.order_discount_total
        assert sum(p.money_due) == p.money_due_total == p.net_total - p.points_money_total
        for i in range(len(basket)):
            assert p.net[i] == p.gross[i] - p.line_discount[i] - p.order_discount[i] >= 0
            assert p.money_due[i] == p.net[i] - p.points_money[i] >= 0
            assert p.points_money[i] == p.points[i] * point_value


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**15), st.lists(st.integers(0, 10**9), min_size=1, max_size=30))
def test_spread_parts_add_up_and_stay_within_one_unit_of_their_share(total, weights):
    whole = sum(weights)
    if whole == 0:
        total = 0
    parts = list(load("python").spread(total, weights))
    assert sum(parts) == total
    for part, weight in zip(parts, weights):
        exact_floor = total * weight // whole if whole else 0
        assert exact_floor <= part <= exact_floor + 1


def test_partial_refunds_prorate_to_exactly_the_whole(twin):
    assert [twin.prorate(100, done, 1, 3) for done in range(3)] == [33, 33, 34]
    assert twin.prorate(100, 0, 3, 3) == 100
    with pytest.raises(InvalidArgument) as refused:
        twin.prorate(100, 2, 2, 3)
    assert refused.value.field == "units"


# --- the burn queue ------------------------------------------------------------------------------

NOW = 60
# id, remaining, activates_at, expires_at
LOTS = [
    (1, 10, 0, NEVER),  # never expires: burnt last
    (2, 5, 50, 200),
    (3, 5, 10, 200),  # same expiry as 2, activated earlier: before 2
    (4, 3, 0, 100),  # expires first
    (5, 100, 0, 40),  # expired
    (6, 100, 500, NEVER),  # awaiting activation
    (7, 0, 0, 90),  # empty
]


def lot_columns(lots=LOTS):
    return [q(column) for column in zip(*lots)]


def test_fifo_draws_what_expires_first_then_older_activation_then_id(twin):
    ids, remaining, activates, expires = lot_columns()
    assert twin.draw_fifo(ids, remaining, activates, expires, 15, NOW) == [(4, 3), (3, 5), (2, 5), (1, 2)]
    ids, remaining, activates, expires = lot_columns([(9, 1, 0, 100), (8, 1, 0, 100)])
    assert twin.draw_fifo(ids, remaining, activates, expires, 2, NOW) == [(8, 1), (9, 1)]
    assert twin.draw_fifo(ids, remaining, activates, expires, 0, NOW) == []


def test_fifo_refuses_more_than_the_usable_balance(twin):
    ids, remaining, activates, expires = lot_columns()
    with pytest.raises(FailedPrecondition) as refused:
        twin.draw_fifo(ids, remaining, activates, expires, 24, NOW)
    assert refused.value.code == "points_must_not_exceed_balance"
    assert refused.value.details == {"available": 23}


def test_clawback_takes_the_preferred_lot_first_even_if_pending_and_reports_the_shortfall(twin):
    ids, remaining, activates, expires = lot_columns()
    assert twin.clawback(ids, remaining, activates, expires, 104, NOW, 6) == ([(6, 100), (4, 3), (3, 1)], 0)
    # An expired preferred lot is skipped; what the lots cannot give is the shortfall.
    assert twin.clawback(ids, remaining, activates, expires, 30, NOW, 5) == ([(4, 3), (3, 5), (2, 5), (1, 10)], 7)


def test_summary_and_forecast_come_from_the_lots(twin):
    ids, remaining, activates, expires = lot_columns()
    assert twin.lot_summary(remaining, activates, expires, NOW, 200) == (23, 100, 13)
    assert twin.burn_forecast(remaining, activates, expires, NOW, 200) == [(100, 3), (200, 10)]
    assert twin.expired_lots(ids, remaining, expires, 100) == [(5, 100), (4, 3)]


def test_lots_that_disagree_in_length_or_go_negative_are_refused(twin):
    with pytest.raises(InvalidArgument) as refused:
        twin.draw_fifo(q([1]), q([1]), q([0, 0]), q([9]), 1, 0)
    assert refused.value.field == "lots"
    with pytest.raises(InvalidArgument) as refused:
        twin.expired_lots(q([1, 2]), q([1, -1]), q([0, 0]), 5)
    assert refused.value.field == "lots[1].remaining"
