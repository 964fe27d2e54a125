"""Member use cases: enrol (with the welcome bonus and custom fields), get, look up at the till, balance, off-board."""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Awaitable
from typing import Any


from loyalty_core import calc, cards, membership, observe
from loyalty_core.clock import Clock
from loyalty_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from loyalty_core.model import (
    US_PER_S, Balance, Enrol, Enrolled, Expiry, Forecast, Member, MemberCard, MemberRef, Offboard, Programme,
)
from loyalty_core.service import checks, custom_fields
from loyalty_core.service.idempotent import run_write
from loyalty_core.service.lots import balance_of, burn_forecast, expiry_end
from loyalty_core.service.pricing import check_programme_running
from loyalty_core.store import certificates, ledger, members as store, orders, programmes
from loyalty_core.store import membership as history
from loyalty_core.store.convert import MAX_US
from loyalty_core.store.db import UNIQUE_VIOLATIONS, Database, savepoint, violated_constraint
from loyalty_core.store.ledger import NEW_LOT, Entry, NewLot

PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
CARD = re.compile(r"^[0-9A-Za-z]{4,32}$")
# The history's actor of a lockout: the server itself (the guesses may come from any caller).
LOCKOUT_ACTOR = "card-lockout"


def check_phone(phone: str) -> str:
    if not PHONE.match(phone):
        raise InvalidArgument("value_out_of_range", "phone must be in E.164 form, e.g. +15551234567", field="phone")
    return phone


def check_card_number(card_number: str) -> str:
    if not CARD.match(card_number):
        raise InvalidArgument("value_out_of_range", "card_number must be 4..32 letters or digits", field="card_number")
    return card_number


def check_ref(ref: MemberRef) -> MemberRef:
    """Exactly one identifier, well formed."""
    given = [f for f in ("member_id", "phone", "card_number") if getattr(ref, f)]
    if len(given) != 1:
        raise InvalidArgument("field_required", "name the member by exactly one of member_id, phone, card_number",
                              field="member")
    if ref.member_id:
        return MemberRef(member_id=checks.uuid_arg(ref.member_id, "member.member_id"))
    checks.text_arg(ref.phone or ref.card_number, "member", max_len=checks.MAX_ID)
    checks.text_arg(ref.card_secret, "member.card_secret", max_len=checks.MAX_ID)
    return ref


def found_programme(programme: Programme | None) -> Programme:
    if programme is None:
        raise NotFound("programme_not_found", "no such programme")
    return programme


async def programme_of(conn: Any, programme_id: str) -> Programme:
    return found_programme(await programmes.get(conn, programme_id))


async def verify_card(db: Database, clock: Clock, programme_id: str, ref: MemberRef) -> str | None:
    """The till's card rule, checked before any transaction takes the member's row lock (scrypt
    takes tens of milliseconds, and a wrong guess must not hold the member meanwhile): when the
    programme requires the secret, it must be given and match; a secret that is given is always
    checked (a wrong one is never ignored). Every attempt is counted before it is checked, so
    attempts in flight together cannot pass the limit; the attempt that reaches
    ``cards.CARD_SECRET_ATTEMPTS`` wrong ones locks the card (``card_locked``) for
    ``cards.CARD_LOCKOUT_S``. Returns the member whose secret matched, None when none was checked
    (the lookup that follows then refuses or finds the member as usual)."""
    if not ref.card_number:
        return None
    async with db.connection() as conn:
        card = await store.card_of(conn, programme_id, ref.card_number)
    if card is None:
        return None
    member_id, stored_hash, required = card
    if not ref.card_secret:
        if required:
            raise FailedPrecondition("card_secret_required", "this programme needs the card's secret code")
        return None
    now = clock.now_us()
    async with db.connection() as conn:
        attempt, locked_until = await store.count_card_attempt(
            conn, member_id, now, cards.CARD_SECRET_ATTEMPTS, cards.CARD_LOCKOUT_S * US_PER_S)
    if attempt > cards.CARD_SECRET_ATTEMPTS:
        raise FailedPrecondition("card_locked", "this card is locked after too many wrong secret codes",
                                 locked_until_us=locked_until)
    if stored_hash is not None and await cards.secret_matches_async(ref.card_secret, stored_hash):
        async with db.connection() as conn:
            await store.card_unlocked(conn, member_id, now)
        return member_id
    if attempt == cards.CARD_SECRET_ATTEMPTS:
        async with db.connection() as conn:
            await history.add_event(conn, member_id, "participation", "card_locked", now, actor=LOCKOUT_ACTOR,
                                    details={"wrong_secrets": attempt, "locked_until_us": locked_until})
        observe.card_locked()
    raise FailedPrecondition("card_secret_wrong", "the card's secret code does not match")


async def identify(conn: Any, programme: Programme, ref: MemberRef, verified: str | None, *,
                   lock: bool = False) -> Member:
    """The member ``ref`` names (checked by ``check_ref``, its card by ``verify_card``);
    ``lock`` takes the member's row lock."""
    found = await store.find(conn, programme.programme_id, ref, lock=lock)
    return identified(programme, ref, found, verified)


def identified(programme: Programme, ref: MemberRef, member: Member | None, verified: str | None) -> Member:
    """``member`` as found for ``ref``; a card lookup that needs the secret must name the member
    ``verify_card`` checked it for (the card may have moved since)."""
    member = checks.found_member(member, "with this identifier")
    if ref.card_number and (programme.card_secret_required or ref.card_secret) and verified != member.member_id:
        if not ref.card_secret:
            raise FailedPrecondition("card_secret_required", "this programme needs the card's secret code")
        raise FailedPrecondition("card_secret_wrong", "the card's secret code does not match")
    return member


async def unique_phone_and_card(conn: Any, write: Awaitable[None]) -> None:
    """Run ``write`` (of a member's phone or card) in a savepoint, so that a taken one does not
    poison the key's transaction; one another member of the programme holds is ALREADY_EXISTS on
    its field (``phone_taken``, ``card_number_taken``)."""
    try:
        async with savepoint(conn):
            await write
    except UNIQUE_VIOLATIONS as err:
        constraint = violated_constraint(err)
        if constraint is None:
            raise
        rule = store.UNIQUE_RULES.get(constraint, "phone_taken")
        name = rule.removesuffix("_taken")
        raise AlreadyExists(rule, f"another member of the programme has this {name}", field=name) from None


def welcome_bonus_end(programme: Programme, now: int) -> int:
    """When a welcome bonus given at ``now`` expires: as the programme's welcome_bonus_expiry says,
    else welcome_bonus_lifetime_days days, 0 meaning the programme's point lifetime."""
    rule = programme.welcome_bonus_expiry
    if rule is None:
        days = programme.welcome_bonus_lifetime_days
        rule = Expiry("lifetime_days", lifetime_days=days) if days else Expiry()
    return expiry_end(rule, programme.point_lifetime_days, now)


async def enrol(db: Database, clock: Clock, req: Enrol) -> Enrolled:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.programme_id, "programme_id")
    if req.phone:
        check_phone(req.phone)
    if req.card_number and req.generate_card_number:
        raise InvalidArgument("value_out_of_range", "give card_number or generate_card_number, not both",
                              field="card_number")
    if req.card_number:
        check_card_number(req.card_number)
    if not (req.phone or req.card_number or req.generate_card_number):
        raise InvalidArgument("field_required", "enrolment needs a phone or a card number", field="phone")
    checks.text_arg(req.card_secret, "card_secret", max_len=checks.MAX_ID)
    checks.text_arg(req.customer_group, "customer_group", max_len=checks.MAX_ID)
    checks.text_arg(req.context.store_id, "context.store_id", max_len=checks.MAX_ID)
    now = clock.now_us()
    member_id = str(uuid.uuid4())
    card_number = cards.generate_card_number() if req.generate_card_number else req.card_number
    # A card without a secret code gets one; it is shown once, so only the first answer carries it.
    generated = cards.generate_card_secret() if card_number and not req.card_secret else ""
    secret_hash = await cards.hash_secret_async(req.card_secret or generated) if card_number else None
    shown: dict[str, str] = {}

    async def effect(conn: Any) -> tuple[Enrolled, str]:
        programme = await programme_of(conn, programme_id)
        # Seed 001: members join a programme that is running (enabled, within its window).
        check_programme_running(programme, now)
        status = membership.NOT_CONFIRMED if programme.require_confirmation else membership.ACTIVE
        values = custom_fields.enrolment_values(programme, req.custom_fields)
        await unique_phone_and_card(conn, store.insert(conn, member_id, programme_id, req.phone or None,
                                                       card_number or None, secret_hash, status,
                                                       req.customer_group, now, req.context.store_id))
        expires_at = welcome_bonus_end(programme, now)
        # A bonus valid until a date that has passed is no longer given.
        bonus = programme.welcome_bonus_points if expires_at > now else 0
        # The enrolment first, so its event comes before the bonus's in the member's events.
        await history.add_event(conn, member_id, "participation", "enrolled", now, actor=req.context.actor,
                                details={"status": status, "welcome_bonus_points": bonus})
        if bonus:
            await ledger.post(
                conn, member_id, now, req.context, [Entry("welcome", bonus, lots=[(NEW_LOT, bonus)])],
                NewLot("welcome", bonus, now, expires_at),
            )
        member = await store.find(conn, programme_id, MemberRef(member_id=member_id))
        member = await membership.start_on_ladder(conn, member, now, actor=req.context.actor)
        await custom_fields.record(conn, member, {}, values, now, actor=req.context.actor)
        shown["secret"] = generated
        card = await custom_fields.with_values(conn, programme, await membership.member_card(conn, member, now))
        return Enrolled(card, bonus), member_id

    enrolled = await run_write(db, method="EnrolMember", scope=programme_id, request=req, result_type=Enrolled,
                               now=now, effect=effect)
    return dataclasses.replace(enrolled, generated_card_secret=shown.get("secret", ""))


async def get(db: Database, clock: Clock, programme_id: str, member_id: str) -> MemberCard:
    """The member card: the member, the level's name and what the next level still needs."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    member_id = checks.uuid_arg(member_id, "member_id")
    async with db.connection() as conn:
        member = checks.found_member(await store.find(conn, programme_id, MemberRef(member_id=member_id)),
                                     "with this id")
        return await membership.member_card(conn, member, clock.now_us())


async def lookup(db: Database, clock: Clock, programme_id: str, ref: MemberRef) -> tuple[MemberCard, Balance]:
    """The member by any identifier, and the balance now, so a till needs one call."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    ref = check_ref(ref)
    verified = await verify_card(db, clock, programme_id, ref)
    now = clock.now_us()
    async with db.connection() as conn:
        programme = await programme_of(conn, programme_id)
        member = await identify(conn, programme, ref, verified)
        card = await membership.member_card(conn, member, now)
        lots = await ledger.lots(conn, member.member_id)
    return card, balance_of(member, lots, now)


async def balance(db: Database, clock: Clock, programme_id: str, member_id: str) -> Balance:
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    member_id = checks.uuid_arg(member_id, "member_id")
    now = clock.now_us()
    async with db.connection() as conn:
        member = checks.found_member(await store.find(conn, programme_id, MemberRef(member_id=member_id)), "with this id")
        lots = await ledger.lots(conn, member_id)
    return balance_of(member, lots, now)


async def forecast(db: Database, clock: Clock, programme_id: str, member_id: str, as_of: int | None,
                   end: int | None, page_size: int, page_token: str) -> Forecast:
    """Every burn-out after ``as_of`` (default now) up to ``end`` (default: all), a page at a time,
    and the points awaiting activation at ``as_of``, from the lots as they are now."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    member_id = checks.uuid_arg(member_id, "member_id")
    now = clock.now_us()
    as_of = now if as_of is None else as_of
    if not now <= as_of <= MAX_US:
        raise InvalidArgument("value_out_of_range", "as_of_time must be now or later: the forecast is computed from "
                              "the lots as they are now", field="as_of_time")
    if end is not None and not as_of < end <= MAX_US:
        raise InvalidArgument("value_out_of_range", "end_time must be after as_of_time", field="end_time")
    size = checks.page_size(page_size)
    after = checks.decode_position(page_token, as_of)
    async with db.connection() as conn:
        checks.found_member(await store.find(conn, programme_id, MemberRef(member_id=member_id)), "with this id")
        lots = await ledger.lots(conn, member_id)
        # Points that never expire are calc.NEVER: a window up to just before it leaves them out.
        burn_outs = burn_forecast(lots, after, calc.NEVER - 1 if end is None else end)
        pending = () if page_token else await ledger.pending_activations(conn, member_id, as_of)
    page, more = burn_outs[:size], len(burn_outs) > size
    return Forecast(as_of, tuple(page), tuple(pending), checks.encode_token(page[-1].expires_at) if more else "")


async def offboard(db: Database, clock: Clock, req: Offboard) -> MemberCard:
    """Take the member out; the ledger is kept and later writes are refused (member_offboarded)."""
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.programme_id, "programme_id")
    member_id = checks.uuid_arg(req.member_id, "member_id")
    checks.text_arg(req.comment, "comment", max_len=1000)
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[MemberCard, str]:
        ref = MemberRef(member_id=member_id)
        # Like every write to a member who left (docs/ledger.md); a second off-boarding would say
        # twice in history that the member left.
        checks.member_in_programme(checks.found_member(await store.find(conn, programme_id, ref, lock=True),
                                                       "with this id"))
        # No hold may outlive the membership: its points go back, and unpaid orders are cancelled
        # (a capture or refund after this is refused, member_offboarded).
        await orders.release_holds(conn, member_id, await orders.open_holds(conn, member_id), now, req.context,
                                   closed_as="released")
        await certificates.release_holds(conn, member_id, now, req.context.actor, comment="member off-boarded")
        await orders.cancel_unpaid(conn, member_id, now)
        await store.offboard(conn, member_id, now)
        await history.add_event(conn, member_id, "participation", "offboarded", now, actor=req.context.actor,
                                comment=req.comment)
        # The card as every other member RPC answers it (level name included).
        return await membership.member_card(conn, await store.find(conn, programme_id, ref), now), member_id

    return await run_write(db, method="OffboardMember", scope=programme_id, request=req, result_type=MemberCard,
                           now=now, effect=effect)
