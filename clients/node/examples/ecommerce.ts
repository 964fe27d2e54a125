// An e-commerce checkout with loyalty-client, as docs/examples/ecommerce.py does it in Python: cart
// quotes, an order whose payment fails (cancel), one whose payment succeeds (capture, the webhook
// delivered twice), delivery (complete) and a return (refund), every write under a request_id the
// shop can derive again after a crash.
//
// Run: npm run build && LOYALTY_API_KEY=... node dist/examples/ecommerce.js TARGET PROGRAMME_ID MEMBER_ID
// Prints one JSON object with what it saw (tests/clients/test_node.py runs it against a server).

import { randomUUID } from "node:crypto";

import { LoyaltyClient, checkout } from "../src";

/**
 * The same request_id however often the shop's worker comes back to an action of an order, and
 * another for every other action. request_ids are unique per programme, as order ids are.
 */
function requestId(orderId: string, action: string): string {
  return `${orderId}/${action}`;
}

async function shop(target: string, programmeId: string, memberId: string) {
  // A web request waits for no one: 2 s per attempt, and the client's retries within that budget.
  const client = new LoyaltyClient(target, { apiKey: process.env.LOYALTY_API_KEY, timeoutMs: 2000 });
  try {
    const member = { memberId }; // the shop stored it when the account was linked
    const cart = [
      { lineId: "1", sku: "BEANS-1KG", category: "coffee", quantity: "1", unitPriceMinor: "1800" },
      { lineId: "2", sku: "MUG", category: "home", quantity: "2", unitPriceMinor: "900" },
    ];
    // 1. The cart page quotes as the cart changes: a read, repeated freely, no request_id.
    const { pricing } = await client.checkout.quote({
      programmeId, member, channel: "web", lines: cart, requestedPoints: "5",
    });
    // 2. Placing the order holds the points until the payment's outcome is known.
    const place = async (orderId: string) =>
      (await client.checkout.checkout({
        requestId: requestId(orderId, "checkout"), programmeId, orderId, member, channel: "web",
        lines: cart, requestedPoints: pricing!.pointsApplied,
      })).order!;

    // 3a. The first order's card is declined: cancel, and the held points go back.
    const declined = `web-${randomUUID().slice(0, 10)}`;
    await place(declined);
    const cancelled = await client.checkout.cancel({
      requestId: requestId(declined, "cancel"), programmeId, orderId: declined,
    });

    // 3b. Paid with another card: a new order, whose Checkout the crashed worker sends again.
    const paid = `web-${randomUUID().slice(0, 10)}`;
    const held = await place(paid);
    const again = await place(paid);

    // 4. The payment provider's webhook says "paid", twice: capture once, answer twice.
    const capture = () => client.checkout.capture({ requestId: requestId(paid, "capture"), programmeId, orderId: paid });
    const captured = await capture();
    const capturedAgain = await capture();

    // 5. Delivered: completing counts the purchase where the programme counts on completion.
    const { order: completed } = await client.checkout.completeOrder({
      requestId: requestId(paid, "complete"), programmeId, orderId: paid,
    });

    // 6. One mug comes back: a refund per return, its request_id named by the shop's return number.
    const { refund } = await client.checkout.refund({
      requestId: requestId(paid, "return/R-1"), programmeId, orderId: paid, lines: [{ lineId: "2", quantity: "1" }],
    });

    return {
      points_applied: pricing!.pointsApplied,
      released: cancelled.releasedPoints,
      same_hold_on_resend: held.hold!.holdId === again.hold!.holdId,
      captured_once:
        JSON.stringify(checkout.CaptureResponse.toJSON(captured)) ===
          JSON.stringify(checkout.CaptureResponse.toJSON(capturedAgain)) && captured.spentPoints === held.hold!.points,
      completed: checkout.orderStateToJSON(completed!.state),
      refund_money_minor: refund!.moneyMinor,
      refund_returned_points: refund!.returnedPoints,
    };
  } finally {
    client.close();
  }
}

const [target, programmeId, memberId] = process.argv.slice(2);
shop(target, programmeId, memberId).then(
  (seen) => console.log(JSON.stringify(seen)),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
