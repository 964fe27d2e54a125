"""A till's sequence with loyalty-client: identify, quote, checkout (hold points), pay, capture, refund; a refusal.

Run: LOYALTY_API_KEY=... python till.py TARGET PROGRAMME_ID PHONE
Prints one JSON object with what it saw (tests/clients/test_standalone.py runs it in a fresh venv).
"""

from __future__ import annotations

import json
import os
import sys
import uuid

import grpc

from loyalty.client import LoyaltyClient
from loyalty.errors import refusal
from loyalty.v1 import checkout_pb2, common_pb2, member_pb2


def main(target: str, programme_id: str, phone: str) -> dict[str, object]:
    with LoyaltyClient(target, api_key=os.environ["LOYALTY_API_KEY"]) as client:
        # 1. Identify the member by phone (or card number + secret).
        member = client.members.LookupMember(
            member_pb2.LookupMemberRequest(programme_id=programme_id, member=common_pb2.MemberRef(phone=phone))
        ).member
        who = common_pb2.MemberRef(member_id=member.member_id)
        lines = [checkout_pb2.BasketLine(sku="COFFEE-250", category="coffee", quantity=2, unit_price_minor=450)]
        # 2. Quote: what points may pay and what the basket earns. Reads are safe to repeat.
        pricing = client.checkout.Quote(
            checkout_pb2.QuoteRequest(programme_id=programme_id, member=who, lines=lines, requested_points=3)
        ).pricing
        # 3. Checkout: holds the points. One request_id per attempt of the till's action; the client
        #    keeps it across its own retries, so a lost answer never holds twice.
        order_id = f"till-7-{uuid.uuid4().hex[:12]}"
        order = client.checkout.Checkout(
            checkout_pb2.CheckoutRequest(
                request_id=str(uuid.uuid4()), programme_id=programme_id, order_id=order_id, member=who,
                lines=lines, requested_points=pricing.points_applied,
            )
        ).order
        # 4. The card payment of order.pricing.money_due_minor runs here; then 5. capture (or Cancel).
        captured = client.checkout.Capture(
            checkout_pb2.CaptureRequest(request_id=str(uuid.uuid4()), programme_id=programme_id, order_id=order_id)
        )
        # Later, the customer brings one coffee back: refund that unit of line 1.
        refund = client.checkout.Refund(checkout_pb2.RefundRequest(
            request_id=str(uuid.uuid4()), programme_id=programme_id, order_id=order_id,
            lines=[checkout_pb2.RefundLine(line_id="1", quantity=1)],
        )).refund
        # A refusal: the reason and the bad field say what to fix (docs/errors.md).
        try:
            client.checkout.Quote(checkout_pb2.QuoteRequest(
                programme_id=programme_id, member=who,
                lines=[checkout_pb2.BasketLine(sku="X", quantity=1, unit_price_minor=-1)],
            ))
            refused: dict[str, object] = {}
        except grpc.RpcError as err:
            why = refusal(err)
            refused = {"code": why.code.name, "reason": why.reason, "fields": [v.field for v in why.field_violations]}
        return {
            "member_id": member.member_id,
            "points_applied": pricing.points_applied,
            "held": order.hold.points,
            "spent": captured.spent_points,
            "earned": captured.earned_points,
            "refunded_lines": [[line.line_id, line.quantity] for line in refund.lines],
            "refunded_money": refund.money_minor,
            "refused": refused,
        }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
