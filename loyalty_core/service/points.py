"""Manual points and the ledger's upkeep: accrue, redeem, history, the expiry run."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from loyalty_core import observe
from loyalty_core.clock import Clock
from loyalty_core.errors import FailedPrecondition, InvalidArgument
from loyalty_core.model import (
    Accrue, Accrued, Expiry, ExpiryRun, History, LotRecord, Member, MemberRef, Movement, Page, Programme, Redeem,
    WriteContext,
)
from loyalty_core import membership
from loyalty_core.service import checks, rules, spending
from loyalty_core.service.idempotent import write_key
from loyalty_core.service.lots import MAX_LIFETIME_DAYS, draw, expiring, expiry_end
from loyalty_core.store import certificates, expiry, history, ledger, members, orders, unit_of_work
from loyalty_core.store.convert import MAX_US
from loyalty_core.store.db import Database, on_citus
from loyalty_core.store.later import Later
from loyalty_core.store.ledger import NEW_LOT, Entry, NewLot
from loyalty_core.store.unit_of_work import UnitOfWork

T = TypeVar("T")

KINDS = frozenset({"earned", "welcome", "manual_accrual", "refund_return", "spent", "held", "released", "expired",
                   "reversed", "activated", "debt_repaid", "debt_incurred", "event_bonus"})
# The expiry run writes as itself.
EXPIRY_CONTEXT = WriteContext(actor="expiry-run", reason_code="expiry")


def _check_points_write(req: Accrue | Redeem) -> tuple[str, str]:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.programme_id, "programme_id")
    member_id = checks.uuid_arg(req.member_id, "member_id")
    checks.positive_points(req.points)
    checks.text_arg(req.comment, "comment", max_len=1000)
    for name in ("store_id", "terminal_id", "reason_code"):
        checks.text_arg(getattr(req.context, name), f"context.{name}", max_len=checks.MAX_ID)
    checks.text_arg(req.context.correlation_id, "context.correlation_id", max_len=128)
    return programme_id, member_id


@dataclasses.dataclass(frozen=True)
class _MemberReads:
    """What a write to one member's points declares for its unit of work: the member locked, with
    its programme's revision, and the programme with its levels unless this process has them."""

    member: Later[tuple[Member | None, int | None]]
    rules: rules.SentRules


async def write_member(db: Database, *, method: str, programme_id: str, member_id: str, request: Any,
                       result_type: type[T], now: int,
                       steps: Callable[[Any, Programme, Member], Awaitable[T]]) -> T:
    """Run ``steps(conn, programme, member)`` once per request_id on the member ``member_id`` names,
    locked and still in the programme, in a unit of work whose reads travel with the claim. A missing
    programme is told before a missing member."""

    async def send_reads(conn: Any) -> _MemberReads:
        return _MemberReads(await members.send_lock(conn, programme_id, MemberRef(member_id=member_id)),
                            await rules.send(conn, db, programme_id))

    async def work(unit: UnitOfWork[_MemberReads]) -> tuple[T, str]:
        found, revision = await unit.reads.member.get()
        current = await rules.read(unit.conn, db, unit.reads.rules, revision)
        member = checks.member_in_programme(checks.found_member(found, "with this id"))
        return await steps(unit.conn, current.programme, member), member_id

    return await unit_of_work.run(db, write_key(method, programme_id, request, now), request=request,
                                  result_type=result_type, work=work, send_reads=send_reads)


def _expires_at(rule: Expiry, programme: Programme, now: int) -> int:
    if rule.rule == "lifetime_days" and not 1 <= rule.lifetime_days <= MAX_LIFETIME_DAYS:
        raise InvalidArgument("value_out_of_range", f"lifetime_days must be 1..{MAX_LIFETIME_DAYS}",
                              field="expiry.lifetime_days")
    if rule.rule == "expire_at" and not now < rule.expires_at <= MAX_US:
        raise InvalidArgument("value_out_of_range", "expire_time must be in the future", field="expiry.expire_time")
    return expiry_end(rule, programme.point_lifetime_days, now)


async def accrue(db: Database, clock: Clock, req: Accrue) -> Accrued:
    """Credit points, usable at once, living as the request's expiry rule says, as a lot of their own."""
    programme_id, member_id = _check_points_write(req)
    now = clock.now_us()

    async def steps(conn: Any, programme: Programme, member: Member) -> Accrued:
        if member.status == "deactivated":
            raise FailedPrecondition("member_deactivated", "a deactivated member earns no points")
        checks.check_member_room(member, "points", earned_points=req.points)
        expires_at = _expires_at(req.expiry, programme, now)
        posted = await ledger.post(
            conn, member_id, now, req.context,
            [Entry("manual_accrual", req.points, lots=[(NEW_LOT, req.points)], comment=req.comment)],
            NewLot("manual_accrual", req.points, now, expires_at),
        )
        movement = await history.one(conn, member_id, (await posted.get()).movement_ids[0])
        made = movement.lots[0].lot_id
        lot, = await ledger.lot_records(conn, member_id, after=0, limit=1, with_points_left=False, lot_ids=[made])
        return Accrued(movement, lot)

    return await write_member(db, method="AccruePoints", programme_id=programme_id, member_id=member_id, request=req,
                              result_type=Accrued, now=now, steps=steps)


async def redeem(db: Database, clock: Clock, req: Redeem) -> Movement:
    """Spend points outside an order, from the lots that expire first."""
    programme_id, member_id = _check_points_write(req)
    spending.spend_code_arg(req.spend_code)
    ref = MemberRef(member_id=member_id)
    code = await spending.check_spend_code(db, clock, programme_id, ref, req.spend_code)
    now = clock.now_us()

    async def steps(conn: Any, programme: Programme, member: Member) -> Movement:
        rights = membership.privileges(member, programme, (), now)
        if not rights.may_pay_with_points:
            status = "member_deactivated" if member.status == "deactivated" else "member_not_confirmed"
            raise FailedPrecondition(status, f"a {member.status.replace('_', ' ')} member cannot pay with points")
        await spending.authorise(conn, programme, member, ref, code, card_secret_checked=False,
                                 trusted=req.member_id_trusted, points=req.points, now=now, actor=req.context.actor)
        taken = draw(await ledger.lots(conn, member_id), req.points, now)
        posted = await ledger.post(conn, member_id, now, req.context, [
            Entry("spent", -req.points, lots=[(lot, -p) for lot, p in taken], comment=req.comment)
        ])
        return await history.one(conn, member_id, (await posted.get()).movement_ids[0])

    return await write_member(db, method="RedeemPoints", programme_id=programme_id, member_id=member_id, request=req,
                              result_type=Movement, now=now, steps=steps)


async def list_lots(db: Database, programme_id: str, member_id: str, only_with_points_left: bool,
                    page_size: int, page_token: str) -> Page[LotRecord]:
    """The member's lots, oldest first, a page at a time."""
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    member_id = checks.uuid_arg(member_id, "member_id")
    size = checks.page_size(page_size)
    after = checks.decode_position(page_token, 0)
    async with db.connection() as conn:
        checks.found_member(await members.find(conn, programme_id, MemberRef(member_id=member_id)), "with this id")
        lots = await ledger.lot_records(conn, member_id, after=after, limit=size + 1,
                                        with_points_left=only_with_points_left)
    more = len(lots) > size
    lots = lots[:size]
    return Page(tuple(lots), checks.encode_token(lots[-1].lot_id) if more else "")


async def list_history(db: Database, req: History) -> Page[Movement]:
    programme_id = checks.uuid_arg(req.programme_id, "programme_id")
    member_id = checks.uuid_arg(req.member_id, "member_id")
    size = checks.page_size(req.page_size)
    for kind in req.kinds:
        if kind not in KINDS:
            raise InvalidArgument("value_out_of_range", f"unknown movement kind {kind!r}", field="kinds")
    if req.start_at is not None and req.end_at is not None and req.end_at <= req.start_at:
        raise InvalidArgument("value_out_of_range", "end_time must be after start_time", field="end_time")
    after = checks.decode_token(req.page_token, 2)
    async with db.connection() as conn:
        checks.found_member(await members.find(conn, programme_id, MemberRef(member_id=member_id)), "with this id")
        items = await history.page(conn, member_id, req.start_at, req.end_at, req.kinds,
                                   tuple(after) if after else None, size + 1)
    more = len(items) > size
    items = items[:size]
    token = checks.encode_token(items[-1].created_at, items[-1].movement_id) if more else ""
    return Page(tuple(items), token)


async def _expire_member(conn: Any, member_id: str, as_of: int) -> ExpiryRun:
    """One member's due work, under the member's lock: release stale holds (their points go back
    to their lots first, so a lot that expired meanwhile burns them), burn expired lots, activate
    due ones; the same for certificates (lapsed holds released, expired ones burnt). What is done
    leaves nothing due, so a second run (or a second server) finds no work."""
    if not await members.lock(conn, [member_id]):
        return ExpiryRun()
    holds = await orders.open_holds(conn, member_id, expired_by=as_of)
    await orders.release_holds(conn, member_id, holds, as_of, EXPIRY_CONTEXT, closed_as="expired")
    # Certificates as lots: a lapsed checkout's hold goes back first, so one expired meanwhile burns.
    lapsed, certificate_holds = await certificates.release_holds(conn, member_id, as_of, EXPIRY_CONTEXT.actor,
                                                                 lapsed_by=as_of, comment="hold lifetime ran out")
    await orders.cancel_unpaid(conn, member_id, as_of, lapsed)
    burnt_certificates = await certificates.burn_expired(conn, member_id, as_of, EXPIRY_CONTEXT.actor)
    run = await _burn_and_activate(conn, [member_id], as_of)
    return dataclasses.replace(
        run, holds_released=len(holds), points_released=sum(h.points for h in holds),
        certificates_expired=len(burnt_certificates),
        certificate_points_expired=sum(c.remaining_points for c in burnt_certificates),
        certificate_holds_released=certificate_holds,
    )


async def _expire_lots_of(conn: Any, member_ids: list[str], as_of: int) -> ExpiryRun:
    """Members whose only due work is lots to burn or activate, together: locked in id order, then
    the same steps as one member's, each a statement over all of them."""
    locked = await members.lock(conn, member_ids)
    return await _burn_and_activate(conn, sorted(locked), as_of) if locked else ExpiryRun()


async def _burn_and_activate(conn: Any, member_ids: list[str], as_of: int) -> ExpiryRun:
    """Burn the locked members' expired lots (earliest first) and activate their due ones."""
    burnable = await expiry.lots_to_burn(conn, member_ids, as_of)
    activated = await expiry.activate(conn, member_ids, as_of)
    entries: dict[str, list[Entry]] = {}
    lots_expired = points_expired = 0
    for member_id in member_ids:
        burnt = expiring(burnable[member_id], as_of) if member_id in burnable else []
        member_entries = [Entry("activated", 0, lots=[(lot, 0)]) for lot, _ in activated.get(member_id, ())]
        if burnt:
            points = sum(p for _, p in burnt)
            member_entries.insert(0, Entry("expired", -points, lots=[(lot, -p) for lot, p in burnt]))
            lots_expired += len(burnt)
            points_expired += points
        if member_entries:
            entries[member_id] = member_entries
    await ledger.post_many(conn, as_of, EXPIRY_CONTEXT, entries)
    return ExpiryRun(lots_expired=lots_expired, points_expired=points_expired,
                     lots_activated=sum(len(a) for a in activated.values()),
                     points_activated=sum(p for a in activated.values() for _, p in a))


# Members with only lots due are expired this many to a transaction, with this many such
# transactions at once (the database works on one while this process builds the next). On Citus
# each member's transaction stays on its own shard instead: batches of one, as many at once.
LOTS_BATCH = 500
LOTS_BATCHES_IN_FLIGHT = 2


async def run_expiry(db: Database, clock: Clock, programme_id: str, as_of: int | None, *,
                     batch: int = expiry.DUE_BATCH, members_max: int = 0) -> ExpiryRun:
    """Burn, activate and release as of ``as_of`` (default now), each member under its lock, in a
    transaction of its own or (members with only lots due) with up to ``LOTS_BATCH`` others of its
    programme: safe to run twice, and from several servers at once. ``members_max`` > 0 stops
    after that many members (a bounded run of the scheduler: what it left is still due, so the
    next run takes it up)."""
    programme_id = checks.uuid_arg(programme_id, "programme_id") if programme_id else None
    # A later time would burn points that are still the member's and release holds a till is
    # about to capture: an expiry acts on the past or the present only.
    as_of = checks.as_of_now_or_before(as_of, clock.now_us())
    started = time.perf_counter()
    totals = dict.fromkeys((f.name for f in dataclasses.fields(ExpiryRun)), 0)
    pending: list[str] = []
    pending_programme = ""
    in_flight: list[asyncio.Task[ExpiryRun]] = []

    def add(run: ExpiryRun) -> None:
        for name in totals:
            totals[name] += getattr(run, name)

    async def send_pending() -> None:
        nonlocal pending
        if pending:
            # A run over every programme counts each member's points under the member's programme.
            with observe.in_programme(pending_programme):
                in_flight.append(asyncio.create_task(
                    db.run_in_transaction(_expire_lots_of, pending, as_of)))
            totals["members"] += len(pending)
            pending = []
        while len(in_flight) >= LOTS_BATCHES_IN_FLIGHT:
            add(await in_flight.pop(0))

    # The due members stream, ``batch`` at a time, from a cursor in a read-only transaction on a
    # connection of its own; the work runs in transactions from the pool.
    try:
        async with db.dedicated_connection() as conn, conn.transaction():
            lots_batch = 1 if await on_citus(conn) else LOTS_BATCH
            async for due in expiry.due_members(conn, programme_id, as_of, batch):
                if due.programme_id != pending_programme or len(pending) == lots_batch:
                    await send_pending()
                if due.lots_only:
                    pending_programme = due.programme_id
                    pending.append(due.member_id)
                else:
                    with observe.in_programme(due.programme_id):
                        add(await db.run_in_transaction(_expire_member, due.member_id, as_of))
                    totals["members"] += 1
                if totals["members"] + len(pending) == members_max:
                    break
            await send_pending()
        for task in in_flight:
            add(await task)
    finally:
        # A failed run leaves no batch running behind it (what it did not finish is still due).
        for task in in_flight:
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
    observe.expiry_run(time.perf_counter() - started)
    return ExpiryRun(**totals)
