# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of loyalty_core._calc_py: the same names, results and errors, computed on C int64."""

from cpython.array cimport array, clone
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint64_t
from libc.stdlib cimport free, malloc, qsort
from libc.string cimport memmove

from loyalty_core.errors import FailedPrecondition, InvalidArgument

cdef extern from *:
    """
    typedef unsigned __int128 lc_u128;

    /* q = floor(a*b/c), r = a*b mod c, exactly, for 0 < c < 2**127. */
    static inline void lc_muldivrem(uint64_t a, lc_u128 b, lc_u128 c, lc_u128 *q, lc_u128 *r) {
        lc_u128 p, bq, br, qq = 0, rr = 0;
        int bit;
        if (!__builtin_mul_overflow((lc_u128)a, b, &p)) {
            /* 128-bit division is a library call; most amounts fit the machine's own. */
            if ((p >> 64) == 0 && (c >> 64) == 0) {
                *q = (uint64_t)p / (uint64_t)c;
                *r = (uint64_t)p % (uint64_t)c;
            } else {
                *q = p / c;
                *r = p % c;
            }
            return;
        }
        /* a*b needs more than 128 bits (earning weights reach 2**77): long multiplication by the
           bits of a, keeping the running product as qq*c + rr with rr < c, so nothing overflows. */
        bq = b / c;
        br = b % c;
        for (bit = 63; bit >= 0; --bit) {
            qq <<= 1;
            rr <<= 1;
            if (rr >= c) { rr -= c; qq += 1; }
            if ((a >> bit) & 1) {
                qq += bq;
                rr += br;
                if (rr >= c) { rr -= c; qq += 1; }
            }
        }
        *q = qq;
        *r = rr;
    }

    /* Written in C because Cython would divide this type as a double. */
    static inline lc_u128 lc_udiv(lc_u128 a, lc_u128 b) { return a / b; }

    /* floor(a*b/c) for a, b >= 0 and c > 0 when the result is known to fit int64. */
    static inline int64_t lc_muldiv(int64_t a, int64_t b, int64_t c) {
        lc_u128 q, r;
        lc_muldivrem((uint64_t)a, (lc_u128)(uint64_t)b, (lc_u128)(uint64_t)c, &q, &r);
        return (int64_t)q;
    }
    """
    ctypedef unsigned long long u128 "lc_u128"
    bint add_overflow "__builtin_add_overflow"(int64_t a, int64_t b, int64_t *r) noexcept nogil
    bint mul_overflow "__builtin_mul_overflow"(int64_t a, int64_t b, int64_t *r) noexcept nogil
    void muldivrem "lc_muldivrem"(uint64_t a, u128 b, u128 c, u128 *q, u128 *r) noexcept nogil
    int64_t muldiv "lc_muldiv"(int64_t a, int64_t b, int64_t c) noexcept nogil
    u128 udiv "lc_udiv"(u128 a, u128 b) noexcept nogil

NEVER = 2**63 - 1

cdef int64_t BPS = 10000
cdef array _INT64 = array("q")


ctypedef struct Lot:
    int64_t expires
    int64_t activates
    int64_t lot_id
    int64_t remaining
    Py_ssize_t pos


cdef int64_t _scalar(object value, str field, int64_t lo, int64_t hi, bint amount) except? -1:
    """Check one scalar parameter against ``lo..hi`` as ``_calc_py._scalar`` does."""
    cdef int64_t v
    try:
        v = value
    except OverflowError:
        if amount and value > 0:
            raise InvalidArgument("amount_overflows_int64", f"{field} does not fit in int64", field=field)
        raise InvalidArgument("value_out_of_range", f"{field} must be between {lo} and {hi}", field=field)
    if v < lo or v > hi:
        raise InvalidArgument("value_out_of_range", f"{field} must be between {lo} and {hi}, not {v}", field=field)
    return v


cdef object _overflow(str field):
    """The refusal for a sum over ``field`` that left int64."""
    return InvalidArgument("amount_overflows_int64", f"a sum over {field} does not fit in int64", field=field)


cdef class _Int64Arrays:
    """The request's int64 arrays, borrowed as C pointers for one call and released when it ends.

    A plain buffer request costs far less than a typed memoryview, which matters for small
    baskets where setting up the call is most of the work.
    """

    cdef Py_buffer views[6]
    cdef int count

    cdef const int64_t* borrow(self, object obj, str name, Py_ssize_t* n) except? NULL:
        """A pointer to the int64 items of ``obj`` (a contiguous buffer such as ``array('q')``); ``n`` gets their count."""
        assert self.count < 6, "a call borrows at most six arrays"
        cdef Py_buffer* view = &self.views[self.count]
        PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        self.count += 1
        cdef const char* fmt = view.format
        if fmt == NULL:  # no format means unsigned bytes
            raise TypeError(f"{name} must be a one-dimensional int64 buffer such as array('q')")
        if fmt[0] == b"@" or fmt[0] == b"=":
            fmt += 1
        if view.ndim != 1 or view.itemsize != 8 or (fmt[0] != b"q" and fmt[0] != b"l") or fmt[1] != 0:
            raise TypeError(f"{name} must be a one-dimensional int64 buffer such as array('q')")
        n[0] = view.shape[0]
        return <const int64_t*>view.buf

    def __dealloc__(self):
        cdef int i
        for i in range(self.count):
            PyBuffer_Release(&self.views[i])


cdef inline int64_t* _data(array a) noexcept:
    """The items of an ``array('q')`` made here, to be filled in place."""
    return <int64_t*>a.data.as_voidptr


cdef int _descending(const void* a, const void* b) noexcept nogil:
    """Largest first, for qsort over 128-bit remainders."""
    cdef u128 x = (<const u128*>a)[0]
    cdef u128 y = (<const u128*>b)[0]
    return -1 if x > y else (1 if x < y else 0)


cdef u128 _kth_largest(u128* v, Py_ssize_t m, Py_ssize_t k) noexcept nogil:
    """The ``k``-th largest (from 0) of ``v[0..m)``, reordering ``v``.

    Quickselect with a three-way partition, so runs of equal remainders cost one round;
    after 64 rounds it sorts what is left, so no input makes it quadratic.
    """
    cdef Py_ssize_t lo = 0, hi = m - 1, lt, gt, i, rounds = 0
    cdef u128 pivot, a, b, c, tmp
    while lo < hi:
        rounds += 1
        if rounds > 64:
            qsort(v + lo, hi - lo + 1, sizeof(u128), _descending)
            return v[k]
        a = v[lo]
        b = v[lo + ((hi - lo) >> 1)]
        c = v[hi]
        if a < b:
            a, b = b, a
        if b < c:
            b = a if a < c else c
        pivot = b  # the median of the three
        lt = lo
        i = lo
        gt = hi
        while i <= gt:
            if v[i] > pivot:
                tmp = v[lt]
                v[lt] = v[i]
                v[i] = tmp
                lt += 1
                i += 1
            elif v[i] < pivot:
                tmp = v[gt]
                v[gt] = v[i]
                v[i] = tmp
                gt -= 1
            else:
                i += 1
        # v[lo..lt) > pivot, v[lt..gt] == pivot, v(gt..hi] < pivot
        if k < lt:
            hi = lt - 1
        elif k > gt:
            lo = gt + 1
        else:
            return pivot
    return v[k]


cdef void _largest_remainder(int64_t total, const u128* w, u128 whole, Py_ssize_t n,
                             int64_t* out, u128* rem, u128* sel) noexcept nogil:
    """Split ``total`` over ``w`` (sum ``whole``) as ``_calc_py._largest_remainder`` does.

    ``rem`` and ``sel`` are scratch space for ``n`` remainders each.
    """
    cdef Py_ssize_t i, m = 0
    cdef u128 q, threshold
    cdef int64_t given = 0, left, ties
    # Nothing to split is common (no order discount, no points asked): skip the divisions.
    if whole == 0 or total == 0:
        for i in range(n):
            out[i] = 0
        return
    for i in range(n):
        muldivrem(<uint64_t>total, w[i], whole, &q, &rem[i])
        out[i] = <int64_t>q
        given += <int64_t>q
        if rem[i]:
            sel[m] = rem[i]
            m += 1
    left = total - given
    if left == 0:
        return
    # The leftover is below the number of non-zero remainders. The `left` largest get a unit
    # each: all above the smallest of them, then those equal to it by index. No sort needed.
    threshold = _kth_largest(sel, m, left - 1)
    ties = left
    for i in range(n):
        if rem[i] > threshold:
            ties -= 1
    for i in range(n):
        if rem[i] > threshold:
            out[i] += 1
        elif rem[i] == threshold and ties > 0:
            out[i] += 1
            ties -= 1


cdef u128* _alloc_wide(Py_ssize_t n) except NULL:
    """Room for ``n`` weights and two times ``n`` remainders, 128 bits each."""
    cdef u128* wide = <u128*>malloc((3 * n + 1) * sizeof(u128))
    if wide == NULL:
        raise MemoryError()
    return wide


def spread(total, weights):
    """Split ``total`` over ``weights`` by largest remainder (for refunds and the like).

    Rounding: each part is ``floor(total * w_i / sum(w))``, then the leftover units go one
    each to the largest remainders, ties to the lower index, so the parts add up to
    ``total`` exactly and no part is rounded up by more than one unit. ``total`` must be
    0..int64; weights must be non-negative with a sum that fits int64; all-zero weights
    split only a total of 0. Returns an ``array('q')``.
    """
    cdef int64_t t = _scalar(total, "total", 0, INT64_MAX, True)
    cdef _Int64Arrays arrays = _Int64Arrays.__new__(_Int64Arrays)
    cdef Py_ssize_t i, n
    cdef const int64_t* w = arrays.borrow(weights, "weights", &n)
    cdef int64_t whole = 0
    cdef bint overflow = False
    for i in range(n):
        if w[i] < 0:
            raise InvalidArgument("value_out_of_range", f"weights[{i}] must not be negative", field=f"weights[{i}]")
        overflow |= add_overflow(whole, w[i], &whole)
    if overflow:
        raise _overflow("weights")
    if whole == 0 and t:
        raise InvalidArgument("value_out_of_range", "a non-zero total needs a non-zero weight", field="total")
    cdef array out = clone(_INT64, n, False)
    cdef u128* wide = _alloc_wide(n)
    try:
        for i in range(n):
            wide[i] = <u128>w[i]
        _largest_remainder(t, wide, <u128>whole, n, _data(out), wide + n, wide + 2 * n)
    finally:
        free(wide)
    return out


def prorate(value, done_units, more_units, of_units):
    """The share of ``value`` for ``more_units`` more of ``of_units`` after ``done_units`` were taken.

    Rounding: ``floor(value*(done+more)/of) - floor(value*done/of)``, so repeated partial
    refunds never add up to more than ``value`` and refunding every unit gives exactly
    ``value``. ``value`` must be 0..int64; units need ``0 <= done``, ``0 <= more``,
    ``done + more <= of`` and ``of >= 1`` (field ``units``).
    """
    cdef int64_t v = _scalar(value, "value", 0, INT64_MAX, True)
    cdef int64_t done, more, of
    try:
        done = done_units
        more = more_units
        of = of_units
    except OverflowError:
        done = more = of = -1
    if not (of >= 1 and done >= 0 and more >= 0 and done <= of and more <= of - done):
        raise InvalidArgument(
            "value_out_of_range", "units need 0 <= done, 0 <= more, done + more <= of, of >= 1", field="units"
        )
    return muldiv(v, done + more, of) - muldiv(v, done, of)


# The attribute names of BasketPricing, in the reference dataclass's order.
_FIELDS = (
    "gross", "line_discount", "order_discount", "net", "points", "points_money", "money_due", "earned",
    "gross_total", "line_discount_total", "order_discount_total", "net_total", "points_max",
    "points_applied", "points_money_total", "money_due_total", "earned_total",
)


cdef class BasketPricing:
    """A priced basket: per-line ``array('q')`` (index = line) and order totals, in minor units or points."""

    cdef readonly array gross, line_discount, order_discount, net, points, points_money, money_due, earned
    cdef readonly int64_t gross_total, line_discount_total, order_discount_total, net_total
    cdef readonly int64_t points_max, points_applied, points_money_total, money_due_total, earned_total

    def _values(self):
        """Every field in the order of ``_FIELDS``, for comparison."""
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other):
        if not isinstance(other, BasketPricing):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None

    def __repr__(self):
        return "BasketPricing(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS) + ")"


cdef void _check_bps(const int64_t* values, Py_ssize_t n, str name) except *:
    """Every per-category rate is 0..10000 bps; the first that is not names the field."""
    cdef Py_ssize_t k
    for k in range(n):
        if not 0 <= values[k] <= BPS:
            raise InvalidArgument("value_out_of_range", f"{name}[{k}] must be 0..{BPS} bps", field=f"{name}[{k}]")


def price_basket(categories, quantities, unit_prices, line_discounts, *,
                 discount_bps, cashback_bps, category_pay_share_bps,
                 order_pay_share_bps, point_value_minor, available_points,
                 requested_points, discounted_items_earn, points_instead_of_discounts):
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
      spread by largest remainder over ``base_i * cashback(cat_i)`` (exact 128-bit products);
    - with ``points_instead_of_discounts`` the order discount is 0 and lines with a line discount
      have cap 0 (the caller sets it only when points pay: ``service.pricing.quote_for``).
    Scalars are checked before lines; lines in order, each field in the order of the API.
    Per-line results are ``array('q')``.
    """
    cdef int64_t disc = _scalar(discount_bps, "discount_bps", 0, BPS, False)
    cdef _Int64Arrays arrays = _Int64Arrays.__new__(_Int64Arrays)
    cdef Py_ssize_t ncat, nshare, n, nqty, nprice, ndisc
    cdef const int64_t* cash = arrays.borrow(cashback_bps, "cashback_bps", &ncat)
    cdef const int64_t* share = arrays.borrow(category_pay_share_bps, "category_pay_share_bps", &nshare)
    _check_bps(cash, ncat, "cashback_bps")
    if nshare != ncat:
        raise InvalidArgument(
            "value_out_of_range",
            "category_pay_share_bps must have one rate per category, as cashback_bps has",
            field="category_pay_share_bps",
        )
    _check_bps(share, nshare, "category_pay_share_bps")
    cdef int64_t order_share = _scalar(order_pay_share_bps, "order_pay_share_bps", 0, BPS, False)
    cdef int64_t pv = _scalar(point_value_minor, "point_value_minor", 1, INT64_MAX, True)
    cdef int64_t available = _scalar(available_points, "available_points", 0, INT64_MAX, True)
    cdef int64_t requested = _scalar(requested_points, "requested_points", 0, INT64_MAX, True)
    cdef bint discounted_earn = discounted_items_earn
    cdef bint instead = points_instead_of_discounts

    cdef const int64_t* cat = arrays.borrow(categories, "categories", &n)
    cdef const int64_t* qty = arrays.borrow(quantities, "quantities", &nqty)
    cdef const int64_t* price = arrays.borrow(unit_prices, "unit_prices", &nprice)
    cdef const int64_t* ldisc = arrays.borrow(line_discounts, "line_discounts", &ndisc)
    cdef Py_ssize_t i
    if nqty != n or nprice != n or ndisc != n:
        raise InvalidArgument("value_out_of_range", "every line needs a category, quantity, price and discount", field="lines")

    cdef BasketPricing res = BasketPricing.__new__(BasketPricing)
    res.gross = clone(_INT64, n, False)
    res.line_discount = clone(_INT64, n, False)
    res.order_discount = clone(_INT64, n, False)
    res.net = clone(_INT64, n, False)
    res.points = clone(_INT64, n, False)
    res.points_money = clone(_INT64, n, False)
    res.money_due = clone(_INT64, n, False)
    res.earned = clone(_INT64, n, False)
    cdef int64_t* gross = _data(res.gross)
    cdef int64_t* line_discount = _data(res.line_discount)
    cdef int64_t* order_discount = _data(res.order_discount)
    cdef int64_t* net = _data(res.net)
    cdef int64_t* points = _data(res.points)
    cdef int64_t* points_money = _data(res.points_money)
    cdef int64_t* money_due = _data(res.money_due)
    cdef int64_t* earned = _data(res.earned)

    cdef int64_t c, g, d, gross_total = 0, line_discount_total = 0
    cdef bint overflow = False
    for i in range(n):
        c = cat[i]
        if c < 0 or c >= ncat:
            raise InvalidArgument("value_out_of_range", "unknown category", field=f"lines[{i}].category")
        if qty[i] < 1:
            raise InvalidArgument("value_out_of_range", "quantity must be at least 1", field=f"lines[{i}].quantity")
        if price[i] < 0:
            raise InvalidArgument("value_out_of_range", "unit price must not be negative", field=f"lines[{i}].unit_price_minor")
        d = ldisc[i]
        if d < 0:
            raise InvalidArgument(
                "value_out_of_range", "line discount must not be negative", field=f"lines[{i}].line_discount_minor"
            )
        if mul_overflow(qty[i], price[i], &g):
            raise InvalidArgument("amount_overflows_int64", "quantity * unit price does not fit in int64", field=f"lines[{i}]")
        if d > g:
            raise InvalidArgument(
                "line_discount_must_not_exceed_line_total",
                "a line discount must not exceed quantity * unit price",
                field=f"lines[{i}].line_discount_minor",
            )
        # Checked after every line, as the reference does: line errors come first.
        overflow |= add_overflow(gross_total, g, &gross_total)
        gross[i] = g
        line_discount[i] = d
        # Bounded by the gross total, but only known to fit once that is checked: no wrapping meanwhile.
        overflow |= add_overflow(line_discount_total, d, &line_discount_total)
    # Every other sum (discounts, net, points' money, money due) is bounded by the gross total.
    if overflow:
        raise _overflow("lines")

    cdef u128* w = _alloc_wide(n)
    cdef u128* rem = w + n
    cdef u128* sel = w + 2 * n
    cdef int64_t after_total = gross_total - line_discount_total
    cdef int64_t order_discount_total = 0 if instead else muldiv(after_total, disc, BPS)
    cdef int64_t net_total = 0, caps_total = 0, cap, order_cap, points_max, applied
    cdef int64_t money_due_total = 0, base, cashback
    cdef u128 earn_whole = 0
    try:
        for i in range(n):
            w[i] = <u128>(gross[i] - line_discount[i])
        _largest_remainder(order_discount_total, w, <u128>after_total, n, order_discount, rem, sel)

        for i in range(n):
            net[i] = gross[i] - line_discount[i] - order_discount[i]
            net_total += net[i]
            if instead and line_discount[i]:
                cap = 0
            else:
                cap = muldiv(net[i], share[cat[i]], BPS) // pv
            w[i] = <u128>cap
            caps_total += cap
        order_cap = muldiv(net_total, order_share, BPS) // pv
        points_max = min(available, order_cap, caps_total)
        applied = min(requested, points_max)
        _largest_remainder(applied, w, <u128>caps_total, n, points, rem, sel)

        for i in range(n):
            points_money[i] = points[i] * pv
            money_due[i] = net[i] - points_money[i]
            money_due_total += money_due[i]
            base = money_due[i] if discounted_earn or not line_discount[i] else 0
            w[i] = <u128>base * <u128>cash[cat[i]]
            earn_whole += w[i]
        res.earned_total = <int64_t>udiv(earn_whole, <u128>BPS * <u128>pv)
        _largest_remainder(res.earned_total, w, earn_whole, n, earned, rem, sel)
    finally:
        free(w)

    res.gross_total = gross_total
    res.line_discount_total = line_discount_total
    res.order_discount_total = order_discount_total
    res.net_total = net_total
    res.points_max = points_max
    res.points_applied = applied
    res.points_money_total = applied * pv
    res.money_due_total = money_due_total
    return res


cdef Py_ssize_t _check_lots(const int64_t* remaining, Py_ssize_t n, Py_ssize_t n1, Py_ssize_t n2, Py_ssize_t n3) except -1:
    """Parallel lot arrays must have one length; remaining is never negative. Returns that length."""
    cdef Py_ssize_t i
    if n1 != n or n2 != n or n3 != n:
        raise InvalidArgument("value_out_of_range", "lot arrays must have the same length", field="lots")
    for i in range(n):
        if remaining[i] < 0:
            raise InvalidArgument("value_out_of_range", "a lot's remaining must not be negative", field=f"lots[{i}].remaining")
    return n


cdef int _by_burn_order(const void* a, const void* b) noexcept nogil:
    """(expires_at, activates_at, lot_id, input position) ascending: the reference's stable sort."""
    cdef const Lot* x = <const Lot*>a
    cdef const Lot* y = <const Lot*>b
    if x.expires != y.expires:
        return -1 if x.expires < y.expires else 1
    if x.activates != y.activates:
        return -1 if x.activates < y.activates else 1
    if x.lot_id != y.lot_id:
        return -1 if x.lot_id < y.lot_id else 1
    return -1 if x.pos < y.pos else (1 if x.pos > y.pos else 0)


cdef Lot* _alloc_lots(Py_ssize_t n) except NULL:
    """Room for ``n`` lots (at least one, so that no lots is not an allocation failure)."""
    cdef Lot* lots = <Lot*>malloc((n + 1) * sizeof(Lot))
    if lots == NULL:
        raise MemoryError()
    return lots


cdef void _sort_lots(Lot* lots, Py_ssize_t m) noexcept nogil:
    """Sort in burn order, skipping the sort when the lots already are in it.

    Lots come from the store in id order, which is earning order, and so mostly already
    in expiry order: one pass to see that is far cheaper than a sort.
    """
    cdef Py_ssize_t i
    for i in range(1, m):
        if _by_burn_order(&lots[i - 1], &lots[i]) > 0:
            qsort(lots, m, sizeof(Lot), _by_burn_order)
            return


cdef Py_ssize_t _usable(const int64_t* ids, const int64_t* rem, const int64_t* act, const int64_t* exp, Py_ssize_t n,
                        int64_t now, Py_ssize_t skip, Lot* lots, int64_t* total, bint* overflow) noexcept nogil:
    """Collect usable lots (active now, remaining > 0), except ``skip``, sorted in burn order.

    ``lots`` has room for every lot. Returns how many are usable; ``total`` gets their sum
    and ``overflow`` whether that sum left int64.
    """
    cdef Py_ssize_t i, m = 0, never = 0
    cdef Lot* lot
    total[0] = 0
    overflow[0] = False
    for i in range(n):
        if rem[i] > 0 and act[i] <= now < exp[i] and i != skip:
            # Never-expiring lots sort after all others, and would break every run of the rest:
            # they fill the buffer from its end, so each group can be checked for order alone.
            if exp[i] == INT64_MAX:
                never += 1
                lot = &lots[n - never]
            else:
                lot = &lots[m]
                m += 1
            lot.expires = exp[i]
            lot.activates = act[i]
            lot.lot_id = ids[i]
            lot.remaining = rem[i]
            lot.pos = i
            overflow[0] |= add_overflow(total[0], rem[i], total)
    _sort_lots(lots, m)
    # The never-expiring group was written backwards: reverse it, then put it after the others.
    for i in range(never // 2):
        lots[n - never + i], lots[n - 1 - i] = lots[n - 1 - i], lots[n - never + i]
    memmove(&lots[m], &lots[n - never], never * sizeof(Lot))
    _sort_lots(&lots[m], never)
    return m + never


cdef list _take(const Lot* lots, Py_ssize_t m, int64_t* amount):
    """Take up to ``amount`` from ``lots`` in order; ``amount`` is left with what could not be taken."""
    cdef list allocations = []
    cdef Py_ssize_t i
    cdef int64_t taken
    for i in range(m):
        if amount[0] == 0:
            break
        taken = min(lots[i].remaining, amount[0])
        allocations.append((lots[i].lot_id, taken))
        amount[0] -= taken
    return allocations


def draw_fifo(lot_ids, remaining, activates_at, expires_at, amount, now):
    """Spend or hold ``amount`` points from the lots that expire first: ``[(lot_id, taken)]`` in draw order.

    Usable lots are those with ``activates_at <= now < expires_at`` and ``remaining > 0``,
    drawn in ``(expires_at, activates_at, lot_id)`` order, then input order. Whole points
    only, so no rounding. Refuses with ``points_must_not_exceed_balance`` (detail
    ``available``) when the usable lots hold less than ``amount``.
    """
    cdef int64_t want = _scalar(amount, "amount", 0, INT64_MAX, True)
    cdef int64_t t = _scalar(now, "now", INT64_MIN, INT64_MAX, False)
    cdef _Int64Arrays arrays = _Int64Arrays.__new__(_Int64Arrays)
    cdef Py_ssize_t nids, nrem, nact, nexp
    cdef const int64_t* ids = arrays.borrow(lot_ids, "lot_ids", &nids)
    cdef const int64_t* rem = arrays.borrow(remaining, "remaining", &nrem)
    cdef const int64_t* act = arrays.borrow(activates_at, "activates_at", &nact)
    cdef const int64_t* exp = arrays.borrow(expires_at, "expires_at", &nexp)
    cdef Py_ssize_t m, n = _check_lots(rem, nrem, nids, nact, nexp)
    cdef int64_t available
    cdef bint overflow
    cdef Lot* lots = _alloc_lots(n)
    try:
        m = _usable(ids, rem, act, exp, n, t, -1, lots, &available, &overflow)
        if overflow:
            raise _overflow("lots")
        if want == 0:
            return []
        if available < want:
            raise FailedPrecondition(
                "points_must_not_exceed_balance", f"{want} points asked, {available} usable", available=available
            )
        return _take(lots, m, &want)
    finally:
        free(lots)


def clawback(lot_ids, remaining, activates_at, expires_at, amount, now, preferred_lot_id):
    """Take back ``amount`` points for a refund: ``([(lot_id, taken)], shortfall)``.

    First from the preferred lot (the first lot with that id, whatever its activation, if it
    is not expired, ``now < expires_at``, and has points left), then from usable lots in
    :func:`draw_fifo` order. Never refuses for lack of points: what could not be taken is
    the shortfall. Whole points only, so no rounding.
    """
    cdef int64_t want = _scalar(amount, "amount", 0, INT64_MAX, True)
    cdef int64_t t = _scalar(now, "now", INT64_MIN, INT64_MAX, False)
    cdef int64_t preferred_id = _scalar(preferred_lot_id, "preferred_lot_id", INT64_MIN, INT64_MAX, False)
    cdef _Int64Arrays arrays = _Int64Arrays.__new__(_Int64Arrays)
    cdef Py_ssize_t nids, nrem, nact, nexp
    cdef const int64_t* ids = arrays.borrow(lot_ids, "lot_ids", &nids)
    cdef const int64_t* rem = arrays.borrow(remaining, "remaining", &nrem)
    cdef const int64_t* act = arrays.borrow(activates_at, "activates_at", &nact)
    cdef const int64_t* exp = arrays.borrow(expires_at, "expires_at", &nexp)
    cdef Py_ssize_t i, m, preferred = -1, n = _check_lots(rem, nrem, nids, nact, nexp)
    cdef int64_t taken, usable_total
    cdef bint overflow
    if want == 0:
        return [], 0
    cdef list allocations = []
    for i in range(n):
        if ids[i] == preferred_id:
            preferred = i
            break
    if preferred >= 0 and rem[preferred] > 0 and t < exp[preferred]:
        taken = min(rem[preferred], want)
        allocations.append((preferred_id, taken))
        want -= taken
    cdef Lot* lots = _alloc_lots(n)
    try:
        # Takes stop at `want`, so the usable total and its overflow do not matter here.
        m = _usable(ids, rem, act, exp, n, t, preferred, lots, &usable_total, &overflow)
        allocations.extend(_take(lots, m, &want))
    finally:
        free(lots)
    return allocations, want


def expired_lots(lot_ids, remaining, expires_at, as_of):
    """Lots to burn out at ``as_of``: ``expires_at <= as_of`` with points left, as ``[(lot_id, remaining)]``.

    Ordered by ``(expires_at, lot_id)``, then input order. Whole lots, so no rounding.
    """
    cdef int64_t t = _scalar(as_of, "as_of", INT64_MIN, INT64_MAX, False)
    cdef _Int64Arrays arrays = _Int64Arrays.__new__(_Int64Arrays)
    cdef Py_ssize_t nids, nrem, nexp
    cdef const int64_t* ids = arrays.borrow(lot_ids, "lot_ids", &nids)
    cdef const int64_t* rem = arrays.borrow(remaining, "remaining", &nrem)
    cdef const int64_t* exp = arrays.borrow(expires_at, "expires_at", &nexp)
    cdef Py_ssize_t i, m = 0, n = _check_lots(rem, nrem, nids, nexp, nexp)
    cdef list due = []
    cdef Lot* lots = _alloc_lots(n)
    try:
        for i in range(n):
            if rem[i] > 0 and exp[i] <= t:
                lots[m].expires = exp[i]
                lots[m].activates = 0  # not part of this order
                lots[m].lot_id = ids[i]
                lots[m].remaining = rem[i]
                lots[m].pos = i
                m += 1
        _sort_lots(lots, m)
        for i in range(m):
            due.append((lots[i].lot_id, lots[i].remaining))
    finally:
        free(lots)
    return due


def lot_summary(remaining, activates_at, expires_at, now, window_end):
    """The balance as the member card shows it: ``(active, pending, burning)`` points.

    ``active``: lots with ``activates_at <= now < expires_at``; ``pending``: lots with
    ``activates_at > now`` and ``expires_at > now``; ``burning``: active or pending lots with
    ``expires_at <= window_end``. Sums of whole points, so no rounding.
    """
    cdef int64_t t = _scalar(now, "now", INT64_MIN, INT64_MAX, False)
    cdef int64_t end = _scalar(window_end, "window_end", INT64_MIN, INT64_MAX, False)
    cdef _Int64Arrays arrays = _Int64Arrays.__new__(_Int64Arrays)
    cdef Py_ssize_t nrem, nact, nexp
    cdef const int64_t* rem = arrays.borrow(remaining, "remaining", &nrem)
    cdef const int64_t* act = arrays.borrow(activates_at, "activates_at", &nact)
    cdef const int64_t* exp = arrays.borrow(expires_at, "expires_at", &nexp)
    cdef Py_ssize_t i, n = _check_lots(rem, nrem, nact, nexp, nexp)
    cdef int64_t active = 0, pending = 0, burning = 0
    cdef bint overflow = False
    for i in range(n):
        if exp[i] <= t:
            continue
        if act[i] <= t:
            overflow |= add_overflow(active, rem[i], &active)
        else:
            overflow |= add_overflow(pending, rem[i], &pending)
        if exp[i] <= end:
            overflow |= add_overflow(burning, rem[i], &burning)
    if overflow:
        raise _overflow("lots")
    return active, pending, burning


def burn_forecast(remaining, activates_at, expires_at, now, window_end):
    """The detail of ``burning`` in :func:`lot_summary`: ``[(expires_at, points)]`` by ascending expiry.

    Lots with points left that are not expired at ``now`` and expire by ``window_end``,
    summed per expiry time. Whole points, so no rounding.
    """
    cdef int64_t t = _scalar(now, "now", INT64_MIN, INT64_MAX, False)
    cdef int64_t end = _scalar(window_end, "window_end", INT64_MIN, INT64_MAX, False)
    cdef _Int64Arrays arrays = _Int64Arrays.__new__(_Int64Arrays)
    cdef Py_ssize_t nrem, nact, nexp
    cdef const int64_t* rem = arrays.borrow(remaining, "remaining", &nrem)
    cdef const int64_t* act = arrays.borrow(activates_at, "activates_at", &nact)
    cdef const int64_t* exp = arrays.borrow(expires_at, "expires_at", &nexp)
    cdef Py_ssize_t i, m = 0, n = _check_lots(rem, nrem, nact, nexp, nexp)
    cdef int64_t total = 0, group
    cdef bint overflow = False
    cdef list forecast = []
    cdef Lot* lots = _alloc_lots(n)
    try:
        for i in range(n):
            if rem[i] > 0 and t < exp[i] <= end:
                lots[m].expires = exp[i]
                lots[m].activates = 0  # grouped by expiry only
                lots[m].lot_id = 0
                lots[m].remaining = rem[i]
                lots[m].pos = i
                overflow |= add_overflow(total, rem[i], &total)
                m += 1
        if overflow:
            raise _overflow("lots")
        _sort_lots(lots, m)
        i = 0
        while i < m:
            group = 0
            t = lots[i].expires
            while i < m and lots[i].expires == t:
                group += lots[i].remaining
                i += 1
            forecast.append((t, group))
    finally:
        free(lots)
    return forecast
