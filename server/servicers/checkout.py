"""CheckoutService: quote, checkout, capture, cancel, refund, complete, void, get an order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from grpc import aio

from loyalty.v1 import checkout_pb2, checkout_pb2_grpc
from loyalty_core.errors import LoyaltyError
from loyalty_core.model import (
    POINTS_BLOCKED, BasketLine, Cancel, Capture, Captured, Checkout, Complete, Order, PostSale, Pricing, Quote, Refund,
    RefundLine, RefundRecord, Void,
)
from loyalty_core.service import checkout, offline
from server.servicers.convert import member_id_trusted, member_ref, micros, timestamp, write_context
from server.servicers.streams import batches, item_refusal

ORDER_STATE = {
    "held": checkout_pb2.ORDER_STATE_HELD,
    "captured": checkout_pb2.ORDER_STATE_CAPTURED,
    "cancelled": checkout_pb2.ORDER_STATE_CANCELLED,
    "completed": checkout_pb2.ORDER_STATE_COMPLETED,
    "voided": checkout_pb2.ORDER_STATE_VOIDED,
}
POINTS_BLOCKED_ENUM = {"": checkout_pb2.POINTS_BLOCKED_UNSPECIFIED} | {
    name: checkout_pb2.PointsBlocked.Value(f"POINTS_BLOCKED_{name.upper()}") for name in POINTS_BLOCKED
}
DISCOUNT_SOURCE = {
    "none": checkout_pb2.DISCOUNT_SOURCE_NONE,
    "personal": checkout_pb2.DISCOUNT_SOURCE_PERSONAL,
    "accumulative": checkout_pb2.DISCOUNT_SOURCE_ACCUMULATIVE,
    "level": checkout_pb2.DISCOUNT_SOURCE_LEVEL,
    "event": checkout_pb2.DISCOUNT_SOURCE_EVENT,
}


def quote_of(request: Any, certificate_codes: Any = ()) -> Quote:
    """QuoteRequest, CheckoutRequest and PostSaleRequest share these fields; the first two take
    ``certificate_codes`` too."""
    return Quote(
        programme_id=request.programme_id, member=member_ref(request.member),
        lines=tuple(BasketLine(x.line_id, x.sku, x.category, x.quantity, x.unit_price_minor, x.line_discount_minor)
                    for x in request.lines),
        store_id=request.store_id, channel=request.channel, requested_points=request.requested_points,
        currency_code=request.currency_code, certificate_codes=tuple(certificate_codes),
    )


def pricing(p: Pricing) -> checkout_pb2.Pricing:
    return checkout_pb2.Pricing(
        currency_code=p.currency_code,
        lines=[checkout_pb2.LinePricing(
            line_id=x.line_id, sku=x.sku, category=x.category, quantity=x.quantity, gross_minor=x.gross_minor,
            line_discount_minor=x.line_discount_minor, order_discount_minor=x.order_discount_minor,
            net_minor=x.net_minor, points=x.points, points_money_minor=x.points_money_minor,
            money_due_minor=x.money_due_minor, earned_points=x.earned_points,
        ) for x in p.lines],
        gross_minor=p.gross_minor, line_discount_minor=p.line_discount_minor,
        order_discount_minor=p.order_discount_minor, net_minor=p.net_minor, points_max=p.points_max,
        points_applied=p.points_applied, points_money_minor=p.points_money_minor, money_due_minor=p.money_due_minor,
        earned_points=p.earned_points, discount_bps=p.discount_bps,
        discount_source=DISCOUNT_SOURCE[p.discount_source], member_id=p.member_id,
        certificate_points=p.certificate_points,
        certificates=[checkout_pb2.CertificatePayment(certificate_id=c.certificate_id, points=c.points,
                                                      expire_time=timestamp(c.expires_at)) for c in p.certificates],
    )


def refund_record(r: RefundRecord) -> checkout_pb2.RefundRecord:
    return checkout_pb2.RefundRecord(
        refund_id=r.refund_id, lines=[checkout_pb2.RefundLine(line_id=x.line_id, quantity=x.quantity) for x in r.lines],
        money_minor=r.money_minor, clawback_points=r.clawback_points, returned_points=r.returned_points,
        shortfall_points=r.shortfall_points, debt_points=r.debt_points, create_time=timestamp(r.created_at),
        certificate_returned_points=r.certificate_returned_points,
    )


def order(o: Order) -> checkout_pb2.Order:
    return checkout_pb2.Order(
        programme_id=o.programme_id, order_id=o.order_id, member_id=o.member_id, state=ORDER_STATE[o.state],
        store_id=o.store_id, channel=o.channel, pricing=pricing(o.pricing),
        hold=checkout_pb2.Hold(hold_id=o.hold.hold_id, points=o.hold.points, expire_time=timestamp(o.hold.expires_at))
        if o.hold else None,
        refunds=[refund_record(r) for r in o.refunds], create_time=timestamp(o.created_at),
        capture_time=timestamp(o.captured_at),
    )


def captured(done: Captured) -> dict[str, Any]:
    """The fields CaptureResponse and PostSaleResponse share."""
    return {"order": order(done.order), "spent_points": done.spent_points, "earned_points": done.earned_points}


def post_sale_of(request: Any, context: aio.ServicerContext) -> PostSale:
    """PostSaleRequest (alone, or as a PostSales stream's sale) as the domain's request."""
    return PostSale(request.request_id, request.order_id, quote_of(request),
                    write_context(request.context, context, request.request_id), request.spend_code,
                    member_id_trusted(), micros(request, "sale_time") or 0)


class CheckoutServicer(checkout_pb2_grpc.CheckoutServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.db, self.clock = deps.db, deps.clock

    async def Quote(self, request: Any, context: aio.ServicerContext) -> Any:
        answer = await checkout.quote(self.db, self.clock, quote_of(request, request.certificate_codes))
        return checkout_pb2.QuoteResponse(pricing=pricing(answer.pricing),
                                          points_blocked=POINTS_BLOCKED_ENUM[answer.points_blocked])

    async def Checkout(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Checkout(request.request_id, request.order_id, quote_of(request, request.certificate_codes),
                       write_context(request.context, context, request.request_id), request.spend_code,
                       member_id_trusted())
        return checkout_pb2.CheckoutResponse(order=order(await checkout.checkout(self.db, self.clock, req)))

    async def Capture(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Capture(request.request_id, request.programme_id, request.order_id,
                      request.points if request.HasField("points") else None,
                      write_context(request.context, context, request.request_id))
        return checkout_pb2.CaptureResponse(**captured(await checkout.capture(self.db, self.clock, req)))

    async def PostSale(self, request: Any, context: aio.ServicerContext) -> Any:
        return checkout_pb2.PostSaleResponse(
            **captured(await offline.post_sale(self.db, self.clock, post_sale_of(request, context))))

    async def PostSales(self, requests: AsyncIterator[Any], context: aio.ServicerContext) -> AsyncIterator[Any]:
        """Each batch of the sales that arrived, posted in one transaction, answered in order; a sale
        the guard refused (limits, programme) answered with its refusal in its place."""
        index = 0
        async for batch in batches(requests, offline.MAX_SALES_PER_TRANSACTION):
            admitted = [r for r in batch if not isinstance(r, LoyaltyError)]
            posted = iter(await offline.post_sales(self.db, self.clock,
                                                   [post_sale_of(r.sale, context) for r in admitted]))
            for request in batch:
                outcome = request if isinstance(request, LoyaltyError) else next(posted)
                answer = checkout_pb2.PostSalesResponse(
                    index=index, request_id="" if isinstance(request, LoyaltyError) else request.sale.request_id)
                if isinstance(outcome, LoyaltyError):
                    answer.refusal.CopyFrom(item_refusal(outcome, "sale."))
                else:
                    answer.posted.CopyFrom(checkout_pb2.PostSaleResponse(**captured(outcome)))
                index += 1
                yield answer

    async def Cancel(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Cancel(request.request_id, request.programme_id, request.order_id,
                     write_context(request.context, context, request.request_id))
        done = await checkout.cancel(self.db, self.clock, req)
        return checkout_pb2.CancelResponse(order=order(done.order), released_points=done.released_points)

    async def Refund(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Refund(request.request_id, request.programme_id, request.order_id,
                     tuple(RefundLine(x.line_id, x.quantity) for x in request.lines),
                     write_context(request.context, context, request.request_id))
        done = await checkout.refund(self.db, self.clock, req)
        return checkout_pb2.RefundResponse(order=order(done.order), refund=refund_record(done.refund))

    async def CompleteOrder(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Complete(request.request_id, request.programme_id, request.order_id,
                       write_context(None, context, request.request_id))
        return checkout_pb2.CompleteOrderResponse(order=order(await checkout.complete(self.db, self.clock, req)))

    async def VoidOrder(self, request: Any, context: aio.ServicerContext) -> Any:
        req = Void(request.request_id, request.programme_id, request.order_id, request.comment,
                   write_context(request.context, context, request.request_id))
        done = await checkout.void(self.db, self.clock, req)
        return checkout_pb2.VoidOrderResponse(order=order(done.order), uncounted_minor=done.uncounted_minor)

    async def GetOrder(self, request: Any, context: aio.ServicerContext) -> Any:
        return checkout_pb2.GetOrderResponse(order=order(await checkout.get_order(self.db, request.programme_id,
                                                                                  request.order_id)))
