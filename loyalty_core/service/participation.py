"""The participation card (GetMember): member, level and its way up, balance, privileges and custom fields."""

from __future__ import annotations

import dataclasses

from loyalty_core import custom_fields, membership
from loyalty_core.clock import Clock
from loyalty_core.levels import US_PER_DAY, longest_period_days
from loyalty_core.model import CardPrivileges, CategoryPrivilege, MemberRef, ParticipationCard, Programme
from loyalty_core.service import checks, rules
from loyalty_core.service.lots import balance_of
from loyalty_core.service.pricing import category_rates, order_pay_share
from loyalty_core.store import ledger
from loyalty_core.store.db import Database


def shown_privileges(programme: Programme, rights: membership.Privileges) -> CardPrivileges:
    """The rates a sale would give the member now, as pricing.terms_for takes them: for every
    category with a rule of its own (the programme's or the level's), and for the others."""
    programme_rules = {r.category: r for r in programme.category_rules}
    named = sorted(set(programme_rules) | set(rights.category_cashback_bps) | set(rights.category_pay_share_bps))
    return CardPrivileges(
        may_pay_with_points=rights.may_pay_with_points, earns=rights.earns, discount_bps=rights.discount_bps,
        discount_source=rights.discount_source, cashback_bps=rights.cashback_elsewhere(programme.default_cashback_bps),
        pay_share_bps=rights.pay_share_elsewhere(programme.default_pay_share_bps),
        order_pay_share_bps=order_pay_share(programme, rights),
        categories=tuple(CategoryPrivilege(c, *category_rates(programme, programme_rules, rights, c)) for c in named),
    )


async def get(db: Database, clock: Clock, programme_id: str, member_id: str) -> ParticipationCard:
    """The whole member card. One round trip with this process's copy of the programme: the member,
    its lots and the purchases the levels look at come in one statement (the programme's whole
    ladder bounds how far back, which reaches at least as far as the member's own levels need), and its
    custom field values."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    member_id = checks.uuid_arg(member_id, "member_id")
    now = clock.now_us()
    async with db.connection() as conn:
        current = await rules.read_any(db, await rules.send(conn, db, programme_id))
        days = longest_period_days(current.levels)
        since = ledger.NO_PURCHASES if not current.levels else now - days * US_PER_DAY if days else None
        account = await ledger.member_lots_and_purchases(
            conn, programme_id, MemberRef(member_id=member_id), now, since, with_custom_values=True)
    member = checks.found_member(account.member, "with this id")
    privileges = membership.privileges(member, current.programme, current.levels, now, account.event_discount_bps)
    card = dataclasses.replace(membership.card_of(member, current.levels, account.purchases, now),
                               custom_fields=custom_fields.shown(current.programme.custom_fields, account.custom_values))
    return ParticipationCard(card, balance_of(member, account.lots, now), shown_privileges(current.programme, privileges))
