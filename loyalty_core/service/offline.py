"""Sales made while the till was offline, posted later: checkout and capture in one transaction,
the points that pay drawn from the lots as they are now, the rest at the sale's time
(docs/ledger.md "Posted sales")."""

from __future__ import annotations

import functools

from loyalty_core.clock import Clock
from loyalty_core.errors import FailedPrecondition, InvalidArgument
from loyalty_core.model import US_PER_DAY, Captured, PostSale
from loyalty_core.service import checks, spending
from loyalty_core.service.checkout import (
    _BasketReads, _capture_order, _check_quote, _check_write, _hold_order, _new_order, _OrderWrite, _read_basket,
    _send_basket_reads,
)
from loyalty_core.service.idempotent import write_key
from loyalty_core.service.lots import lifetime_end
from loyalty_core.service.members import verify_card
from loyalty_core.service.pricing import quote_for
from loyalty_core.store import unit_of_work
from loyalty_core.store.db import Database
from loyalty_core.store.orders import StoredOrder
from loyalty_core.store.unit_of_work import UnitOfWork

# How late a sale may be posted: a till offline for longer is a back-office import, not a backlog.
MAX_SALE_AGE_DAYS = 30


def _check_sale_time(sale_time: int, now: int) -> None:
    if sale_time <= 0:
        raise InvalidArgument("field_required", "sale_time is when the sale was made; it is required",
                              field="sale_time")
    if sale_time > now:
        raise InvalidArgument("sale_time_in_future", "sale_time is after the server's time", field="sale_time")
    if sale_time < now - MAX_SALE_AGE_DAYS * US_PER_DAY:
        raise InvalidArgument("sale_time_too_old", f"a sale is posted at most {MAX_SALE_AGE_DAYS} days after it was made",
                              field="sale_time", max_age_days=MAX_SALE_AGE_DAYS)


async def post_sale(db: Database, clock: Clock, req: PostSale) -> Captured:
    """Check out and capture an offline sale at once: priced, earned and counted at ``sale_time``,
    paid from the points usable now (refused with what is available when they are no longer there)."""
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
    return await _new_order(db, programme_id, ref, req.order_id,
                            lambda: unit_of_work.run(db, write_key("PostSale", programme_id, req, now), request=req,
                                                     result_type=Captured, work=work, send_reads=send_reads))
