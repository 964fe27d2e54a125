"""The checkout flow: quote, checkout (hold), capture, cancel, refund, complete, void, and reading an order."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar


from loyalty_core import calc, certificates, membership
from loyalty_core.bounds import MAX_AMOUNT, MAX_QUANTITY, at_most
from loyalty_core.certificates import Certificate
from loyalty_core.clock import Clock
from loyalty_core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from loyalty_core.levels import Level
from loyalty_core.model import (
    US_PER_DAY, US_PER_S, Cancel, Cancelled, Capture, Captured, Checkout, Complete, Hold, Member, MemberRef, Order,
    Pricing, Programme, Quote, Quoted, Refund, Refunded, RefundLine, RefundRecord, Void, Voided,
)
from loyalty_core.service import checks, rules, spending
from loyalty_core.service.idempotent import write_key
from loyalty_core.service.lots import claw, draw, fill, int64s, lifetime_end
from loyalty_core.service.members import check_ref, identified, verify_card
from loyalty_core.service.pricing import check_basket, member_blocks_points, quote_for, quoted, reprice
from loyalty_core.store import certificates as certificate_store
from loyalty_core.store import event_bonus, ledger, members, orders, unit_of_work
from loyalty_core.store import membership as history
from loyalty_core.store.db import UNIQUE_VIOLATIONS, Database, violated_constraint
from loyalty_core.store.later import Later
from loyalty_core.store.ledger import NEW_LOT, Entry, Lots, NewLot
from loyalty_core.store.orders import StoredHold, StoredOrder
from loyalty_core.store.unit_of_work import UnitOfWork

T = TypeVar("T")


def _check_write(request_id: str, programme_id: str, order_id: str, context: Any) -> str:
    """The fields every order write carries; returns the programme id in canonical form."""
    checks.text_arg(request_id, "request_id", max_len=128, required=True)
    checks.text_arg(order_id, "order_id", max_len=checks.MAX_ID, required=True)
    for name in ("store_id", "terminal_id", "reason_code", "correlation_id"):
        checks.text_arg(getattr(context, name), f"context.{name}", max_len=checks.MAX_ID if name != "correlation_id" else 128)
    return checks.uuid_arg(programme_id, "programme_id")


def _check_quote(quote: Quote) -> tuple[str, MemberRef]:
    programme_id = checks.uuid_arg(quote.programme_id, "programme_id")
    ref = check_ref(quote.member)
    check_basket(quote)
    checks.text_arg(quote.store_id, "store_id", max_len=checks.MAX_ID)
    checks.text_arg(quote.channel, "channel", max_len=checks.MAX_ID)
    checks.text_arg(quote.currency_code, "currency_code", max_len=3)
    return programme_id, ref


async def quote(db: Database, clock: Clock, req: Quote) -> Quoted:
    """Price the basket for the member now, and say why no point can pay when none can. Reads only."""
    programme_id, ref = _check_quote(req)
    verified = await verify_card(db, clock, programme_id, ref)
    now = clock.now_us()
    copy = db.programmes.get(programme_id)
    # The member and its lots come in one statement. With this process's copy of the programme that
    # is the whole read (no pipeline, one round trip); without, the programme and its levels are
    # sent first and travel with it in a pipeline.
    async with db.connection() as conn, (contextlib.nullcontext() if copy is not None else conn.pipeline()):
        sent_rules = rules.SentRules(programme_id, copy) if copy is not None else await rules.send(conn, db, programme_id)
        found, lots, event_discount_bps = await ledger.member_and_lots(conn, programme_id, ref, now)
        # Only a quote that presents certificates reads them (a round trip of its own).
        shown = await (await certificate_store.send_presented(conn, programme_id, ref, _hashes(req))).get()
        current = await rules.read_any(db, sent_rules)
        member = identified(current.programme, ref, found, verified)
    pricing, rights, available = quote_for(current.programme, member, current.levels, lots, req, now,
                                           event_discount_bps, shown=shown)
    return quoted(pricing, member, rights, available)


def _hashes(quote: Quote) -> list[bytes]:
    return [certificates.code_hash(code) for code in quote.certificate_codes]


@dataclasses.dataclass(frozen=True)
class _BasketReads:
    member: Later[tuple[Member | None, int | None]]
    exists: Later[bool]
    lots: Later[Lots]
    sent_rules: rules.SentRules
    event_discount_bps: Later[int]
    certificates: Later[dict[int, Certificate]]


async def _send_basket_reads(conn: Any, db: Database, programme_id: str, ref: MemberRef,
                             order_id: str, now: int, hashes: list[bytes] | None = None) -> _BasketReads:
    """What a checkout reads, sent together (one round trip in pipeline mode): the member, locked,
    whether the order exists, the member's lots and largest event discount (read after the lock is
    granted), the programme with its levels unless this process has them (checked against the
    revision the lock reads), and the certificates whose code ``hashes`` holds, read under the lock."""
    return _BasketReads(
        await members.send_lock(conn, programme_id, ref),
        await orders.send_exists(conn, programme_id, order_id),
        await ledger.send_lots_of(conn, programme_id, ref),
        await rules.send(conn, db, programme_id),
        await event_bonus.send_best_discount(conn, programme_id, ref, now),
        await certificate_store.send_presented(conn, programme_id, ref, hashes or []),
    )


async def _read_basket(
    db: Database, unit: UnitOfWork[_BasketReads], ref: MemberRef, verified: str | None, order_id: str
) -> tuple[Programme, Member, Lots, list[Level]]:
    """The basket reads' results (the card's secret checked by ``verify_card`` before the lock);
    the order refused if it was checked out before."""
    sent = unit.reads
    found, revision = await sent.member.get()
    current = await rules.read(unit.conn, db, sent.sent_rules, revision)
    member = identified(current.programme, ref, found, verified)
    if await sent.exists.get():
        raise _order_taken(order_id)
    return current.programme, member, await sent.lots.get(), current.levels


async def _hold_order(conn: Any, programme: Programme, member: Member, lots: Lots, pricing: Pricing,
                      rights: membership.Privileges, available: int, req: Checkout, ref: MemberRef,
                      code: spending.SpendCodeCheck, *, card_secret_checked: bool, now: int,
                      created_at: int) -> tuple[Order, StoredHold | None]:
    """Write a priced basket as an order held for payment (created at ``created_at``): the points
    that pay drawn from the lots usable ``now``, earliest expiry first, after the member's room,
    the points asked and the spending member's identification are checked."""
    # What capture may add, at most: the purchase, and points earned on all of it (a capture
    # that spends fewer points earns on more money; cashback is at most 100%).
    checks.check_member_room(member, "lines", earned_points=pricing.net_minor // pricing.terms.point_value_minor,
                             purchase_minor=pricing.net_minor)
    requested = req.quote.requested_points
    blocked = member_blocks_points(member, rights)
    if req.quote.certificate_codes and blocked:
        # A member who may not pay with points may not pay with certificates either.
        raise FailedPrecondition(blocked, _MEMBER_BLOCKS_POINTS[blocked])
    if requested > pricing.points_applied:
        _refuse_points(member, rights, requested, available, pricing.points_max - pricing.certificate_points)
    await spending.authorise(conn, programme, member, ref, code, card_secret_checked=card_secret_checked,
                             trusted=req.member_id_trusted, points=pricing.points_applied, now=now,
                             actor=req.context.actor, order_id=req.order_id)
    hold = None
    if pricing.points_applied:
        taken = draw(lots, pricing.points_applied, now)
        hold = StoredHold(
            Hold(str(uuid.uuid4()), pricing.points_applied, "open", now + programme.hold_ttl_s * US_PER_S),
            tuple(lot for lot, _ in taken), tuple(points for _, points in taken),
        )
        await ledger.post(conn, member.member_id, now, req.context, [Entry(
            "held", -pricing.points_applied, held_delta=pricing.points_applied,
            lots=[(lot, -points) for lot, points in taken], order_id=req.order_id, hold_id=hold.hold.hold_id,
        )])
    await certificate_store.hold(conn, member.member_id, req.order_id, pricing.certificates,
                                 now + programme.hold_ttl_s * US_PER_S, now, req.context.actor)
    order = Order(
        programme_id=programme.programme_id, order_id=req.order_id, member_id=member.member_id, state="held",
        store_id=req.quote.store_id, channel=req.quote.channel, pricing=pricing,
        hold=hold.hold if hold else None, refunds=(), created_at=created_at, captured_at=None,
    )
    await orders.insert(conn, order, req.context.terminal_id, requested, hold, programme.programme_id)
    return order, hold


async def checkout(db: Database, clock: Clock, req: Checkout) -> Order:
    """Price the basket for an order and hold the points that pay, drawn earliest expiry first."""
    programme_id = _check_write(req.request_id, req.quote.programme_id, req.order_id, req.context)
    _, ref = _check_quote(req.quote)
    spending.spend_code_arg(req.spend_code)
    verified = await verify_card(db, clock, programme_id, ref)
    code = await spending.check_spend_code(db, clock, programme_id, ref, req.spend_code)
    now = clock.now_us()

    async def work(unit: UnitOfWork[_BasketReads]) -> tuple[Order, str]:
        programme, member, lots, levels = await _read_basket(db, unit, ref, verified, req.order_id)
        pricing, rights, available = quote_for(programme, member, levels, lots, req.quote, now,
                                               await unit.reads.event_discount_bps.get(),
                                               shown=await unit.reads.certificates.get())
        order, _ = await _hold_order(unit.conn, programme, member, lots, pricing, rights, available, req, ref, code,
                                     card_secret_checked=verified is not None, now=now, created_at=now)
        return order, member.member_id

    send_reads = functools.partial(_send_basket_reads, db=db, programme_id=programme_id, ref=ref,
                                   order_id=req.order_id, now=now, hashes=_hashes(req.quote))
    return await _new_order(db, programme_id, ref, req.order_id,
                            lambda: unit_of_work.run(db, write_key("Checkout", programme_id, req, now), request=req,
                                                     result_type=Order, work=work, send_reads=send_reads))


async def _new_order(db: Database, programme_id: str, ref: MemberRef, order_id: str,
                     write: Callable[[], Awaitable[T]]) -> T:
    """Run ``write``, which creates the order ``order_id`` for the member ``ref``, among the few
    calls admitted to wait for that member's lock."""
    # Only a few calls per member wait for its lock (the rest are refused at once), so a member
    # held for long keeps only a few of the pool's connections.
    with db.member_calls.admitted(programme_id, ref.member_id or ref.phone or ref.card_number):
        try:
            return await write()
        except UNIQUE_VIOLATIONS as err:
            # Two members' checkouts of one order id hold different locks: both may find the id free,
            # and the one that commits second meets the key. Its answer is the same as if it had
            # found the order (the whole transaction, hold included, was rolled back).
            if violated_constraint(err) != orders.ORDER_ID_KEY:
                raise
            raise _order_taken(order_id) from None


def _order_taken(order_id: str) -> AlreadyExists:
    return AlreadyExists("order_already_checked_out", f"order {order_id!r} was checked out before", field="order_id")


_MEMBER_BLOCKS_POINTS = {
    "member_deactivated": "a deactivated member cannot pay with points",
    "member_not_confirmed": "the member must confirm the phone before points can pay",
}


def _refuse_points(member: Member, rights: membership.Privileges, requested: int, available: int, most: int) -> None:
    """Why a checkout cannot hold the requested points, most fundamental reason first."""
    blocked = member_blocks_points(member, rights)
    if blocked:
        raise FailedPrecondition(blocked, _MEMBER_BLOCKS_POINTS[blocked])
    if requested > available:
        raise FailedPrecondition("points_must_not_exceed_balance", f"{requested} points asked, {available} usable",
                                 available=available)
    raise FailedPrecondition("points_must_not_exceed_payable_limit",
                             f"{requested} points asked, this order may take at most {most}", points_max=most)


@dataclasses.dataclass(frozen=True)
class _OrderReads:
    """What every write to an order declares for its unit of work: the order's member locked with
    the order and the certificates its checkout holds read under the lock, and the programme with
    its levels unless this process has them."""

    order: orders.OrderReads
    rules: rules.SentRules
    certificates: Later[list[Certificate]]


@dataclasses.dataclass(frozen=True)
class _OrderWrite:
    """What a write to an order works on: its transaction, the order, its member (locked, still in
    the programme) and the programme's rules as committed."""

    conn: Any
    stored: StoredOrder
    member: Member
    programme: Programme
    levels: list[Level]
    # The certificates the order's checkout holds.
    held_certificates: tuple[Certificate, ...] = ()

    @property
    def order(self) -> Order:
        return self.stored.order

    @classmethod
    async def of(cls, db: Database, unit: UnitOfWork[_OrderReads], order_id: str) -> _OrderWrite:
        """The declared reads' results: the order refused when missing, its member when it left the
        programme (``member_offboarded``: every write to them is)."""
        found = await unit.reads.order.get()
        if found is None:
            raise NotFound("order_not_found", f"no order {order_id!r} in this programme")
        member, revision, stored = found
        current = await rules.read(unit.conn, db, unit.reads.rules, revision)
        checks.member_in_programme(member)
        return cls(unit.conn, stored, member, current.programme, current.levels,
                   tuple(await unit.reads.certificates.get()))


async def _write_order(db: Database, *, method: str, programme_id: str, request: Any, result_type: type[T],
                       now: int, steps: Callable[[_OrderWrite], Awaitable[T]]) -> T:
    """Run ``steps`` once per request_id on the order ``request.order_id`` names, in a unit of work
    whose reads (``_OrderReads``) travel with the idempotency claim in one round trip."""

    async def send_reads(conn: Any) -> _OrderReads:
        order = await orders.send_order_reads(conn, programme_id, request.order_id)
        return _OrderReads(order, await rules.send(conn, db, programme_id),
                           await certificate_store.send_held_by_order(conn, order.member_key, request.order_id))

    async def work(unit: UnitOfWork[_OrderReads]) -> tuple[T, str]:
        write = await _OrderWrite.of(db, unit, request.order_id)
        return await steps(write), write.member.member_id

    return await unit_of_work.run(db, write_key(method, programme_id, request, now), request=request,
                                  result_type=result_type, work=work, send_reads=send_reads)


def _paid(order: Order, doing: str) -> None:
    """The order is paid (captured or completed) and not voided."""
    if order.state == "voided":
        raise FailedPrecondition("order_voided", f"the order was voided; it cannot be {doing}")
    if order.state not in ("captured", "completed"):
        raise FailedPrecondition("order_not_captured", f"the order is {order.state}; only a paid order is {doing}")


def _open_hold(stored: StoredOrder, now: int) -> None:
    """The order still waits for payment and its hold (if any) is open and not past its lifetime."""
    hold = stored.hold
    if hold is not None and (hold.hold.state == "expired" or (hold.hold.state == "open" and now >= hold.hold.expires_at)):
        raise FailedPrecondition("hold_expired", "the hold outlived its lifetime; check the order out again")
    if stored.order.state != "held":
        raise FailedPrecondition("hold_not_open", f"the order is {stored.order.state}, not waiting for payment")


def _held_certificates(w: _OrderWrite, now: int) -> tuple[Certificate, ...]:
    """The certificates the order's checkout holds, all still held for it: when the expiry run
    released them (the hold outlived its lifetime) the order is refused as a lapsed hold is."""
    paying = {p.certificate_id for p in w.order.pricing.certificates if p.points}
    held = w.held_certificates
    if {c.certificate_id for c in held} != paying or any(c.held_until is not None and now >= c.held_until
                                                         for c in held):
        raise FailedPrecondition("hold_expired", "the hold outlived its lifetime; check the order out again")
    return held


def _release_entry(stored: StoredOrder, points: int, lot_points: list[int]) -> Entry:
    assert stored.hold is not None
    lots = [(lot, p) for lot, p in zip(stored.hold.lot_ids, lot_points) if p]
    return Entry("released", points, held_delta=-points, lots=lots,
                 order_id=stored.order.order_id, hold_id=stored.hold.hold.hold_id)


def _points_to_spend(stored: StoredOrder, asked: int | None) -> int:
    """What a capture spends: all that is held, or fewer when asked."""
    held = stored.hold.hold.points if stored.hold else 0
    points = held if asked is None else asked
    if points > held:
        raise FailedPrecondition("capture_must_not_exceed_hold", f"{points} points to spend, {held} held", held=held)
    return points


def _spend(stored: StoredOrder, points: int) -> tuple[list[Entry], orders.HoldClosing | None]:
    """The hold's movements and closing for spending ``points`` of it: spent points come from the
    lots that expire first, the rest goes back to the last ones."""
    hold = stored.hold
    if hold is None:
        return [], None
    held = hold.hold.points
    spent = fill(hold.lot_points, points)
    _, unspent = fill([points, held], held)
    back = fill(hold.lot_points[::-1], unspent)[::-1]
    entries = []
    if points:
        entries.append(Entry("spent", 0, held_delta=-points, order_id=stored.order.order_id, hold_id=hold.hold.hold_id))
    if unspent:
        entries.append(_release_entry(stored, unspent, back))
    if not points:
        return entries, orders.HoldClosing(hold.hold.hold_id, "released")
    kept = [(lot, p) for lot, p in zip(hold.lot_ids, spent) if p]
    return entries, orders.HoldClosing(hold.hold.hold_id, "captured", ([lot for lot, _ in kept], [p for _, p in kept]),
                                       points)


def _earn(member: Member, programme: Programme, order_id: str, earned: int, now: int) -> tuple[list[Entry], NewLot | None]:
    """The movements crediting ``earned`` points: a debt is repaid first, the rest makes a lot
    (pending while the programme delays activation)."""
    repaid, kept = fill([member.debt_points, earned], earned)
    entries = [Entry("debt_repaid", 0, debt_delta=-repaid, order_id=order_id)] if repaid else []
    if not kept:
        return entries, None
    activates_at = now + programme.activation_delay_days * US_PER_DAY
    lot = NewLot("earned", kept, activates_at, lifetime_end(activates_at, programme.point_lifetime_days), order_id)
    return [*entries, Entry("earned", kept, lots=[(NEW_LOT, kept)], order_id=order_id)], lot


async def _capture_order(w: _OrderWrite, asked: int | None, context: Any, *, now: int, at: int) -> Captured:
    """Capture the held order ``w``: spend its held points (``asked``, or all), re-price so earning
    is on the money part at the member's rates at ``at`` (the sale's time), credit the earned points
    (debt first) in a lot whose activation and expiry count from ``at``, and count the purchase at
    ``at`` where the member's status counts it (its level judged ``now``). The movements are the
    ledger's at ``now``."""
    _open_hold(w.stored, now)
    held_certificates = _held_certificates(w, now)
    points = _points_to_spend(w.stored, asked)
    rights = membership.privileges(w.member, w.programme, w.levels, at)
    pricing = reprice(w.order.pricing, points, w.programme, rights)
    spent, closing = _spend(w.stored, points)
    earning, new_lot = _earn(w.member, w.programme, w.order.order_id, pricing.earned_points, at)
    await ledger.post(w.conn, w.member.member_id, now, context, spent + earning, new_lot)
    hold = w.order.hold
    captured = dataclasses.replace(
        w.order, state="captured", pricing=pricing, captured_at=at, spent_points=points,
        earned_points=pricing.earned_points,
        hold=dataclasses.replace(hold, state="captured" if points else "released", points=points or hold.points)
        if hold else None,
    )
    counted = w.programme.purchase_counts_when == "captured" and membership.counts(w.member, w.programme,
                                                                                   captured, at)
    await orders.capture(w.conn, captured, counted, now, closing)
    await certificate_store.spend(w.conn, held_certificates, w.order.order_id, now, context.actor)
    if pricing.terms.discount_source == membership.SOURCE_EVENT:
        await event_bonus.use_next_order_discount(w.conn, w.member.member_id, w.order.order_id,
                                                  pricing.terms.discount_bps, w.order.created_at, at)
    if counted:
        await membership.count_purchase(w.conn, w.programme, w.member, captured, at, w.levels, as_of=now)
    return Captured(captured, points, pricing.earned_points)


async def capture(db: Database, clock: Clock, req: Capture) -> Captured:
    """Spend the held points (all or fewer; the rest goes back), re-price so earning is on the money
    part at the member's rates now, credit the earned points (debt first), record the order's lines
    and count the purchase where the member's status now counts it."""
    programme_id = _check_write(req.request_id, req.programme_id, req.order_id, req.context)
    if req.points is not None and req.points < 0:
        raise InvalidArgument("value_out_of_range", "points must not be negative", field="points")
    if req.points is not None:
        at_most(req.points, MAX_AMOUNT, "points")
    now = clock.now_us()

    async def steps(w: _OrderWrite) -> Captured:
        return await _capture_order(w, req.points, req.context, now=now, at=now)

    return await _write_order(db, method="Capture", programme_id=programme_id, request=req, result_type=Captured,
                              now=now, steps=steps)


async def cancel(db: Database, clock: Clock, req: Cancel) -> Cancelled:
    """Before capture: release the hold to the very lots it came from."""
    programme_id = _check_write(req.request_id, req.programme_id, req.order_id, req.context)
    now = clock.now_us()

    async def steps(w: _OrderWrite) -> Cancelled:
        order, hold = w.order, w.stored.hold
        if order.state != "held":
            raise FailedPrecondition("hold_not_open", f"the order is {order.state}; only a held order can be cancelled")
        released = 0
        if hold is not None and hold.hold.state == "open":
            released = hold.hold.points
            await ledger.post(w.conn, order.member_id, now, req.context,
                              [_release_entry(w.stored, released, list(hold.lot_points))])
            await orders.close_hold(w.conn, order.member_id, orders.HoldClosing(hold.hold.hold_id, "released"), now)
        if w.held_certificates:
            await certificate_store.release(w.conn, order.member_id, order.order_id, now, req.context.actor)
        await orders.set_state(w.conn, order.member_id, programme_id, order.order_id, "cancelled", now)
        cancelled = dataclasses.replace(
            order, state="cancelled", hold=dataclasses.replace(hold.hold, state="released") if hold else None
        )
        return Cancelled(cancelled, released)

    return await _write_order(db, method="Cancel", programme_id=programme_id, request=req, result_type=Cancelled,
                              now=now, steps=steps)


def _refund_units(req: Refund, lines: list[orders.StoredLine]) -> list[tuple[orders.StoredLine, int]]:
    """(line, units to refund now) for the lines asked, or every unit not yet refunded."""
    if not req.lines:
        wanted = [(line, line.quantity - line.refunded_quantity) for line in lines]
        wanted = [(line, k) for line, k in wanted if k]
        if not wanted:
            raise FailedPrecondition("refund_must_not_exceed_captured", "every unit of the order was refunded before")
        return wanted
    by_id = {line.line_id: line for line in lines}
    wanted = []
    for i, asked in enumerate(req.lines):
        line = by_id.get(asked.line_id)
        if line is None:
            raise NotFound("order_line_not_found", f"the order has no line {asked.line_id!r}", field=f"lines[{i}]")
        if asked.quantity > line.quantity - line.refunded_quantity:
            raise FailedPrecondition(
                "refund_must_not_exceed_captured",
                f"line {asked.line_id!r}: {asked.quantity} units asked, {line.quantity - line.refunded_quantity} refundable",
            )
        wanted.append((line, asked.quantity))
    return wanted


def _check_refund(req: Refund) -> str:
    programme_id = _check_write(req.request_id, req.programme_id, req.order_id, req.context)
    if len(req.lines) > checks.MAX_LINES:
        raise InvalidArgument("too_many_items", f"at most {checks.MAX_LINES} lines", field="lines")
    seen = set()
    for i, line in enumerate(req.lines):
        checks.text_arg(line.line_id, f"lines[{i}].line_id", max_len=checks.MAX_ID, required=True)
        if line.quantity < 1:
            raise InvalidArgument("value_out_of_range", "quantity must be at least 1", field=f"lines[{i}].quantity")
        at_most(line.quantity, MAX_QUANTITY, f"lines[{i}].quantity")
        if line.line_id in seen:
            raise InvalidArgument("value_out_of_range", f"line {line.line_id!r} appears twice", field=f"lines[{i}]")
        seen.add(line.line_id)
    return programme_id


async def _return_spent(w: _OrderWrite, returned: int, now: int, ctx: Any, refund_id: str) -> int:
    """Give ``returned`` spent points back to the lots they came from, in proportion to what each
    can still take back; what was given back (0 when the order spent none)."""
    hold = w.stored.hold
    if not returned or hold is None or hold.hold.state != "captured":
        return 0
    lot_ids, room = await orders.returnable(w.conn, w.member.member_id, hold.hold.hold_id, w.order.order_id)
    parts = calc.spread(returned, int64s(room))
    await ledger.post(w.conn, w.member.member_id, now, ctx, [Entry(
        "refund_return", returned, lots=[(lot, p) for lot, p in zip(lot_ids, parts) if p],
        order_id=w.order.order_id, refund_id=refund_id,
    )])
    return returned


async def _return_to_certificates(w: _OrderWrite, amount: int, now: int, actor: str) -> int:
    """Give ``amount`` back to the certificates that paid the order (the last drawn first); a
    certificate whose life ended (cancelled, expired) takes nothing back: its part is forfeited.
    What was given back."""
    if not amount:
        return 0
    order_id, member_id = w.order.order_id, w.member.member_id
    parts = certificates.give_back_parts(w.order.pricing.certificates,
                                         await certificate_store.returned_of(w.conn, member_id, order_id), amount)
    alive = {c.certificate_id for c in await certificate_store.of_ids(w.conn, member_id, [cid for cid, _ in parts])
             if certificates.takes_back(c, now)}
    parts = [(cid, p) for cid, p in parts if cid in alive]
    await certificate_store.give_back(w.conn, member_id, order_id, parts, now, actor)
    return sum(p for _, p in parts)


def _shortfall_policy(w: _OrderWrite, clawback: int, shortfall: int, refund_id: str) -> tuple[int, int, list[Entry]]:
    """What the programme's negative-balance policy makes of points that could not be taken back:
    (shortfall kept, debt incurred, its movements); a refusal under ``refuse`` or past the debt limit."""
    programme, member = w.programme, w.member
    if not shortfall or programme.negative_balance_policy == "take_available":
        return shortfall, 0, []
    if programme.negative_balance_policy == "refuse":
        raise FailedPrecondition("clawback_exceeds_balance",
                                 f"{shortfall} of the {clawback} points to take back were already spent",
                                 shortfall=shortfall)
    # debt: the room under the limit is what of the limit the current debt leaves (0 if above it).
    _, room = fill([member.debt_points, programme.debt_limit_points], programme.debt_limit_points)
    if shortfall > room:
        raise FailedPrecondition("debt_limit_exceeded",
                                 f"{shortfall} points of debt asked, {room} left under the limit of "
                                 f"{programme.debt_limit_points}", shortfall=shortfall, room=room)
    return 0, shortfall, [Entry("debt_incurred", 0, debt_delta=shortfall, order_id=w.order.order_id,
                                refund_id=refund_id)]


async def refund(db: Database, clock: Clock, req: Refund) -> Refunded:
    """Refund lines (or all that is left): take back the points earned on them in proportion (the
    order's own lot first), give back the points spent on them when the programme says so, apply
    the negative-balance policy to what cannot be taken back, and count only what is left."""
    programme_id = _check_refund(req)
    now = clock.now_us()
    refund_id = str(uuid.uuid4())

    async def steps(w: _OrderWrite) -> Refunded:
        order = w.order
        _paid(order, "refunded")
        wanted = _refund_units(req, await orders.lines(w.conn, order.member_id, programme_id, order.order_id))

        def share(value: str) -> int:
            # calc.prorate keeps a running cap: repeated partial refunds never exceed the line's value.
            return sum(calc.prorate(getattr(line, value), line.refunded_quantity, k, line.quantity) for line, k in wanted)

        money, clawback = share("money_due_minor"), share("earned_points")
        to_points, to_certificates = certificates.split_return(
            share("points") if w.programme.refund_returns_spent_points else 0,
            order.spent_points - sum(r.returned_points for r in order.refunds))
        returned = await _return_spent(w, to_points, now, req.context, refund_id)
        certificate_returned = await _return_to_certificates(w, to_certificates, now, req.context.actor)
        # After the return, so points just given back can cover the take-back.
        taken, shortfall = claw(await ledger.lots(w.conn, w.member.member_id), clawback, now, w.stored.earned_lot_id)
        taken_total = sum(p for _, p in taken)
        entries = [Entry("reversed", -taken_total, lots=[(lot, -p) for lot, p in taken], order_id=order.order_id,
                         refund_id=refund_id)] if taken else []
        shortfall, debt, owed = _shortfall_policy(w, clawback, shortfall, refund_id)
        if entries or owed:
            await ledger.post(w.conn, w.member.member_id, now, req.context, entries + owed)
        record = RefundRecord(
            refund_id=refund_id, lines=tuple(RefundLine(line.line_id, k) for line, k in wanted), money_minor=money,
            clawback_points=taken_total, returned_points=returned, shortfall_points=shortfall,
            debt_points=debt, created_at=now, certificate_returned_points=certificate_returned,
        )
        await orders.insert_refund(w.conn, programme_id, order.order_id, w.member.member_id, record,
                                   [line.line_no for line, _ in wanted])
        refunded = dataclasses.replace(order, refunds=(*order.refunds, record))
        if w.stored.counted:
            await membership.uncount_purchase(w.conn, w.programme, w.member, order, membership.amounts_left(refunded),
                                              now)
        return Refunded(refunded, record)

    return await _write_order(db, method="Refund", programme_id=programme_id, request=req, result_type=Refunded,
                              now=now, steps=steps)


async def complete(db: Database, clock: Clock, req: Complete) -> Order:
    """Mark a captured order completed; where purchases count on completion, count what refunds
    left of it now."""
    programme_id = _check_write(req.request_id, req.programme_id, req.order_id, req.context)
    now = clock.now_us()

    async def steps(w: _OrderWrite) -> Order:
        order = w.order
        if order.state != "captured":
            _paid(order, "completed")
            raise FailedPrecondition("order_not_captured", "the order was completed before")
        await orders.set_state(w.conn, order.member_id, programme_id, order.order_id, "completed", now)
        if (not w.stored.counted and w.programme.purchase_counts_when == "completed"
                and membership.counts(w.member, w.programme, order, now)):
            await orders.set_counted(w.conn, order.member_id, programme_id, order.order_id, True)
            await membership.count_purchase(w.conn, w.programme, w.member, order, now, w.levels)
        return dataclasses.replace(order, state="completed")

    return await _write_order(db, method="CompleteOrder", programme_id=programme_id, request=req, result_type=Order,
                              now=now, steps=steps)


async def void(db: Database, clock: Clock, req: Void) -> Voided:
    """Void a paid order: what it still counts for leaves the purchase total, the accumulative
    rate and the purchases levels and visits are reckoned from; its points stay as they are."""
    programme_id = _check_write(req.request_id, req.programme_id, req.order_id, req.context)
    checks.text_arg(req.comment, "comment", max_len=1000)
    now = clock.now_us()

    async def steps(w: _OrderWrite) -> Voided:
        order = w.order
        _paid(order, "voided")
        await orders.void(w.conn, w.member.member_id, programme_id, order.order_id, now)
        uncounted = sum(membership.amounts_left(order).values()) if w.stored.counted else 0
        if w.stored.counted:
            await membership.uncount_purchase(w.conn, w.programme, w.member, order, {}, now)
        await history.add_event(w.conn, w.member.member_id, "orders", "order_voided", now, actor=req.context.actor,
                                comment=req.comment, details={"order_id": order.order_id, "uncounted_minor": uncounted})
        return Voided(dataclasses.replace(order, state="voided"), uncounted)

    return await _write_order(db, method="VoidOrder", programme_id=programme_id, request=req, result_type=Voided,
                              now=now, steps=steps)


async def get_order(db: Database, programme_id: str, order_id: str) -> Order:
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    checks.text_arg(order_id, "order_id", max_len=checks.MAX_ID, required=True)
    async with db.connection() as conn:
        stored = await orders.get(conn, programme_id, order_id)
    if stored is None:
        raise NotFound("order_not_found", f"no order {order_id!r} in this programme")
    return stored.order
