"""EventService: the event stream and webhook subscriptions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import json_format
from grpc import aio

from loyalty.v1 import events_pb2, events_pb2_grpc
from loyalty_core.events import CreateWebhook, DeleteWebhook, RedeliverWebhook, Webhook
from loyalty_core.service import events
from loyalty_core.store.outbox import StoredEvent
from loyalty_core.webhooks import event_json, shown_secret
from server.servicers.convert import timestamp, write_context


def event(e: StoredEvent) -> events_pb2.Event:
    """The event as the webhooks send it (one mapping: ``loyalty_core.webhooks.event_json``)."""
    return json_format.ParseDict(event_json(e), events_pb2.Event())


def webhook(w: Webhook) -> events_pb2.Webhook:
    return events_pb2.Webhook(
        webhook_id=w.webhook_id, programme_id=w.programme_id, url=w.url, event_types=w.event_types,
        description=w.description, create_time=timestamp(w.created_at), attempts=w.attempts,
        last_error=w.last_error, dead_letters=w.dead_letters, events_waiting=w.events_waiting,
    )


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, deps: Any) -> None:
        self.db, self.clock, self.settings = deps.db, deps.clock, deps.settings

    async def WatchEvents(self, request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        # Each response waits for the client to take the previous ones (gRPC flow control), and
        # the stream reads the next page only when asked for it.
        async for e in events.watch(self.db, request.programme_id, request.after_cursor, tuple(request.event_types),
                                    poll_interval_s=self.settings.watch_poll_interval_s):
            yield events_pb2.WatchEventsResponse(event=event(e))

    async def CreateWebhook(self, request: Any, context: aio.ServicerContext) -> Any:
        w = request.webhook
        req = CreateWebhook(request.request_id, Webhook(w.programme_id, w.url, tuple(w.event_types), w.description),
                            write_context(request.context, context, request.request_id))
        created = await events.create_webhook(self.db, self.clock, req, master_key=self.settings.webhook_master_key)
        return events_pb2.CreateWebhookResponse(
            webhook=webhook(created), signing_secret=shown_secret(self.settings.webhook_master_key, created.webhook_id))

    async def ListWebhooks(self, request: Any, context: aio.ServicerContext) -> Any:
        found, token = await events.list_webhooks(self.db, request.programme_id, request.page_size, request.page_token)
        return events_pb2.ListWebhooksResponse(webhooks=[webhook(w) for w in found], next_page_token=token)

    async def DeleteWebhook(self, request: Any, context: aio.ServicerContext) -> Any:
        await events.delete_webhook(self.db, self.clock, DeleteWebhook(
            request.request_id, request.programme_id, request.webhook_id,
            write_context(request.context, context, request.request_id)))
        return events_pb2.DeleteWebhookResponse()

    async def RedeliverWebhook(self, request: Any, context: aio.ServicerContext) -> Any:
        done = await events.redeliver_webhook(self.db, self.clock, RedeliverWebhook(
            request.request_id, request.programme_id, request.webhook_id, request.event_id,
            write_context(request.context, context, request.request_id)))
        return events_pb2.RedeliverWebhookResponse(redeliveries=done.redeliveries)
