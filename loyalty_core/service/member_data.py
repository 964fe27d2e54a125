"""Edits of a member's data (phone, card, customer group) and finding members by it."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Any

from loyalty_core import cards, custom_fields, levels, membership
from loyalty_core.clock import Clock
from loyalty_core.errors import FailedPrecondition, InvalidArgument
from loyalty_core.model import Member, MemberCard, MemberFilter, Page, WriteContext
from loyalty_core.service import checks
from loyalty_core.service.members import (
    check_card_number, check_phone, found_programme, programme_of, unique_phone_and_card,
)
from loyalty_core.service.membership import COMMENT_MAX, _member_write, _reread
from loyalty_core.store import custom_values
from loyalty_core.store import members as store
from loyalty_core.store import programmes
from loyalty_core.store import membership as membership_store
from loyalty_core.store.db import Database

# The history kind of every edit here (tab participation): details name the field, its old and
# new value ("from", "to"), never a secret. Erasure removes both values (store/privacy.py).
DATA_CHANGED = "data_changed"


@dataclass(frozen=True)
class ChangePhone:
    request_id: str
    programme_id: str
    member_id: str
    phone: str
    comment: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class ChangeCard:
    request_id: str
    programme_id: str
    member_id: str
    card_number: str
    # The plastic card's printed secret; empty for none. Never in a fingerprint (SECRET_FIELDS).
    card_secret: str
    comment: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class ChangeGroup:
    request_id: str
    programme_id: str
    member_id: str
    customer_group: str
    comment: str
    context: WriteContext = field(default_factory=WriteContext)


def _comment(value: str) -> str:
    return checks.text_arg(value, "comment", max_len=COMMENT_MAX, required=True)


async def _changed(conn: Any, member: Member, now: int, req: Any, name: str, old: str, new: str,
                   **more: object) -> None:
    await membership_store.add_event(conn, member.member_id, "participation", DATA_CHANGED, now,
                                     actor=req.context.actor, comment=req.comment,
                                     details={"field": name, "from": old, "to": new, **more})


async def change_phone(db: Database, clock: Clock, req: ChangePhone) -> MemberCard:
    """Give the member a new phone, not confirmed until it is (the status stays: changing it is
    ChangeMemberStatus's); the old one is free for another enrolment at once."""
    check_phone(req.phone)
    _comment(req.comment)

    async def change(conn: Any, member: Member, now: int) -> MemberCard:
        if member.phone != req.phone:
            await unique_phone_and_card(conn, store.set_phone(conn, member.member_id, member.programme_id, req.phone))
            await _changed(conn, member, now, req, "phone", member.phone or "", req.phone)
        return await membership.member_card(conn, await _reread(conn, member), now)

    return await _member_write(db, clock, "ChangeMemberPhone", req, MemberCard, change)


async def change_card(db: Database, clock: Clock, req: ChangeCard) -> MemberCard:
    """Attach a plastic card to the member, or replace theirs: the old number is freed (anyone may
    enrol with it again), its secret and lockout go with it. A card without a secret is refused
    where the programme requires one (it could never be used)."""
    check_card_number(req.card_number)
    checks.text_arg(req.card_secret, "card_secret", max_len=checks.MAX_ID)
    _comment(req.comment)
    # Hashed before the transaction: scrypt takes tens of milliseconds, not to be spent holding the member.
    secret_hash = await cards.hash_secret_async(req.card_secret) if req.card_secret else None

    async def change(conn: Any, member: Member, now: int) -> MemberCard:
        programme = await programme_of(conn, member.programme_id)
        if programme.card_secret_required and secret_hash is None:
            raise FailedPrecondition("card_secret_required", "this programme needs the card's secret code",
                                     field="card_secret")
        # The same number without a secret is no change; with one, it is the card's new secret.
        if member.card_number != req.card_number or secret_hash is not None:
            await unique_phone_and_card(conn, membership_store.set_card(conn, member.member_id, member.programme_id, req.card_number, secret_hash))
            await _changed(conn, member, now, req, "card_number", member.card_number or "", req.card_number,
                           with_secret=secret_hash is not None)
        return await membership.member_card(conn, await _reread(conn, member), now)

    return await _member_write(db, clock, "ChangeMemberCard", req, MemberCard, change)


async def change_group(db: Database, clock: Clock, req: ChangeGroup) -> MemberCard:
    """Move the member to another customer group. The accumulative discount becomes what the new
    group's ranges give the member's purchase total (the high-water mark guards against changes of
    the ranges, not against leaving the group that earned a rate). The level follows the new
    ladder: a level the new group does not see is replaced by the highest one of the new ladder the
    purchases meet; a level still open stays, or rises if the purchases now meet a higher rung."""
    checks.text_arg(req.customer_group, "customer_group", max_len=checks.MAX_ID)
    _comment(req.comment)

    async def change(conn: Any, member: Member, now: int) -> MemberCard:
        if member.customer_group == req.customer_group:
            return await membership.member_card(conn, member, now)
        programme = await programme_of(conn, member.programme_id)
        await store.set_customer_group(conn, member.member_id, req.customer_group)
        await _changed(conn, member, now, req, "customer_group", member.customer_group, req.customer_group)
        # The new group's ranges from nothing kept: the rate they give the total, and the range's floor.
        rate = membership.rate_after_purchase(membership.KeptRate(0, 0), programme.discount_ranges,
                                              req.customer_group, member.purchases_total_minor)
        if rate != membership.kept_rate(member):
            await membership_store.set_totals(conn, member.member_id, member.purchases_total_minor, rate.bps,
                                              rate.from_minor)
            await membership_store.add_event(
                conn, member.member_id, "participation", "discount_recalculated", now, actor=req.context.actor,
                details={"purchases_total_minor": member.purchases_total_minor, "accumulative_discount_bps": rate.bps,
                         "reason": "group_changed"})
        rungs = levels.ladder([s.level for s in await membership_store.levels_of(conn, member.programme_id)],
                              req.customer_group)
        still_open = any(lv.level_id == member.level_id for lv in rungs)
        purchases = await membership.recent_purchases(conn, member.member_id, rungs, now)
        level = levels.level_after_purchase(rungs, member.level_id if still_open else None, purchases, now)
        if level is not None or (member.level_id is not None and not still_open):
            await membership.assign_level(conn, member, level, now, reason="group_changed", actor=req.context.actor,
                                          comment=req.comment)
        return await membership.member_card(conn, await _reread(conn, member), now)

    return await _member_write(db, clock, "ChangeCustomerGroup", req, MemberCard, change)


def _after_member(page_token: str) -> str | None:
    """The member id a ListMembers page token holds (the page's last member), None without one."""
    key = checks.decode_token(page_token, 1)
    if key is None:
        return None
    try:
        return str(uuid.UUID(key[0]))
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument("value_out_of_range", "page_token is not one this server gave",
                              field="page_token") from None


async def find(db: Database, programme_id: str, found: MemberFilter, page_size: int,
               page_token: str) -> Page[MemberCard]:
    """The programme's members matching ``found``, by member id, a page at a time; each with its
    level's name (what the next level still needs is GetMember's, which reads the purchases)."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    checks.text_arg(found.phone, "phone", max_len=checks.MAX_ID)
    checks.text_arg(found.card_number, "card_number", max_len=checks.MAX_ID)
    if found.level_id:
        found = dataclasses.replace(found, level_id=checks.uuid_arg(found.level_id, "level_id"))
    limit = checks.page_size(page_size)
    after = _after_member(page_token)
    async with db.connection() as conn, conn.pipeline():
        programme = await programmes.send_get(conn, programme_id)
        ladder = await membership_store.send_levels_of(conn, programme_id)
        rows = await store.page(conn, programme_id, found, after, limit + 1)
        declared = found_programme(await programme.get()).custom_fields
        if found.custom_field is not None:
            custom_fields.check_wanted(declared, found.custom_field, "custom_field")
        names = {s.level.level_id: s.level.name for s in await ladder.get()}
        values = await custom_values.of_members(conn, [m.member_id for m in rows[:limit]])
    items = tuple(MemberCard(m, names.get(m.level_id or "", ""),
                             custom_fields=custom_fields.shown(declared, values[m.member_id])) for m in rows[:limit])
    return Page(items, checks.encode_token(items[-1].member.member_id) if len(rows) > limit else "")
