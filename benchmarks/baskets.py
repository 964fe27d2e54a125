"""Realistic baskets (1 to 30 lines, most small) and the benchmark programme's rules, seeded and repeatable."""

from __future__ import annotations

import random
from dataclasses import dataclass

LINES_MIN, LINES_MAX = 1, 30
# Till baskets are mostly small with a long tail: a geometric-like count with mean about 8,
# clipped to 1..30 (uniform 1..30 would make every basket a weekly shop).
MEAN_LINES = 8.0
CATEGORIES = ("grocery", "bar", "tickets", "household", "fresh")
# SKU catalogue size: enough that lines rarely repeat within a basket.
SKUS = 5000

# The benchmark programme: earning and paying rules from the seeds (bar vs tickets), no
# delayed activation so earned points can pay at once, a welcome bonus so members can pay.
PROGRAMME_RULES = {
    "currency_code": "USD",
    "point_value_minor": 1,
    "order_pay_share_bps": 5000,
    "default_cashback_bps": 300,
    "default_pay_share_bps": 5000,
    "category_rules": [
        {"category": "bar", "cashback_bps": 500, "pay_share_bps": 10000},
        {"category": "tickets", "cashback_bps": 100, "pay_share_bps": 1000},
    ],
    "welcome_bonus_points": 5000,
    "stores": ["store-1", "store-2", "store-3"],
    "channels": ["pos", "web"],
}


@dataclass(frozen=True, slots=True)
class Line:
    line_id: str
    sku: str
    category: str
    quantity: int
    unit_price_minor: int
    line_discount_minor: int


def line_count(rng: random.Random) -> int:
    n = 1 + int(rng.expovariate(1 / (MEAN_LINES - 1)))
    return min(LINES_MAX, max(LINES_MIN, n))


def basket(rng: random.Random) -> list[Line]:
    """One basket: 1..30 lines; quantities 1..3 (sometimes 6), prices 0.50..50.00, 10% lines discounted."""
    lines = []
    for i in range(line_count(rng)):
        quantity = rng.choice((1, 1, 1, 1, 2, 2, 3, 6))
        price = rng.randrange(50, 5000)
        discount = rng.randrange(0, quantity * price // 5 + 1) if rng.random() < 0.10 else 0
        sku_no = rng.randrange(SKUS)
        lines.append(Line(str(i + 1), f"SKU-{sku_no:06d}", CATEGORIES[sku_no % len(CATEGORIES)], quantity, price,
                          discount))
    return lines


def phone(member_no: int) -> str:
    """The seeded members' phones, E.164, one per member number."""
    return f"+1555{member_no:07d}"


def to_proto(pb, lines: list[Line]) -> list:
    """The basket as loyalty.v1 BasketLine messages (``pb`` is checkout_pb2)."""
    return [pb.BasketLine(line_id=x.line_id, sku=x.sku, category=x.category, quantity=x.quantity,
                          unit_price_minor=x.unit_price_minor, line_discount_minor=x.line_discount_minor)
            for x in lines]


def message_sizes(samples: int = 500, seed: int = 7) -> tuple[int, int]:
    """Mean serialized size of a QuoteRequest and of its QuoteResponse for these baskets, so the
    ceiling servers move messages of the same size. Falls back to an estimate when the loyalty.v1
    stubs are not importable (the ceilings alone need nothing of loyalty-core)."""
    rng = random.Random(seed)
    try:
        from loyalty.v1 import checkout_pb2 as pb
        from loyalty.v1 import common_pb2
    except ImportError:
        mean_lines = sum(len(basket(rng)) for _ in range(samples)) / samples
        return int(90 + 42 * mean_lines), int(120 + 75 * mean_lines)
    req_total = resp_total = 0
    for _ in range(samples):
        lines = basket(rng)
        req = pb.QuoteRequest(programme_id="6f1c2b1e-0000-4000-8000-000000000000",
                              member=common_pb2.MemberRef(phone=phone(rng.randrange(10000))), store_id="store-1",
                              channel="pos", lines=to_proto(pb, lines), requested_points=0, currency_code="USD")
        priced = []
        for x in lines:
            gross = x.quantity * x.unit_price_minor
            net = gross - x.line_discount_minor
            priced.append(pb.LinePricing(line_id=x.line_id, sku=x.sku, category=x.category, quantity=x.quantity,
                                         gross_minor=gross, line_discount_minor=x.line_discount_minor,
                                         order_discount_minor=net // 20, net_minor=net - net // 20,
                                         points=net // 10, points_money_minor=net // 10,
                                         money_due_minor=net - net // 5, earned_points=net // 33))
        gross = sum(p.gross_minor for p in priced)
        resp = pb.QuoteResponse(pricing=pb.Pricing(
            currency_code="USD", lines=priced, gross_minor=gross, line_discount_minor=gross // 50,
            order_discount_minor=gross // 20, net_minor=gross - gross // 10, points_max=gross // 2,
            points_applied=gross // 10, points_money_minor=gross // 10, money_due_minor=gross - gross // 5,
            earned_points=gross // 33, discount_bps=500, discount_source=pb.DISCOUNT_SOURCE_PERSONAL,
            member_id="6f1c2b1e-0000-4000-8000-000000000001"))
        req_total += req.ByteSize()
        resp_total += resp.ByteSize()
    return req_total // samples, resp_total // samples
