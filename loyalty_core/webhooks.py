"""Webhook delivery: each subscription's events POSTed in order, signed as Standard Webhooks say.

One run of the ``deliver_webhooks`` job takes every due subscription at once (each its own task,
so a slow or failing endpoint holds up only itself) and sends each one's events after its cursor
a page at a time: each member's events one after another in their order, several members at
once. A delivery is a 2xx answer within ``timeout_s``; anything else fails that member's event,
and the first event of the page not delivered is the head: the cursor stops just before it, it is
tried again after an exponential backoff with jitter, and after ``attempts_max`` failures it goes
to the dead letters so the events behind it move on. The cursor is saved after each page and at
each failure: a run cut anywhere resends what came after the last save, in order, and never skips
(at least once; receivers deduplicate by ``webhook-id``). No database connection is held while a
request is in flight.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from standardwebhooks import Webhook

from loyalty_core import observe
from loyalty_core.clock import US_PER_S, Clock
from loyalty_core.events import PAYLOAD_FIELDS
from loyalty_core.store import outbox, webhooks as store
from loyalty_core.store.db import Database
from loyalty_core.store.outbox import Cursor, StoredEvent

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Prefix of a secret as Standard Webhooks libraries read it.
SECRET_PREFIX = "whsec_"
# What the derivation of a subscription's secret is for (so the master key's other uses never collide).
_SECRET_LABEL = b"loyalty-core webhook signing secret v1:"
# The longest error text kept (the column's limit).
_ERROR_MAX = 500
# What became of an event of a page (besides its error).
_DELIVERED = object()
_NOT_TRIED = object()
# Connections one delivery run opens at most, over all subscriptions.
CONNECTIONS_MAX = 256


@dataclass(frozen=True, slots=True)
class DeliveryRules:
    """How the delivery job works (from settings: ``LOYALTY_WEBHOOK_*``)."""

    master_key: str
    timeout_s: float
    attempts_max: int
    backoff_base_s: float
    backoff_max_s: float
    # Events read per page, members of a page sent to at once (each member's events one after
    # another), subscriptions taken per run, and how long one subscription's run may last.
    page_size: int = 500
    in_flight_max: int = 16
    subscriptions_max: int = 100
    run_budget_s: float = 10.0


def signing_secret(master_key: str, subscription_id: str) -> bytes:
    """The subscription's secret, derived rather than stored: HMAC-SHA256(master key, label + id)."""
    return hmac.new(master_key.encode(), _SECRET_LABEL + subscription_id.encode(), hashlib.sha256).digest()


def shown_secret(master_key: str, subscription_id: str) -> str:
    """The secret as given to the receiver once: "whsec_" + base64."""
    return SECRET_PREFIX + base64.b64encode(signing_secret(master_key, subscription_id)).decode()


def rfc3339(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_json(event: StoredEvent) -> dict[str, Any]:
    """The event as the ``Event`` message's protobuf JSON form (proto field names): the webhook
    body, and what the stream's servicer parses into the message."""
    return {
        "event_id": event.event_id, "type": event.type, "create_time": rfc3339(event.created_at),
        "programme_id": event.programme_id, "member_id": event.member_id, "sequence": event.seq,
        "payload_version": event.payload_version, "cursor": event.cursor.token(),
        PAYLOAD_FIELDS[event.type]: event.payload,
    }


def backoff_s(rules: DeliveryRules, attempts: int) -> float:
    """The wait after the ``attempts``-th failure: base * 2^(attempts-1), capped, with "equal
    jitter" (half fixed, half random) so endpoints that failed together are not retried together."""
    ceiling = min(rules.backoff_max_s, rules.backoff_base_s * 2 ** min(attempts - 1, 30))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


async def _post(client: aiohttp.ClientSession, rules: DeliveryRules, sub: store.Subscription,
                event: StoredEvent) -> str | None:
    """Send one event; None when the receiver took it, else why not."""
    body = json.dumps(event_json(event), separators=(",", ":"))
    signer = Webhook(signing_secret(rules.master_key, sub.subscription_id))
    sent_at = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": event.event_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": signer.sign(event.event_id, sent_at, body),
    }
    try:
        async with client.post(sub.url, data=body.encode(), headers=headers, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=rules.timeout_s)) as answer:
            status = answer.status
    except TimeoutError:
        result, error = "timeout", f"no answer within {rules.timeout_s:g} s"
    except aiohttp.ClientError as err:
        result, error = "unreachable", f"{type(err).__name__}: {err}"[:_ERROR_MAX]
    else:
        if 200 <= status < 300:
            observe.webhook_delivery(sub.subscription_id, "delivered")
            return None
        result, error = "refused", f"HTTP {status}"
    observe.webhook_delivery(sub.subscription_id, result)
    return error


class _Run:
    """One subscription's share of a run."""

    def __init__(self, db: Database, clock: Clock, client: aiohttp.ClientSession, rules: DeliveryRules,
                 sub: store.Subscription) -> None:
        self.db, self.clock, self.client, self.rules, self.sub = db, clock, client, rules, sub
        self.delivered = 0
        self.more = False
        # The cursor as stored.
        self.saved = sub.cursor

    async def redeliveries(self) -> None:
        """Dead letters marked by RedeliverWebhook: one more attempt each, beside the stream."""
        async with self.db.connection() as conn:
            keys = await store.redeliveries(conn, self.sub.subscription_id, self.rules.page_size)
            found = {(e.member_id, e.seq): e for e in await outbox.events_by_key(conn, keys)} if keys else {}
        for member_id, seq in keys:
            event = found.get((member_id, seq))
            # An event purged meanwhile has nothing left to send: the dead letter goes.
            error = None if event is None else await _post(self.client, self.rules, self.sub, event)
            self.delivered += error is None
            async with self.db.connection() as conn:
                await store.redelivered(conn, self.sub.subscription_id, member_id, seq, error, self.clock.now_us())

    async def stream(self) -> None:
        """The events after the cursor, a page at a time, until none is left, the head fails, or
        the budget ends. The cursor moves to just before the first event of the page (in stream
        order) that was not delivered; events after it that were delivered are sent again next
        time (at least once)."""
        deadline = time.monotonic() + self.rules.run_budget_s
        cursor, attempts = self.sub.cursor, self.sub.attempts
        while time.monotonic() < deadline:
            async with self.db.connection() as conn:
                page = await outbox.page_after(conn, cursor, self.rules.page_size,
                                               programme_id=self.sub.programme_id, types=self.sub.event_types)
            if not page:
                break
            outcomes = await self._send(page, deadline)
            self.delivered += outcomes.count(_DELIVERED)
            head = next((i for i, outcome in enumerate(outcomes) if outcome is not _DELIVERED), None)
            if head is None:
                cursor, attempts = page[-1].cursor, 0
                await self._save(cursor)  # a cut after this page resends nothing before it
                continue
            if head:
                cursor, attempts = page[head - 1].cursor, 0
            error = outcomes[head]
            if error is _NOT_TRIED:  # the budget ended first
                break
            attempts += 1
            if attempts < self.rules.attempts_max:
                await self._failed(cursor, attempts, str(error))
                return
            # Given up on: a dead letter, and the events behind it move on.
            event = page[head]
            async with self.db.transaction() as conn:
                await store.dead_letter(conn, self.sub.subscription_id, event.member_id, event.seq, attempts,
                                        str(error), self.clock.now_us())
                await store.delivered(conn, self.sub.subscription_id, event.cursor, self.clock.now_us())
            observe.webhook_delivery(self.sub.subscription_id, "dead_letter")
            cursor, attempts = event.cursor, 0
        self.more = time.monotonic() >= deadline
        await self._save(cursor)

    async def _save(self, cursor: Cursor) -> None:
        if cursor != self.saved:
            async with self.db.connection() as conn:
                await store.delivered(conn, self.sub.subscription_id, cursor, self.clock.now_us())
            self.saved = cursor

    async def _send(self, page: list[StoredEvent], deadline: float) -> list[object]:
        """Send a page: each member's events one after another in their order (a member's chain
        stops at its first failure), up to ``in_flight_max`` members at once. Per event: _DELIVERED,
        the error, or _NOT_TRIED (after a failure of the same member, or past the deadline)."""
        outcomes: list[object] = [_NOT_TRIED] * len(page)
        chains: dict[str, list[int]] = {}
        for i, event in enumerate(page):
            chains.setdefault(event.member_id, []).append(i)
        slots = asyncio.Semaphore(self.rules.in_flight_max)

        async def chain(indexes: list[int]) -> None:
            async with slots:
                for i in indexes:
                    if time.monotonic() >= deadline:
                        return
                    error = await _post(self.client, self.rules, self.sub, page[i])
                    outcomes[i] = _DELIVERED if error is None else error
                    if error is not None:
                        return

        await asyncio.gather(*(chain(indexes) for indexes in chains.values()))
        return outcomes

    async def _failed(self, cursor: Cursor, attempts: int, error: str) -> None:
        now = self.clock.now_us()
        async with self.db.transaction() as conn:
            if cursor != self.saved:
                await store.delivered(conn, self.sub.subscription_id, cursor, now)
            await store.failed(conn, self.sub.subscription_id, attempts, error,
                               now + round(backoff_s(self.rules, attempts) * US_PER_S))


async def deliver(db: Database, clock: Clock, rules: DeliveryRules) -> tuple[int, bool]:
    """One run over every due subscription, concurrently; (events delivered, whether work is left)."""
    async with db.connection() as conn:
        due = await store.due(conn, clock.now_us(), rules.subscriptions_max)
    if not due:
        return 0, False
    connector = aiohttp.TCPConnector(limit=min(len(due) * rules.in_flight_max, CONNECTIONS_MAX))
    async with aiohttp.ClientSession(connector=connector) as client:
        runs = [_Run(db, clock, client, rules, sub) for sub in due]

        async def one(run: _Run) -> None:
            await run.redeliveries()
            await run.stream()

        # Every subscription's run ends before the job does; the first failure (a database error)
        # then fails the job, after the others kept their progress.
        failures = [r for r in await asyncio.gather(*(one(run) for run in runs), return_exceptions=True) if r]
    if failures:
        raise failures[0]
    return sum(r.delivered for r in runs), len(due) == rules.subscriptions_max or any(r.more for r in runs)
