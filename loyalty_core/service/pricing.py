"""Pricing a basket for a member: the programme's and the member's rates into calc.price_basket, and back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from loyalty_core import calc, certificates, membership
from loyalty_core.bounds import INT64_MAX, MAX_AMOUNT, MAX_QUANTITY, at_most
from loyalty_core.certificates import Certificate
from loyalty_core.errors import FailedPrecondition, InvalidArgument, NotFound
from loyalty_core.levels import Level
from loyalty_core.model import (
    BasketLine, CategoryRule, LinePricing, Member, Pricing, PricingTerms, Programme, Quote, Quoted,
)
from loyalty_core.service.checks import MAX_ID, MAX_LINES, member_in_programme, text_arg
from loyalty_core.service.lots import available_points, int64s
from loyalty_core.store.ledger import Lots


def check_basket(quote: Quote) -> tuple[BasketLine, ...]:
    """The basket's shape and the bounds on its amounts (loyalty_core.bounds: quantities, prices,
    discounts, line and basket totals, points asked); the rest of each number's domain is calc's to
    check. A line without an id gets its 1-based position."""
    if not quote.lines:
        raise InvalidArgument("basket_must_not_be_empty", "the basket needs at least one line", field="lines")
    if len(quote.lines) > MAX_LINES:
        raise InvalidArgument("too_many_items", f"a basket has at most {MAX_LINES} lines", field="lines")
    lines = []
    seen = set()
    gross = 0
    for i, line in enumerate(quote.lines):
        line_id = text_arg(line.line_id, f"lines[{i}].line_id", max_len=MAX_ID) or str(i + 1)
        text_arg(line.sku, f"lines[{i}].sku", max_len=MAX_ID)
        text_arg(line.category, f"lines[{i}].category", max_len=MAX_ID)
        if line_id in seen:
            raise InvalidArgument("value_out_of_range", f"line_id {line_id!r} appears twice", field=f"lines[{i}].line_id")
        seen.add(line_id)
        at_most(line.quantity, MAX_QUANTITY, f"lines[{i}].quantity")
        at_most(line.unit_price_minor, MAX_AMOUNT, f"lines[{i}].unit_price_minor")
        at_most(line.line_discount_minor, MAX_AMOUNT, f"lines[{i}].line_discount_minor")
        at_most(line.quantity * line.unit_price_minor, MAX_AMOUNT, f"lines[{i}]")
        gross += line.quantity * line.unit_price_minor
        lines.append(line if line_id == line.line_id else dataclasses.replace(line, line_id=line_id))
    at_most(gross, MAX_AMOUNT, "lines")
    if quote.requested_points < 0:
        raise InvalidArgument("value_out_of_range", "requested_points must not be negative", field="requested_points")
    at_most(quote.requested_points, MAX_AMOUNT, "requested_points")
    check_certificate_codes(quote.certificate_codes)
    return tuple(lines)


def check_certificate_codes(codes: Sequence[str]) -> list[bytes]:
    """The presented codes' hashes: at most ``PRESENTED_MAX``, each given once (the same code in
    another form counts as the same)."""
    if len(codes) > certificates.PRESENTED_MAX:
        raise InvalidArgument("too_many_items", f"at most {certificates.PRESENTED_MAX} certificates per order",
                              field="certificate_codes")
    hashes: list[bytes] = []
    for i, code in enumerate(codes):
        text_arg(code, f"certificate_codes[{i}]", max_len=certificates.MAX_CODE_TEXT, required=True)
        digest = certificates.code_hash(code)
        if digest in hashes:
            raise InvalidArgument("value_out_of_range", f"certificate_codes[{i}] was presented before",
                                  field=f"certificate_codes[{i}]")
        hashes.append(digest)
    return hashes


def check_programme_running(programme: Programme, now: int) -> None:
    """The programme is enabled and ``now`` is within its window (start included, end excluded)."""
    if not programme.enabled:
        raise FailedPrecondition("programme_disabled", "the programme is disabled")
    if (programme.starts_at is not None and now < programme.starts_at) or (
        programme.ends_at is not None and now >= programme.ends_at
    ):
        raise FailedPrecondition("programme_not_active_now", "the programme does not apply at this time")


def check_programme_applies(programme: Programme, quote: Quote, now: int) -> None:
    """The programme is on, now, in this store and channel, in this currency."""
    if quote.currency_code and quote.currency_code != programme.currency_code:
        raise InvalidArgument(
            "currency_mismatch", f"the programme's currency is {programme.currency_code}, not {quote.currency_code}",
            field="currency_code",
        )
    check_programme_running(programme, now)
    if programme.store_ids and quote.store_id not in programme.store_ids:
        raise FailedPrecondition("store_not_in_programme", f"store {quote.store_id!r} is not in the programme")
    if programme.channels and quote.channel not in programme.channels:
        raise FailedPrecondition("channel_not_in_programme", f"channel {quote.channel!r} is not in the programme")


def category_rates(programme: Programme, rules: Mapping[str, CategoryRule], rights: membership.Privileges,
                   category: str) -> tuple[int, int]:
    """The cashback and the pay share of ``category`` for this member: the level's rule for it, else
    the level's rate, else the programme's (``rules``: the programme's category rules by name)."""
    rule = rules.get(category)
    return (rights.cashback_for(category, rule.cashback_bps if rule else programme.default_cashback_bps),
            rights.pay_share_for(category, rule.pay_share_bps if rule else programme.default_pay_share_bps))


def order_pay_share(programme: Programme, rights: membership.Privileges) -> int:
    """The share of an order points may pay: the level's, else the programme's."""
    return rights.pay_share_elsewhere(programme.order_pay_share_bps)


def terms_for(programme: Programme, lines: Sequence[BasketLine], rights: membership.Privileges,
              paying: bool) -> PricingTerms:
    """The rates this member's basket is priced with: per category, the level's or the programme's."""
    categories = tuple(dict.fromkeys(line.category for line in lines))
    rules = {r.category: r for r in programme.category_rules}
    rates = [category_rates(programme, rules, rights, c) for c in categories]
    return PricingTerms(
        discount_bps=rights.discount_bps,
        discount_source=rights.discount_source,
        categories=categories,
        cashback_bps=tuple(cashback for cashback, _ in rates),
        pay_share_bps=tuple(share for _, share in rates),
        order_pay_share_bps=order_pay_share(programme, rights),
        point_value_minor=programme.point_value_minor,
        discounted_items_earn=programme.discounted_items_earn,
        points_instead_of_discounts=programme.compatibility == "points_instead_of_discounts" and paying,
    )


def price(
    lines: Sequence[BasketLine], terms: PricingTerms, available: int, requested: int, currency: str, member_id: str
) -> Pricing:
    """calc.price_basket over the lines with ``terms``; every figure comes from calc."""
    index = {c: i for i, c in enumerate(terms.categories)}
    p = calc.price_basket(
        int64s([index[line.category] for line in lines]),
        int64s([line.quantity for line in lines]),
        int64s([line.unit_price_minor for line in lines]),
        int64s([line.line_discount_minor for line in lines]),
        discount_bps=terms.discount_bps,
        cashback_bps=int64s(terms.cashback_bps),
        category_pay_share_bps=int64s(terms.pay_share_bps),
        order_pay_share_bps=terms.order_pay_share_bps,
        point_value_minor=terms.point_value_minor,
        available_points=available,
        requested_points=requested,
        discounted_items_earn=terms.discounted_items_earn,
        points_instead_of_discounts=terms.points_instead_of_discounts,
    )
    priced = tuple(
        LinePricing(
            line_id=line.line_id, sku=line.sku, category=line.category, quantity=line.quantity,
            unit_price_minor=line.unit_price_minor, gross_minor=p.gross[i], line_discount_minor=p.line_discount[i],
            order_discount_minor=p.order_discount[i], net_minor=p.net[i], points=p.points[i],
            points_money_minor=p.points_money[i], money_due_minor=p.money_due[i], earned_points=p.earned[i],
        )
        for i, line in enumerate(lines)
    )
    return Pricing(
        currency_code=currency, member_id=member_id, lines=priced, gross_minor=p.gross_total,
        line_discount_minor=p.line_discount_total, order_discount_minor=p.order_discount_total,
        net_minor=p.net_total, points_max=p.points_max, points_applied=p.points_applied,
        points_money_minor=p.points_money_total, money_due_minor=p.money_due_total, earned_points=p.earned_total,
        terms=terms,
    )


def presented_certificates(shown: Mapping[int, Certificate], quote: Quote, now: int) -> list[Certificate]:
    """The presented certificates (``shown``: those found, by the code's position), each the member's
    and usable now; the first that is not is refused by its position (an unknown code is told as not
    found, whatever made it so)."""
    for i in range(len(quote.certificate_codes)):
        if i not in shown:
            raise NotFound("certificate_not_found", f"certificate_codes[{i}] is no certificate of this member",
                           field=f"certificate_codes[{i}]")
        certificates.check_usable(shown[i], now, i)
    return [shown[i] for i in range(len(quote.certificate_codes))]


def _priced(lines: Sequence[BasketLine], terms: PricingTerms, available: int, requested: int,
            presented: Sequence[Certificate], currency: str, member_id: str) -> Pricing:
    """:func:`price` with the presented certificates drawn first, earliest expiry first: they and the
    points asked share what points may pay (the order's and the categories' caps)."""
    on_certificates = min(sum(c.remaining_points for c in presented), MAX_AMOUNT)
    total = price(lines, terms, min(available, INT64_MAX - on_certificates) + on_certificates,
                  requested + on_certificates, currency, member_id)
    paid = certificates.pay(list(presented), total.points_applied)
    from_certificates = sum(p.points for p in paid)
    return dataclasses.replace(total, points_applied=total.points_applied - from_certificates,
                               certificate_points=from_certificates, certificates=paid)


def quote_for(
    programme: Programme, member: Member, levels: Sequence[Level], lots: Lots, quote: Quote, now: int,
    event_discount_bps: int = 0, lots_at: int | None = None, shown: Mapping[int, Certificate] | None = None,
) -> tuple[Pricing, membership.Privileges, int]:
    """The basket priced for the member now (what a Quote answers and a Checkout holds), with the
    member's privileges and the points available to pay, which say why fewer points apply.
    ``levels`` are the programme's (``store.membership.send_levels_of``); ``event_discount_bps`` the
    member's largest usable event discount (``store.event_bonus.BEST_DISCOUNT``); ``lots_at`` when
    the lots pay, when not ``now`` (a posted sale is priced at its time, paid from the lots now);
    ``shown`` the member's certificates whose codes the quote presents, by the code's position
    (``store.certificates.send_presented``): each must be usable, and pays only where points may."""
    lines = check_basket(quote)
    check_programme_applies(programme, quote, now)
    member_in_programme(member)
    presented = presented_certificates(shown or {}, quote, now)
    rights = membership.privileges(member, programme, levels, now, event_discount_bps)
    available = available_points(lots, now if lots_at is None else lots_at) if rights.may_pay_with_points else 0
    presented = presented if rights.may_pay_with_points else ()
    terms = terms_for(programme, lines, rights, quote.requested_points > 0 or bool(presented))
    pricing = _priced(lines, terms, available, quote.requested_points, presented, programme.currency_code,
                      member.member_id)
    if terms.points_instead_of_discounts and not (pricing.points_applied or pricing.certificate_points):
        # "Points instead of discounts" is a choice made by the points that pay, not those asked:
        # when none can pay, the discounts apply.
        terms = dataclasses.replace(terms, points_instead_of_discounts=False)
        pricing = _priced(lines, terms, available, quote.requested_points, presented, programme.currency_code,
                          member.member_id)
    return pricing, rights, available


def member_blocks_points(member: Member, rights: membership.Privileges) -> str:
    """Why the member cannot pay with points at all ("" when they may)."""
    if member.status == membership.DEACTIVATED:
        return "member_deactivated"
    return "" if rights.may_pay_with_points else "member_not_confirmed"


def quoted(pricing: Pricing, member: Member, rights: membership.Privileges, available: int) -> Quoted:
    """The quote's answer: when no point can pay, why (model.POINTS_BLOCKED), read from what calc was
    given, not from its arithmetic, so the hot path does no more work."""
    if pricing.points_max > 0:
        return Quoted(pricing, "")
    terms = pricing.terms
    blocked = (member_blocks_points(member, rights)
               or ("no_points_available" if available == 0 else "")
               or ("order_pay_share_zero" if terms.order_pay_share_bps == 0 else "")
               or ("category_pay_share_zero" if not any(terms.pay_share_bps) else "")
               or "nothing_payable")
    return Quoted(pricing, blocked)


def reprice(pricing: Pricing, points: int, programme: Programme, rights: membership.Privileges) -> Pricing:
    """The checkout's basket with ``points`` paying (a capture), charged on the checkout's terms
    (discount, what points may pay, the choice between points and discounts: what the till was
    told), earning on the money part at the rates the member's privileges give now (a member
    deactivated since the checkout earns nothing)."""
    lines = [BasketLine(x.line_id, x.sku, x.category, x.quantity, x.unit_price_minor, x.line_discount_minor)
             for x in pricing.lines]
    earning = terms_for(programme, lines, rights, paying=False).cashback_bps
    terms = dataclasses.replace(pricing.terms, cashback_bps=earning)
    # The certificates pay what they paid at checkout (they were held for it), beside the points.
    paying = points + pricing.certificate_points
    priced = price(lines, terms, paying, paying, pricing.currency_code, pricing.member_id)
    return dataclasses.replace(priced, points_applied=points, certificate_points=pricing.certificate_points,
                               certificates=pricing.certificates)
