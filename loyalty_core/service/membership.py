"""Membership use cases: status, phone confirmation, cards, personal discount, levels, review, recalculation, history."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from loyalty_core import cards, levels, membership, sms
from loyalty_core.clock import Clock
from loyalty_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from loyalty_core.levels import Level
from loyalty_core.model import Member, MemberCard, MemberRef, Page, Programme, WriteContext
from loyalty_core.service import checks
from loyalty_core.service.idempotent import run_write, write_key
from loyalty_core.service.members import programme_of
from loyalty_core.settings import Settings
from loyalty_core.sms import SmsMessage, SmsSender
from loyalty_core.store import card_history, unit_of_work
from loyalty_core.store import members as member_store
from loyalty_core.store import membership as store
from loyalty_core.store.convert import MAX_US
from loyalty_core.store.db import UNIQUE_VIOLATIONS, Database, savepoint, violated_constraint
from loyalty_core.store.later import Later
from loyalty_core.store.unit_of_work import UnitOfWork

T = TypeVar("T")

US_PER_S = 1_000_000
COMMENT_MAX = 1000
CODE_DIGITS = 6
CONFIRMATION_PURPOSE = "phone_confirmation"
SPEND_CODE_PURPOSE = "spend_code"
# Tries at a fresh virtual card number before giving up: a 15-digit random body collides with an
# existing card about never, so a second failure means something else is wrong.
CARD_NUMBER_TRIES = 5
BATCH_DEFAULT = 500
BATCH_MAX = 5000
# Each tab of the card: the history events' tabs it shows, the movements it shows (all, the operators'
# manual ones, none) and whether it shows the member's orders (docs/membership.md "History").
HISTORY_TABS = {
    "all": (("participation", "orders", "messages"), "all", True),
    "orders": (("orders",), "none", True),
    "participation": (("participation",), "manual", False),
    "messages": (("messages",), "none", False),
    "points": ((), "all", False),
}


@dataclass(frozen=True)
class ConfirmationPolicy:
    """The limits on one-time codes (LOYALTY_CONFIRMATION_*), in the domain's units."""

    code_ttl_us: int
    attempts_max: int
    resend_interval_us: int
    sends_per_day_max: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConfirmationPolicy:
        return cls(round(settings.confirmation_code_ttl_s * US_PER_S), settings.confirmation_attempts_max,
                   round(settings.confirmation_resend_interval_s * US_PER_S), settings.confirmation_sends_per_day_max)


# -- Requests and results --------------------------------------------------------------------------

@dataclass(frozen=True)
class ChangeStatus:
    request_id: str
    programme_id: str
    member_id: str
    status: str
    comment: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class StartConfirmation:
    request_id: str
    programme_id: str
    member_id: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class ConfirmationStarted:
    expires_at: int
    resend_at: int
    attempts_left: int


@dataclass(frozen=True)
class ConfirmPhone:
    request_id: str
    programme_id: str
    member_id: str
    code: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class ConfirmAnswer:
    """A confirmation's outcome. A wrong code is an answer that is stored (the attempt must count
    even though the call is refused), so ``refusal`` carries it out of the transaction."""

    card: MemberCard
    refusal: str = ""
    attempts_left: int = 0


@dataclass(frozen=True)
class CardChange:
    """RegenerateCardSecret and GenerateVirtualCard."""

    request_id: str
    programme_id: str
    member_id: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class CardIssued:
    """The member with the new card or secret. ``card_secret`` is shown once: it is never stored
    in the clear, so a replay of the request answers with it empty."""

    card: MemberCard
    card_secret: str = ""


@dataclass(frozen=True)
class SetPersonalDiscount:
    request_id: str
    programme_id: str
    member_id: str
    discount_bps: int
    comment: str = ""
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class ChangeLevel:
    request_id: str
    programme_id: str
    member_id: str
    level_id: str
    comment: str
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class LevelRecord:
    """A level as stored, with its times."""

    level: Level
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class CreateLevel:
    request_id: str
    level: Level
    context: WriteContext = field(default_factory=WriteContext)


@dataclass(frozen=True)
class UpdateLevel:
    request_id: str
    # The new values; only the fields named in ``fields`` are read.
    level: Level
    fields: tuple[str, ...]
    context: WriteContext = field(default_factory=WriteContext)


# Fields an update may change: the ids are the level's identity.
LEVEL_MUTABLE_FIELDS = frozenset(f.name for f in dataclasses.fields(Level)) - {"level_id", "programme_id"}


@dataclass(frozen=True)
class ReviewRun:
    members_reviewed: int = 0
    members_dropped: int = 0


@dataclass(frozen=True)
class RecalculationRun:
    members_recalculated: int = 0
    members_changed: int = 0


@dataclass(frozen=True)
class HistoryEvent:
    # A history event's number, "movement:<id>" or "order:<order_id>" (store.card_history.Entry).
    event_id: str
    tab: str
    kind: str
    created_at: int
    actor: str
    comment: str
    details: dict[str, str]


# -- Shared steps ------------------------------------------------------------------------------------

def _comment(value: str, *, required: bool) -> str:
    return checks.text_arg(value, "comment", max_len=COMMENT_MAX, required=required)


def _ids(request: Any) -> tuple[str, str]:
    checks.text_arg(request.request_id, "request_id", max_len=128, required=True)
    return checks.uuid_arg(request.programme_id, "programme_id"), checks.uuid_arg(request.member_id, "member_id")


async def _reread(conn: Any, member: Member) -> Member:
    return checks.found_member(
        await member_store.find(conn, member.programme_id, MemberRef(member_id=member.member_id)), "with this id")


async def _member_write(
    db: Database, clock: Clock, method: str, req: Any, result_type: type[T],
    change: Callable[[Any, Member, int], Awaitable[T]],
) -> T:
    """A write to one member as a unit of work: the member's lock (declared, so it travels with the
    idempotency claim) and the off-boarding rule."""
    programme_id, member_id = _ids(req)
    now = clock.now_us()

    async def send_reads(conn: Any) -> Later[tuple[Member | None, int | None]]:
        return await member_store.send_lock(conn, programme_id, MemberRef(member_id=member_id))

    async def work(unit: UnitOfWork[Later[tuple[Member | None, int | None]]]) -> tuple[T, str]:
        found, _ = await unit.reads.get()
        member = checks.member_in_programme(checks.found_member(found, "with this id"))
        return await change(unit.conn, member, now), member_id

    return await unit_of_work.run(db, write_key(method, programme_id, req, now), request=req, result_type=result_type,
                                  work=work, send_reads=send_reads)


# -- Status ------------------------------------------------------------------------------------------

async def change_status(db: Database, clock: Clock, req: ChangeStatus) -> MemberCard:
    """Move a member to another status; the comment is required and kept in history. A member whose
    phone is confirmed cannot be made not confirmed."""
    if req.status not in membership.STATUSES:
        raise InvalidArgument("field_required", "status must be active, not_confirmed or deactivated", field="status")
    _comment(req.comment, required=True)

    async def change(conn: Any, member: Member, now: int) -> MemberCard:
        if req.status == membership.NOT_CONFIRMED and member.phone_confirmed:
            # The seeds: a member who meets the conditions of activation cannot be made "not confirmed".
            raise FailedPrecondition("phone_already_confirmed",
                                     "the member's phone is confirmed; they cannot be made not confirmed")
        if member.status != req.status:
            await store.set_status(conn, member.member_id, req.status)
            await store.add_event(conn, member.member_id, "participation", "status_changed", now,
                                  actor=req.context.actor, comment=req.comment,
                                  details={"from": member.status, "to": req.status})
        return await membership.member_card(conn, await _reread(conn, member), now)

    return await _member_write(db, clock, "ChangeMemberStatus", req, MemberCard, change)


# -- Phone confirmation ------------------------------------------------------------------------------

def _masked(text: str, code: str) -> str:
    return text.replace(code, "*" * len(code))


async def _send_code(conn: Any, sender: SmsSender, policy: ConfirmationPolicy, member: Member, now: int, actor: str,
                     *, purpose: str, earlier_sent_at: int | None, wording: str, table: str) -> ConfirmationStarted:
    """Send a fresh one-time code to the member's phone, kept in ``table`` as a hash; rate-limited by
    the code of this purpose sent last (``earlier_sent_at``) and by every message of the day.

    The message is sent last inside the transaction: if the gateway refuses it, nothing is stored
    and the caller may try again at once. History keeps the message with the code masked.
    """
    if earlier_sent_at is not None and now < earlier_sent_at + policy.resend_interval_us:
        raise ResourceExhausted("confirmation_resend_too_soon", "a code was sent moments ago; wait before resending",
                                retry_after_us=earlier_sent_at + policy.resend_interval_us - now)
    if await store.messages_since(conn, member.member_id, now - 86_400 * US_PER_S) >= policy.sends_per_day_max:
        raise ResourceExhausted("confirmation_resend_too_soon",
                                f"at most {policy.sends_per_day_max} codes are sent to a member a day")
    assert member.phone is not None
    code = cards.generate_digits(CODE_DIGITS)
    text = f"{wording}: {code}. It expires in {policy.code_ttl_us // (60 * US_PER_S)} minutes."
    await store.put_code(conn, table, member.member_id, member.phone, await cards.hash_secret_async(code), now,
                         now + policy.code_ttl_us, policy.attempts_max)
    name = sms.sender_name(await programme_of(conn, member.programme_id), member.store_id)
    await store.add_event(conn, member.member_id, "messages", "sms_sent", now, actor=actor,
                          details={"phone": member.phone, "purpose": purpose, "text": _masked(text, code),
                                   "sender": name})
    await sender.send(SmsMessage(member.phone, text, purpose, member.programme_id, member.member_id, name))
    return ConfirmationStarted(now + policy.code_ttl_us, now + policy.resend_interval_us, policy.attempts_max)


async def start_confirmation(db: Database, clock: Clock, sender: SmsSender, policy: ConfirmationPolicy,
                             req: StartConfirmation) -> ConfirmationStarted:
    """Send a fresh confirmation code to the member's phone; it replaces any earlier code and its attempts."""

    async def change(conn: Any, member: Member, now: int) -> ConfirmationStarted:
        if not member.phone:
            raise FailedPrecondition("member_has_no_phone", "the member has no phone to confirm")
        if member.phone_confirmed:
            raise FailedPrecondition("phone_already_confirmed", "the member's phone is already confirmed")
        earlier = await store.confirmation(conn, member.member_id)
        return await _send_code(conn, sender, policy, member, now, req.context.actor, purpose=CONFIRMATION_PURPOSE,
                                earlier_sent_at=earlier.sent_at if earlier else None,
                                wording="Your confirmation code", table="phone_confirmation")

    return await _member_write(db, clock, "StartPhoneConfirmation", req, ConfirmationStarted, change)


async def send_spend_code(db: Database, clock: Clock, sender: SmsSender, policy: ConfirmationPolicy,
                          req: StartConfirmation) -> ConfirmationStarted:
    """Send a one-time spend code to the member's confirmed phone (docs/trust.md "Who may spend
    points"); it replaces any earlier spend code, its attempts and its use."""

    async def change(conn: Any, member: Member, now: int) -> ConfirmationStarted:
        if not member.phone:
            raise FailedPrecondition("member_has_no_phone", "the member has no phone to send a spend code to")
        if not member.phone_confirmed:
            raise FailedPrecondition("phone_not_confirmed", "a spend code goes only to a confirmed phone")
        return await _send_code(conn, sender, policy, member, now, req.context.actor, purpose=SPEND_CODE_PURPOSE,
                                earlier_sent_at=await store.spend_code_sent_at(conn, member.member_id),
                                wording="Your code to pay with points", table="spend_code")

    return await _member_write(db, clock, "SendSpendCode", req, ConfirmationStarted, change)


async def confirm_phone(db: Database, clock: Clock, req: ConfirmPhone) -> MemberCard:
    """Check the code the member read out. A right code confirms the phone and activates a member
    who was not confirmed; a wrong one counts against the code's attempts, and at the limit the
    code is locked until a new one is sent."""
    checks.text_arg(req.code, "code", max_len=16, required=True)

    async def change(conn: Any, member: Member, now: int) -> ConfirmAnswer:
        if member.phone_confirmed:
            raise FailedPrecondition("phone_already_confirmed", "the member's phone is already confirmed")
        pending = await store.confirmation(conn, member.member_id)
        if pending is None or pending.phone != member.phone:
            raise FailedPrecondition("confirmation_not_started", "no code was sent to the member's phone")
        if pending.attempts >= pending.attempts_max:
            raise FailedPrecondition("confirmation_locked", "too many wrong codes; send a new one")
        if now >= pending.expires_at:
            raise FailedPrecondition("confirmation_code_expired", "the code has expired; send a new one")
        if not await cards.secret_matches_async(req.code, pending.code_hash):
            await store.record_attempt(conn, member.member_id, confirmed_at=None)
            return ConfirmAnswer(MemberCard(member), "confirmation_code_wrong", pending.attempts_max - pending.attempts - 1)
        await store.record_attempt(conn, member.member_id, confirmed_at=now)
        status = membership.ACTIVE if member.status == membership.NOT_CONFIRMED else member.status
        await store.set_status(conn, member.member_id, status, phone_confirmed=True)
        await store.add_event(conn, member.member_id, "participation", "phone_confirmed", now, actor=req.context.actor,
                              details={"phone": member.phone})
        if status != member.status:
            await store.add_event(conn, member.member_id, "participation", "status_changed", now,
                                  actor=req.context.actor, details={"from": member.status, "to": status,
                                                                    "reason": "phone_confirmed"})
        return ConfirmAnswer(await membership.member_card(conn, await _reread(conn, member), now))

    answer = await _member_write(db, clock, "ConfirmPhone", req, ConfirmAnswer, change)
    if answer.refusal:
        raise FailedPrecondition(answer.refusal, "the code is wrong", attempts_left=answer.attempts_left)
    return answer.card


# -- Cards -------------------------------------------------------------------------------------------

async def _issue_card(db: Database, clock: Clock, method: str, req: CardChange, *, new_number: bool) -> CardIssued:
    shown: dict[str, str] = {}

    async def change(conn: Any, member: Member, now: int) -> CardIssued:
        if not new_number and not member.card_number:
            raise FailedPrecondition("member_has_no_card", "the member has no card to carry a secret code")
        secret = cards.generate_card_secret()
        secret_hash = await cards.hash_secret_async(secret)
        number = None
        for _ in range(CARD_NUMBER_TRIES if new_number else 1):
            number = cards.generate_card_number() if new_number else None
            try:
                async with savepoint(conn):  # a savepoint: a taken number must not end the transaction
                    await store.set_card(conn, member.member_id, member.programme_id, number, secret_hash)
                break
            except UNIQUE_VIOLATIONS as err:
                if violated_constraint(err) is None:
                    raise
                continue
        else:
            raise AlreadyExists("card_number_taken", "no free virtual card number was found; try again")
        kind, details = (("virtual_card_generated", {"from": member.card_number or "", "to": number}) if new_number
                         else ("card_secret_regenerated", {"card_number": member.card_number}))
        await store.add_event(conn, member.member_id, "participation", kind, now, actor=req.context.actor,
                              details=details)
        shown["secret"] = secret
        # Stored for replays without the secret: it is shown once and kept only as a hash.
        return CardIssued(await membership.member_card(conn, await _reread(conn, member), now))

    issued = await _member_write(db, clock, method, req, CardIssued, change)
    return dataclasses.replace(issued, card_secret=shown.get("secret", ""))


async def regenerate_card_secret(db: Database, clock: Clock, req: CardChange) -> CardIssued:
    return await _issue_card(db, clock, "RegenerateCardSecret", req, new_number=False)


async def generate_virtual_card(db: Database, clock: Clock, req: CardChange) -> CardIssued:
    return await _issue_card(db, clock, "GenerateVirtualCard", req, new_number=True)


@dataclass(frozen=True)
class CardUnlocked:
    card: MemberCard
    was_locked: bool


async def unlock_card(db: Database, clock: Clock, req: CardChange) -> CardUnlocked:
    """Lift a card's lockout (members.verify_card) and forget its wrong secrets."""

    async def change(conn: Any, member: Member, now: int) -> CardUnlocked:
        if not member.card_number:
            raise FailedPrecondition("member_has_no_card", "the member has no card to unlock")
        was_locked = await member_store.card_unlocked(conn, member.member_id, now)
        await store.add_event(conn, member.member_id, "participation", "card_unlocked", now, actor=req.context.actor,
                              details={"was_locked": was_locked})
        return CardUnlocked(await membership.member_card(conn, member, now), was_locked)

    return await _member_write(db, clock, "UnlockCard", req, CardUnlocked, change)


# -- Personal discount -------------------------------------------------------------------------------

async def set_personal_discount(db: Database, clock: Clock, req: SetPersonalDiscount) -> MemberCard:
    if not 0 <= req.discount_bps <= levels.BPS:
        raise InvalidArgument("value_out_of_range", f"discount_bps must be 0..{levels.BPS}", field="discount_bps")
    _comment(req.comment, required=False)

    async def change(conn: Any, member: Member, now: int) -> MemberCard:
        if member.personal_discount_bps != req.discount_bps:
            await store.set_personal_discount(conn, member.member_id, req.discount_bps)
            await store.add_event(conn, member.member_id, "participation", "personal_discount_set", now,
                                  actor=req.context.actor, comment=req.comment,
                                  details={"from": member.personal_discount_bps, "to": req.discount_bps})
        return await membership.member_card(conn, await _reread(conn, member), now)

    return await _member_write(db, clock, "SetPersonalDiscount", req, MemberCard, change)


# -- Levels ------------------------------------------------------------------------------------------

async def change_level(db: Database, clock: Clock, req: ChangeLevel) -> MemberCard:
    """Set a member's level by hand: one open to the member's group, not below the level the
    member's purchases already qualify for."""
    level_id = checks.uuid_arg(req.level_id, "level_id")
    _comment(req.comment, required=True)

    async def change(conn: Any, member: Member, now: int) -> MemberCard:
        rungs = levels.ladder([s.level for s in await store.levels_of(conn, member.programme_id)],
                              member.customer_group)
        purchases = await membership.recent_purchases(conn, member.member_id, rungs, now)
        level = levels.check_manual_level(rungs, level_id, purchases, now)
        if level.level_id != member.level_id:
            await membership.assign_level(conn, member, level, now, reason="manual", actor=req.context.actor,
                                          comment=req.comment)
        return await membership.member_card(conn, await _reread(conn, member), now)

    return await _member_write(db, clock, "ChangeMemberLevel", req, MemberCard, change)


def _record(stored: store.StoredLevel) -> LevelRecord:
    return LevelRecord(stored.level, stored.created_at, stored.updated_at)


async def _save_level(conn: Any, level: Level, now: int) -> None:
    try:
        async with savepoint(conn):  # a savepoint: a taken priority must not poison the key's transaction
            await store.save_level(conn, level, now)
    except UNIQUE_VIOLATIONS as err:
        if violated_constraint(err) is None:
            raise
        raise AlreadyExists("level_priority_taken", "another level of the programme has this priority",
                            field="priority") from None


async def create_level(db: Database, clock: Clock, req: CreateLevel) -> LevelRecord:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.level.programme_id, "level.programme_id")
    checks.text_arg(req.level.customer_group, "level.customer_group", max_len=checks.MAX_ID)
    level = levels.validate_level(dataclasses.replace(req.level, programme_id=programme_id, level_id=str(uuid.uuid4())))
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[LevelRecord, None]:
        await programme_of(conn, programme_id)
        if await store.count_levels(conn, programme_id) >= levels.LEVELS_PER_PROGRAMME_MAX:
            raise InvalidArgument("too_many_items", f"a programme has at most {levels.LEVELS_PER_PROGRAMME_MAX} levels",
                                  field="level")
        await _save_level(conn, level, now)
        return LevelRecord(level, now, now), None

    try:
        return await run_write(db, method="CreateLevel", scope=programme_id, request=req, result_type=LevelRecord,
                               now=now, effect=effect)
    finally:
        db.programmes.forget(programme_id)  # this process's quotes see the levels at once


async def update_level(db: Database, clock: Clock, req: UpdateLevel) -> LevelRecord:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.level.programme_id, "level.programme_id")
    level_id = checks.uuid_arg(req.level.level_id, "level.level_id")
    unknown = set(req.fields) - LEVEL_MUTABLE_FIELDS
    if unknown or not req.fields:
        raise InvalidArgument("value_out_of_range", f"update_mask names no field or fields that cannot change: "
                              f"{sorted(unknown)}", field="update_mask")
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[LevelRecord, None]:
        stored = await store.get_level(conn, programme_id, level_id, lock=True)
        if stored is None:
            raise NotFound("level_not_found", "no such level in this programme", field="level.level_id")
        level = levels.validate_level(dataclasses.replace(
            stored.level, **{name: getattr(req.level, name) for name in req.fields}))
        await _save_level(conn, level, now)
        return LevelRecord(level, stored.created_at, now), None

    try:
        return await run_write(db, method="UpdateLevel", scope=programme_id, request=req, result_type=LevelRecord,
                               now=now, effect=effect)
    finally:
        db.programmes.forget(programme_id)  # this process's quotes see the levels at once


async def list_levels(db: Database, programme_id: str, page_size: int, page_token: str) -> Page[LevelRecord]:
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    limit = checks.page_size(page_size)
    after = checks.decode_token(page_token, 1)
    async with db.connection() as conn:
        await programme_of(conn, programme_id)
        rows = await store.level_page(conn, programme_id, after[0] if after else 0, limit + 1)
    items = tuple(_record(r) for r in rows[:limit])
    token = checks.encode_token(items[-1].level.priority) if len(rows) > limit else ""
    return Page(items, token)


# -- Batch runs: the level review and the discount recalculation --------------------------------------

async def _in_batches(db: Database, programme_id: str, batch_size: int,
                      each: Callable[[Any, Programme, list[Level], Member], Awaitable[bool]]) -> tuple[int, int]:
    """``each(conn, programme, levels, member)`` for every member of the programme, one transaction
    per batch of members (each locked in turn), so an interrupted run keeps the batches it finished
    and a rerun redoes only what still needs it. Returns (members seen, members changed)."""
    size = checks.bounded(batch_size, "batch_size", BATCH_DEFAULT, BATCH_MAX)
    seen = changed = 0
    after: str | None = None
    while True:
        async def batch(conn: Any) -> tuple[list[str], int]:
            programme = await programme_of(conn, programme_id)
            ladder = [s.level for s in await store.levels_of(conn, programme_id)]
            ids = await store.member_ids_after(conn, programme_id, after, size)
            done = 0
            for member_id in ids:
                member = await member_store.find(conn, programme_id, MemberRef(member_id=member_id), lock=True)
                if member is not None and await each(conn, programme, ladder, member):
                    done += 1
            return ids, done

        ids, done = await db.run_in_transaction(batch)
        seen += len(ids)
        changed += done
        if len(ids) < size:
            return seen, changed
        after = ids[-1]


async def run_level_review(db: Database, clock: Clock, programme_id: str, as_of: int | None,
                           batch_size: int = 0) -> ReviewRun:
    """Drop one level every member who missed their level's requirement over its period ending at
    ``as_of``. Deactivated and off-boarded members are left as they are (their levels do not move)."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    # A later time would judge members on a period they are still living through (their purchases
    # to come count for nothing) and drop them early: a review looks at the past or the present.
    when = checks.as_of_now_or_before(as_of, clock.now_us())

    async def review(conn: Any, programme: Programme, ladder: list[Level], member: Member) -> bool:
        rights = membership.privileges(member, programme, ladder, when)
        if member.level_id is None or not rights.purchases_count:
            return False
        rungs = levels.ladder(ladder, member.customer_group)
        purchases = await membership.recent_purchases(conn, member.member_id, rungs, when)
        lower = levels.level_after_review(rungs, member.level_id, member.level_assigned_at, purchases, when)
        if lower is None:
            return False
        await membership.assign_level(conn, member, lower, when, reason="period_missed", actor=membership.SYSTEM)
        return True

    reviewed, dropped = await _in_batches(db, programme_id, batch_size, review)
    return ReviewRun(reviewed, dropped)


async def recalculate_discounts(db: Database, clock: Clock, programme_id: str, batch_size: int = 0) -> RecalculationRun:
    """Recount every member's purchase total from the purchases that count, and give the
    accumulative rate the programme's ranges give it now, never lowering a rate already reached."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    now = clock.now_us()

    async def recalculate(conn: Any, programme: Programme, ladder: list[Level], member: Member) -> bool:
        total = await store.counted_total(conn, member.member_id)
        rate = membership.rate_after_purchase(membership.kept_rate(member), programme.discount_ranges,
                                              member.customer_group, total)
        if (total, rate) == (member.purchases_total_minor, membership.kept_rate(member)):
            return False
        await store.set_totals(conn, member.member_id, total, rate.bps, rate.from_minor)
        await store.add_event(conn, member.member_id, "participation", "discount_recalculated", now,
                              actor=membership.SYSTEM,
                              details={"purchases_total_minor": total, "accumulative_discount_bps": rate.bps})
        return True

    seen, changed = await _in_batches(db, programme_id, batch_size, recalculate)
    return RecalculationRun(seen, changed)


# -- History -----------------------------------------------------------------------------------------

async def list_history(db: Database, programme_id: str, member_id: str, tab: str, page_size: int,
                       page_token: str, start: int | None = None, end: int | None = None) -> Page[HistoryEvent]:
    """The member's history in one tab of the card (or all), newest first, at or after ``start`` and
    before ``end``."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    member_id = checks.uuid_arg(member_id, "member_id")
    if tab not in HISTORY_TABS:
        raise InvalidArgument("value_out_of_range", f"tab must be one of {sorted(HISTORY_TABS)}", field="tab")
    for name, value in (("start_time", start), ("end_time", end)):
        if value is not None and not 0 <= value <= MAX_US:
            raise InvalidArgument("value_out_of_range", f"{name} must be between 1970 and 9999", field=name)
    if start is not None and end is not None and end <= start:
        raise InvalidArgument("value_out_of_range", "end_time must be after start_time", field="end_time")
    limit = checks.page_size(page_size)
    after = checks.decode_token(page_token, 4)
    if after is not None and not (all(isinstance(x, int) for x in after[:3]) and isinstance(after[3], str)
                                  and 0 <= after[0] <= MAX_US):
        raise InvalidArgument("value_out_of_range", "page_token is not one this server gave", field="page_token")
    event_tabs, movements, orders = HISTORY_TABS[tab]
    async with db.connection() as conn:
        checks.found_member(await member_store.find(conn, programme_id, MemberRef(member_id=member_id)), "with this id")
        rows = await card_history.page(conn, member_id, event_tabs=event_tabs, movements=movements, orders=orders,
                                       start=start, end=end, after=tuple(after) if after else None, limit=limit + 1)
    items = tuple(HistoryEvent(e.entry_id, e.tab, e.kind, e.created_at, e.actor, e.comment, e.details)
                  for e in rows[:limit])
    return Page(items, checks.encode_token(*rows[limit - 1].position) if len(rows) > limit else "")
