"""An e-commerce checkout with loyalty-client: cart quotes, an order whose payment fails (cancel), one
whose payment succeeds (capture, the payment webhook delivered twice), delivery (complete) and a return
(refund), every write under a request_id the shop can derive again after a crash.

Run: LOYALTY_API_KEY=... python ecommerce.py TARGET PROGRAMME_ID MEMBER_ID
Prints one JSON object with what it saw (tests/clients/test_integration_examples.py runs it against a server).
"""

from __future__ import annotations

import json
import os
import sys
import uuid

from loyalty.client import LoyaltyClient
from loyalty.v1 import checkout_pb2, common_pb2

def request_id(order_id: str, action: str) -> str:
    """The same request_id however often the shop's worker comes back to an action of an order, and
    another for every other action. request_ids are unique per programme, as order ids are."""
    return f"{order_id}/{action}"


def main(target: str, programme_id: str, member_id: str) -> dict[str, object]:
    # A web request waits for no one: 2 s per attempt, and the client's retries within that budget.
    with LoyaltyClient(target, api_key=os.environ["LOYALTY_API_KEY"], timeout_s=2.0) as client:
        who = common_pb2.MemberRef(member_id=member_id)  # the shop stored it when the account was linked
        cart = [
            checkout_pb2.BasketLine(line_id="1", sku="BEANS-1KG", category="coffee", quantity=1, unit_price_minor=1800),
            checkout_pb2.BasketLine(line_id="2", sku="MUG", category="home", quantity=2, unit_price_minor=900),
        ]
        # 1. The cart page quotes as the cart changes: a read, repeated freely, no request_id.
        pricing = client.checkout.Quote(checkout_pb2.QuoteRequest(
            programme_id=programme_id, member=who, channel="web", lines=cart, requested_points=5)).pricing

        def place(order_id: str) -> checkout_pb2.Order:
            """2. Placing the order holds the points until the payment's outcome is known."""
            return client.checkout.Checkout(checkout_pb2.CheckoutRequest(
                request_id=request_id(order_id, "checkout"), programme_id=programme_id, order_id=order_id,
                member=who, channel="web", lines=cart, requested_points=pricing.points_applied)).order

        # 3a. The first order's card is declined: cancel, and the held points go back.
        declined = f"web-{uuid.uuid4().hex[:10]}"
        place(declined)
        cancelled = client.checkout.Cancel(checkout_pb2.CancelRequest(
            request_id=request_id(declined, "cancel"), programme_id=programme_id, order_id=declined))

        # 3b. The customer pays with another card: a new order. The shop's worker crashed after
        #     sending Checkout and sends it again: the same request_id gives the same order and hold.
        paid = f"web-{uuid.uuid4().hex[:10]}"
        held = place(paid)
        again = place(paid)

        # 4. The payment provider's webhook says "paid", twice: capture once, answer twice.
        def capture() -> checkout_pb2.CaptureResponse:
            return client.checkout.Capture(checkout_pb2.CaptureRequest(
                request_id=request_id(paid, "capture"), programme_id=programme_id, order_id=paid))

        captured, captured_again = capture(), capture()

        # 5. Delivered: completing counts the purchase where the programme counts on completion.
        completed = client.checkout.CompleteOrder(checkout_pb2.CompleteOrderRequest(
            request_id=request_id(paid, "complete"), programme_id=programme_id, order_id=paid)).order

        # 6. One mug comes back: a refund per return, its request_id named by the shop's return number.
        #    It pays back the mug's share of the money paid (and of the points, where the programme
        #    returns spent points), and takes back the points the mug earned.
        refunded = client.checkout.Refund(checkout_pb2.RefundRequest(
            request_id=request_id(paid, "return/R-1"), programme_id=programme_id, order_id=paid,
            lines=[checkout_pb2.RefundLine(line_id="2", quantity=1)])).refund

        return {
            "points_applied": pricing.points_applied,
            "released": cancelled.released_points,
            "same_hold_on_resend": held.hold.hold_id == again.hold.hold_id,
            "captured_once": captured == captured_again and captured.spent_points == held.hold.points,
            "completed": checkout_pb2.OrderState.Name(completed.state),
            "refund_money_minor": refunded.money_minor,
            "refund_returned_points": refunded.returned_points,
        }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
