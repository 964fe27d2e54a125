// A till's sequence with loyalty-client: identify, quote, checkout (hold points), pay, capture, a
// refund of one unit, and a refusal read.
//
// Run: npm run build && LOYALTY_API_KEY=... node dist/examples/till.js TARGET PROGRAMME_ID PHONE
// Prints one JSON object with what it saw (tests/clients/test_node.py runs it against a server).

import { randomUUID } from "node:crypto";

import { LoyaltyClient, refusal, type checkout } from "../src";

async function till(target: string, programmeId: string, phone: string) {
  const client = new LoyaltyClient(target, { apiKey: process.env.LOYALTY_API_KEY });
  try {
    // 1. Identify the member by phone (or card number + secret).
    const { member } = await client.members.lookupMember({ programmeId, member: { phone } });
    const who = { memberId: member!.memberId };
    // int64 fields are strings: exact past 2^53, and refused (not saturated) past int64.
    const lines: Partial<checkout.BasketLine>[] = [
      { sku: "COFFEE-250", category: "coffee", quantity: "2", unitPriceMinor: "450" },
    ];
    // 2. Quote: what points may pay and what the basket earns. Reads are safe to repeat.
    const { pricing } = await client.checkout.quote({ programmeId, member: who, lines, requestedPoints: "3" });
    // 3. Checkout holds the points. One request_id per action of the till: the client sends it on
    //    each of its own retries, so a lost answer never holds twice.
    const orderId = `till-7-${randomUUID().slice(0, 12)}`;
    const { order } = await client.checkout.checkout({
      requestId: randomUUID(), programmeId, orderId, member: who, lines,
      requestedPoints: pricing!.pointsApplied,
    });
    // 4. The card payment of order.pricing.moneyDueMinor runs here; then 5. capture (or cancel).
    const captured = await client.checkout.capture({ requestId: randomUUID(), programmeId, orderId });
    // Later, the customer brings one coffee back: refund that unit of line 1.
    const { refund } = await client.checkout.refund({
      requestId: randomUUID(), programmeId, orderId, lines: [{ lineId: "1", quantity: "1" }],
    });
    // A refusal: the reason and the bad field say what to fix (docs/errors.md).
    const refused = await client.checkout
      .quote({ programmeId, member: who, lines: [{ sku: "X", quantity: "1", unitPriceMinor: "-1" }] })
      .then(() => ({}), (err) => {
        const why = refusal(err);
        return { code: why.codeName, reason: why.reason, fields: why.fieldViolations.map((v) => v.field) };
      });
    return {
      member_id: member!.memberId,
      points_applied: pricing!.pointsApplied,
      held: order!.hold!.points,
      spent: captured.spentPoints,
      earned: captured.earnedPoints,
      refunded_lines: refund!.lines.map((l) => [l.lineId, l.quantity]),
      refunded_money: refund!.moneyMinor,
      refused,
    };
  } finally {
    client.close();
  }
}

const [target, programmeId, phone] = process.argv.slice(2);
till(target, programmeId, phone).then(
  (seen) => console.log(JSON.stringify(seen)),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
