"""Event use cases: the stream (WatchEvents), webhook subscriptions, and the events' scheduled upkeep."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from loyalty_core.clock import US_PER_S, Clock
from loyalty_core.errors import FailedPrecondition, InvalidArgument, NotFound
from loyalty_core.events import (
    EVENT_TYPES, CreateWebhook, DeleteWebhook, NewEvent, Redelivered, RedeliverWebhook, Webhook,
)
from loyalty_core.service import checks
from loyalty_core.service.idempotent import run_write
from loyalty_core.service.members import programme_of
from loyalty_core.store import notices, outbox, programmes, webhooks as store
from loyalty_core.store.db import Database
from loyalty_core.store.outbox import Cursor, StoredEvent
from loyalty_core.webhooks import rfc3339

# Events one read of a stream takes (and holds in memory) at most.
STREAM_PAGE = 100
URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
MAX_URL = 256
MAX_EVENT_TYPES = len(EVENT_TYPES)
_CURSOR = re.compile(r"^([0-9]{1,19})-([0-9]{1,19})$")
_US_PER_DAY = 86_400 * US_PER_S


def parse_cursor(token: str, field: str) -> Cursor | None:
    """An Event's cursor as a client sends it back; None for empty."""
    if not token:
        return None
    found = _CURSOR.match(token)
    if found is None or int(found[1]) > checks.INT64_MAX or int(found[2]) > checks.INT64_MAX:
        raise InvalidArgument("value_out_of_range", f"{field} is not a cursor this server gave", field=field)
    return Cursor(int(found[1]), int(found[2]))


def check_types(types: Sequence[str], field: str) -> tuple[str, ...]:
    for i, name in enumerate(types):
        if name not in EVENT_TYPES:
            raise InvalidArgument("value_out_of_range", f"unknown event type {name[:64]!r}; docs/events.md lists them",
                                  field=f"{field}[{i}]")
    return tuple(dict.fromkeys(types))


async def watch(db: Database, programme_id: str, after_cursor: str, event_types: Sequence[str], *,
                poll_interval_s: float) -> AsyncIterator[StoredEvent]:
    """Every final event after the cursor (empty: from now on) of the programme (empty: all), in
    stream order, for ever: a page at a time, and when caught up, a new look every
    ``poll_interval_s``. The caller pulls at its own pace; no connection is held between pages."""
    programme = checks.uuid_arg(programme_id, "programme_id") if programme_id else None
    types = check_types(event_types, "event_types")
    cursor = parse_cursor(after_cursor, "after_cursor")
    async with db.connection() as conn:
        if programme is not None:
            await programme_of(conn, programme)
        if cursor is None:
            cursor = await outbox.head(conn)
    while True:
        async with db.connection() as conn:
            page = await outbox.page_after(conn, cursor, STREAM_PAGE, programme_id=programme, types=types)
        for event in page:
            yield event
            cursor = event.cursor
        if len(page) < STREAM_PAGE:
            await asyncio.sleep(poll_interval_s)


def _check_webhook(webhook: Webhook) -> Webhook:
    url = checks.text_arg(webhook.url, "webhook.url", max_len=MAX_URL, required=True)
    if not URL.match(url):
        raise InvalidArgument("value_out_of_range", "webhook.url must be an http:// or https:// URL", field="webhook.url")
    return Webhook(
        programme_id=checks.uuid_arg(webhook.programme_id, "webhook.programme_id"), url=url,
        event_types=check_types(webhook.event_types, "webhook.event_types"),
        description=checks.text_arg(webhook.description, "webhook.description", max_len=500),
    )


def _webhook(sub: store.Subscription, waiting: int = 0) -> Webhook:
    return Webhook(programme_id=sub.programme_id, url=sub.url, event_types=sub.event_types, description=sub.description,
                   webhook_id=sub.subscription_id, created_at=sub.created_at, attempts=sub.attempts,
                   last_error=sub.last_error, dead_letters=sub.dead_letters, events_waiting=waiting)


async def create_webhook(db: Database, clock: Clock, req: CreateWebhook, *, master_key: str) -> Webhook:
    """A new subscription, delivering the events that commit from now on. Its secret is derived
    from ``master_key`` and its id (``webhooks.shown_secret``), so the stored answer holds none."""
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    wanted = _check_webhook(req.webhook)
    if not master_key:
        raise FailedPrecondition("webhook_master_key_unset", "the server has no webhook master key to sign with")
    now = clock.now_us()
    subscription_id = str(uuid.uuid4())

    async def effect(conn: Any) -> tuple[Webhook, None]:
        await programme_of(conn, wanted.programme_id)
        sub = await store.insert(conn, subscription_id, wanted.programme_id, wanted.url, wanted.event_types,
                                 wanted.description, req.context.actor, now)
        return _webhook(sub), None

    return await run_write(db, method="CreateWebhook", scope=wanted.programme_id, request=req, result_type=Webhook,
                           now=now, effect=effect)


async def _live(conn: Any, programme_id: str, webhook_id: str) -> store.Subscription:
    sub = await store.get(conn, programme_id, webhook_id, lock=True)
    if sub is None:
        raise NotFound("webhook_not_found", "no live webhook with this id in the programme")
    return sub


async def delete_webhook(db: Database, clock: Clock, req: DeleteWebhook) -> Webhook:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.programme_id, "programme_id")
    webhook_id = checks.uuid_arg(req.webhook_id, "webhook_id")
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[Webhook, None]:
        sub = await _live(conn, programme_id, webhook_id)
        await store.delete(conn, webhook_id, now)
        return _webhook(sub), None

    return await run_write(db, method="DeleteWebhook", scope=programme_id, request=req, result_type=Webhook, now=now,
                           effect=effect)


async def redeliver_webhook(db: Database, clock: Clock, req: RedeliverWebhook) -> Redelivered:
    checks.text_arg(req.request_id, "request_id", max_len=128, required=True)
    programme_id = checks.uuid_arg(req.programme_id, "programme_id")
    webhook_id = checks.uuid_arg(req.webhook_id, "webhook_id")
    event_id = checks.uuid_arg(req.event_id, "event_id") if req.event_id else None
    now = clock.now_us()

    async def effect(conn: Any) -> tuple[Redelivered, None]:
        await _live(conn, programme_id, webhook_id)
        return Redelivered(await store.redeliver(conn, webhook_id, event_id, now)), None

    return await run_write(db, method="RedeliverWebhook", scope=programme_id, request=req, result_type=Redelivered,
                           now=now, effect=effect)


async def list_webhooks(db: Database, programme_id: str, page_size: int, page_token: str) -> tuple[list[Webhook], str]:
    programme_id = checks.uuid_arg(programme_id, "programme_id")
    size = checks.page_size(page_size)
    after = checks.decode_token(page_token, 2)
    async with db.connection() as conn:
        await programme_of(conn, programme_id)
        subs = await store.page(conn, programme_id, (after[0], after[1]) if after else None, size + 1)
        page = subs[:size]
        waiting = await store.waiting(conn, [s.subscription_id for s in page])
    more = len(subs) > size
    token = checks.encode_token(page[-1].created_at, page[-1].subscription_id) if more else ""
    return [_webhook(s, waiting.get(s.subscription_id, 0)) for s in page], token


# -- Scheduled upkeep --------------------------------------------------------------------------------

async def write_expiry_notices(db: Database, clock: Clock, batch: int) -> tuple[int, bool]:
    """One bounded run of the "points expiring soon" notices over every programme that asks for
    them: at most ``batch`` notices per programme, each with its event, one transaction per
    programme's batch. (notices written, whether a programme had more due)."""
    now = clock.now_us()
    written, more = 0, False
    after: tuple[int, str] | None = None
    while True:
        async with db.connection() as conn:
            page = await programmes.page(conn, after, STREAM_PAGE)
        for programme in page:
            if not programme.expiry_notice_days:
                continue
            async with db.connection() as conn:
                due = await notices.due(conn, programme.programme_id, programme.expiry_notice_days, now, batch)
            if due:
                await db.run_in_pipeline(_write_notices, due, now)
            written += len(due)
            more = more or len(due) == batch
        if len(page) < STREAM_PAGE:
            return written, more
        after = (page[-1].created_at, page[-1].programme_id)


async def _write_notices(conn: Any, due: Sequence[notices.DueNotice], now: int) -> None:
    for notice in due:
        await notices.write(conn, notice, NewEvent("points.expiring_soon", {
            "points": notice.points, "expiry_date": notice.expires_on.isoformat(),
            "expire_time": rfc3339(notice.first_expiry), "days_before": notice.days_before,
        }), now)


async def purge_events(db: Database, clock: Clock, *, retention_days: int, batch: int, max_batches: int) -> int:
    """Delete events older than ``retention_days`` that every live webhook of their programme has
    passed, ``batch`` per transaction, at most ``max_batches`` transactions; how many went."""
    before = clock.now_us() - retention_days * _US_PER_DAY
    purged = 0
    for _ in range(max_batches):
        async with db.connection() as conn:
            deleted = await store.purge_events(conn, before, batch)
        purged += deleted
        if deleted < batch:
            break
    return purged
