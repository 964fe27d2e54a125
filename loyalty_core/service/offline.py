"""Sales made while the till was offline, posted later: checkout and capture in one transaction,
the points that pay drawn from the lots as they are now, the rest at the sale's time
(docs/ledger.md "Posted sales")."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import psycopg.errors

from loyalty_core.clock import Clock
from loyalty_core.errors import FailedPrecondition, InvalidArgument, LoyaltyError, Unavailable
from loyalty_core.model import US_PER_DAY, Captured, MemberRef, PostSale
from loyalty_core.service import spending
from loyalty_core.service.checkout import (
    _BasketReads, _capture_order, _check_quote, _check_write, _hold_order, _new_order, _OrderWrite, _read_basket,
    _send_basket_reads,
)
from loyalty_core.service.idempotent import write_key
from loyalty_core.service.lots import lifetime_end
from loyalty_core.service.members import verify_card
from loyalty_core.service.pricing import quote_for
from loyalty_core.store import unit_of_work
from loyalty_core.store.db import MEMBER_BUSY, UNIQUE_VIOLATIONS, Database, violated_constraint
from loyalty_core.store.orders import StoredOrder
from loyalty_core.store.unit_of_work import UnitOfWork

# How late a sale may be posted: a till offline for longer is a back-office import, not a backlog.
MAX_SALE_AGE_DAYS = 30
# How many posted sales share a transaction: enough that BEGIN, COMMIT and its flush cost little
# per sale, few enough that the members a batch locks wait for it for tens of milliseconds only,
# and under the 64 subtransactions (a savepoint each) PostgreSQL caches per backend: past them,
# every other transaction's snapshot looks subtransactions up in pg_subtrans.
MAX_SALES_PER_TRANSACTION = 50


def _check_sale_time(sale_time: int, now: int) -> None:
    if sale_time <= 0:
        raise InvalidArgument("field_required", "sale_time is when the sale was made; it is required",
                              field="sale_time")
    if sale_time > now:
        raise InvalidArgument("sale_time_in_future", "sale_time is after the server's time", field="sale_time")
    if sale_time < now - MAX_SALE_AGE_DAYS * US_PER_DAY:
        raise InvalidArgument("sale_time_too_old", f"a sale is posted at most {MAX_SALE_AGE_DAYS} days after it was made",
                              field="sale_time", max_age_days=MAX_SALE_AGE_DAYS)


@dataclasses.dataclass(frozen=True)
class _SaleWrite:
    """A posted sale checked and ready to run: its programme, member and unit of work."""

    programme_id: str
    ref: MemberRef
    order_id: str
    write: unit_of_work.Write[Captured, _BasketReads]


async def _sale_write(db: Database, clock: Clock, req: PostSale) -> _SaleWrite:
    """What PostSale checks before its transaction (the fields, the card's secret, the spend code),
    and its write: checkout and capture at once, priced, earned and counted at ``sale_time``, paid
    from the points usable now (refused with what is available when they are no longer there)."""
    programme_id = _check_write(req.request_id, req.quote.programme_id, req.order_id, req.context)
    _, ref = _check_quote(req.quote)
    spending.spend_code_arg(req.spend_code)
    now = clock.now_us()
    _check_sale_time(req.sale_time, now)
    verified = await verify_card(db, clock, programme_id, ref)
    code = await spending.check_spend_code(db, clock, programme_id, ref, req.spend_code)
    at = req.sale_time

    async def work(unit: UnitOfWork[_BasketReads]) -> tuple[Captured, str]:
        conn = unit.conn
        programme, member, lots, levels = await _read_basket(db, unit, ref, verified, req.order_id)
        if lifetime_end(at + programme.activation_delay_days * US_PER_DAY, programme.point_lifetime_days) <= now:
            raise FailedPrecondition("sale_older_than_point_lifetime",
                                     "points earned on this sale would have expired already")
        pricing, rights, available = quote_for(programme, member, levels, lots, req.quote, at,
                                               await unit.reads.event_discount_bps.get(), lots_at=now)
        order, hold = await _hold_order(conn, programme, member, lots, pricing, rights, available, req, ref, code,
                                        card_secret_checked=verified is not None, now=now, created_at=at)
        held = _OrderWrite(conn, StoredOrder(order, hold, None, False), member, programme, levels)
        return await _capture_order(held, None, req.context, now=now, at=at), member.member_id

    # The event discount read is the one the member had when buying.
    send_reads = functools.partial(_send_basket_reads, db=db, programme_id=programme_id, ref=ref,
                                   order_id=req.order_id, now=at)
    return _SaleWrite(programme_id, ref, req.order_id,
                      unit_of_work.Write(write_key("PostSale", programme_id, req, now), req, Captured, work, send_reads))


async def post_sale(db: Database, clock: Clock, req: PostSale) -> Captured:
    """Check out and capture an offline sale at once (``_sale_write``), in a transaction of its own."""
    sale = await _sale_write(db, clock, req)
    w = sale.write
    return await _new_order(db, sale.programme_id, sale.ref, sale.order_id,
                            lambda: unit_of_work.run(db, w.key, request=w.request, result_type=Captured, work=w.work,
                                                     send_reads=w.send_reads))


def _member_key(ref: MemberRef) -> tuple[str, str]:
    return ("id", ref.member_id) if ref.member_id else ("phone", ref.phone) if ref.phone else ("card", ref.card_number)


async def _posted_alone(db: Database, clock: Clock, req: PostSale) -> Captured | LoyaltyError:
    try:
        return await post_sale(db, clock, req)
    except LoyaltyError as err:
        return err


async def post_sales(db: Database, clock: Clock, reqs: Sequence[PostSale]) -> list[Captured | LoyaltyError]:
    """Post a backlog of offline sales (at most MAX_SALES_PER_TRANSACTION), each as ``post_sale``
    would, in one transaction: per sale, in order, what it captured or the domain error that refused
    it. Sales of one member are applied in the order given; sales of different members in the order
of their member (docs/ledger.md "Posted sales").

    When the batch meets a database error no sale's rules foresee (two tills racing for one order id
    meet the order id's unique key) or waits too long for a member another call holds, it is rolled
    back whole and each of its sales is posted in a transaction of its own, where the error is that
    sale's alone (docs/ledger.md "Posted sales")."""
    if len(reqs) > MAX_SALES_PER_TRANSACTION:
        raise ValueError(f"at most {MAX_SALES_PER_TRANSACTION} sales per call")
    outcomes: list[Captured | LoyaltyError | None] = [None] * len(reqs)
    ready: list[tuple[int, _SaleWrite]] = []
    for i, req in enumerate(reqs):
        try:
            ready.append((i, await _sale_write(db, clock, req)))
        except LoyaltyError as err:
            outcomes[i] = err
    # Run by member (stable: one member's sales keep their order), so that two batches lock the
    # members they share in the same order and do not deadlock.
    ready.sort(key=lambda item: (item[1].programme_id, _member_key(item[1].ref)))
    try:
        done = await unit_of_work.run_many(db, [sale.write for _, sale in ready])
    except (psycopg.errors.IntegrityError, *UNIQUE_VIOLATIONS, Unavailable) as err:
        if isinstance(err, Unavailable) and err.code != MEMBER_BUSY:
            raise
        # Citus relays a shard's unique violation as an internal error: only that one is a race.
        if isinstance(err, psycopg.errors.InternalError_) and violated_constraint(err) is None:
            raise
        done = [await _posted_alone(db, clock, reqs[i]) for i, _ in ready]
    for (i, _), outcome in zip(ready, done):
        outcomes[i] = outcome
    return outcomes  # type: ignore[return-value]
