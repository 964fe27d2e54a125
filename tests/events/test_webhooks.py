"""Webhooks: signed deliveries in order, retries with backoff, dead letters, redelivery, isolation."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import grpc
import psycopg
import pytest

from loyalty.v1 import events_pb2
from loyalty_core import webhooks
from loyalty_core.observe import WEBHOOK_DELIVERY_RESULTS
from loyalty_core.clock import ManualClock
from loyalty_core.service.jobs import delivery_rules
from tests.events.conftest import MASTER_KEY, EventsApi, Receiver, all_final, parsed
from tests.grpc.conftest import new_id, refusal


def _rules(grpc_server, **changes) -> webhooks.DeliveryRules:
    return dataclasses.replace(delivery_rules(grpc_server.settings), **changes)


async def _deliver(db, clock, rules) -> tuple[int, bool]:
    await all_final(db)
    return await webhooks.deliver(db, clock, rules)


def _subscribe(api: EventsApi, receiver: Receiver, programme_id: str, *types: str) -> events_pb2.Webhook:
    created = api.create_webhook(programme_id, receiver.url, *types)
    receiver.secret = created.signing_secret
    return created.webhook


async def test_deliveries_are_signed_and_in_each_members_order(db, api: EventsApi, grpc_server, clock, receiver):
    p = api.programme()
    hook = _subscribe(api, receiver, p.programme_id)
    members = [api.enrol(p.programme_id).member_id for _ in range(3)]
    for i in range(4):
        for m in members:
            api.accrue(p.programme_id, m, 10 + i)
    delivered, more = await _deliver(db, clock, _rules(grpc_server))
    assert (delivered, more, receiver.bad_signatures, receiver.refused) == (15, False, 0, 0)
    got = [parsed(body) for body in receiver.first_receipts()]
    assert receiver.bad_signatures == 0 and len(got) == 15
    for m in members:
        mine = [e for e in got if e.member_id == m]
        assert [e.sequence for e in mine] == [1, 2, 3, 4, 5]
        assert [e.type for e in mine] == ["member.enrolled"] + ["points.earned"] * 4
        assert [e.points_moved.points for e in mine[1:]] == [10, 11, 12, 13]
    listed = api.events.ListWebhooks(events_pb2.ListWebhooksRequest(programme_id=p.programme_id)).webhooks
    assert [(w.webhook_id, w.events_waiting, w.attempts) for w in listed] == [(hook.webhook_id, 0, 0)]


async def test_a_member_whose_events_fail_holds_back_only_what_follows_it(db, api: EventsApi, grpc_server, clock,
                                                                         receiver):
    p = api.programme()
    _subscribe(api, receiver, p.programme_id)
    stuck, fine = api.enrol(p.programme_id).member_id, api.enrol(p.programme_id).member_id
    for i in range(3):
        api.accrue(p.programme_id, stuck, 1 + i)
        api.accrue(p.programme_id, fine, 10 + i)
    receiver.fail_member = stuck
    await _deliver(db, clock, _rules(grpc_server, backoff_base_s=1))
    # The other member's events went through; none of the stuck one's, and only its first was tried.
    assert {e["member_id"] for e in receiver.first_receipts()} == {fine}
    assert receiver.refused == 1
    receiver.fail_member = ""
    clock.advance(2)
    await _deliver(db, clock, _rules(grpc_server))
    got = [parsed(body) for body in receiver.first_receipts()]
    for m in (stuck, fine):
        assert [e.sequence for e in got if e.member_id == m] == [1, 2, 3, 4]
    # What was sent again (at least once) came again in its member's order.
    resent = [parsed(r.event) for r in receiver.got][len(got):]
    assert [e.sequence for e in resent if e.member_id == fine] == sorted(e.sequence for e in resent
                                                                         if e.member_id == fine)


async def test_only_the_subscribed_types_of_the_programme_are_sent(db, api: EventsApi, grpc_server, clock, receiver):
    p, other = api.programme(), api.programme()
    _subscribe(api, receiver, p.programme_id, "points.earned")
    m = api.enrol(p.programme_id).member_id
    api.accrue(p.programme_id, m, 7)
    api.accrue(other.programme_id, api.enrol(other.programme_id).member_id, 9)
    await _deliver(db, clock, _rules(grpc_server))
    assert [(e["type"], e["points_moved"]["points"]) for e in receiver.first_receipts()] == [("points.earned", 7)]


async def test_a_failing_endpoint_is_retried_with_backoff_then_dead_lettered_and_redelivered(
        db, api: EventsApi, grpc_server, clock: ManualClock, receiver):
    p = api.programme()
    hook = _subscribe(api, receiver, p.programme_id)
    m = api.enrol(p.programme_id).member_id
    rules = _rules(grpc_server, attempts_max=3, backoff_base_s=10, backoff_max_s=100)
    receiver.fail_next = 3
    # First failure: nothing more this run, and not due again before half the first backoff.
    assert await _deliver(db, clock, rules) == (0, False)
    clock.advance(4)
    assert await _deliver(db, clock, rules) == (0, False)
    assert receiver.refused == 1
    clock.advance(6)  # 10 s after the failure: due (the wait was 5..10 s)
    await _deliver(db, clock, rules)
    assert receiver.refused == 2
    listed = api.events.ListWebhooks(events_pb2.ListWebhooksRequest(programme_id=p.programme_id)).webhooks[0]
    assert (listed.attempts, listed.last_error, listed.events_waiting) == (2, "HTTP 503", 1)
    clock.advance(20)
    # The third failure gives up on the event: a dead letter, and the events behind it move on.
    api.accrue(p.programme_id, m, 5)
    assert await _deliver(db, clock, rules) == (1, False)
    assert receiver.refused == 3
    assert [e["type"] for e in receiver.first_receipts()] == ["points.earned"]
    listed = api.events.ListWebhooks(events_pb2.ListWebhooksRequest(programme_id=p.programme_id)).webhooks[0]
    assert (listed.attempts, listed.dead_letters, listed.events_waiting) == (0, 1, 0)
    redone = api.events.RedeliverWebhook(events_pb2.RedeliverWebhookRequest(
        request_id=new_id(), programme_id=p.programme_id, webhook_id=hook.webhook_id))
    assert redone.redeliveries == 1
    assert await _deliver(db, clock, rules) == (1, False)
    assert [e["type"] for e in receiver.first_receipts()] == ["points.earned", "member.enrolled"]
    listed = api.events.ListWebhooks(events_pb2.ListWebhooksRequest(programme_id=p.programme_id)).webhooks[0]
    assert listed.dead_letters == 0
    assert receiver.bad_signatures == 0


def test_a_live_subscription_exports_every_delivery_result_at_zero(api: EventsApi, grpc_server, receiver):
    """So that a rate or increase sees its first failure and first dead letter."""
    hook = _subscribe(api, receiver, api.programme().programme_id)
    list(grpc_server.registry.collect())  # the scrape that reads the subscription makes its series
    assert {result: grpc_server.registry.get_sample_value(
        "loyalty_webhook_deliveries_total", {"webhook_id": hook.webhook_id, "result": result})
        for result in WEBHOOK_DELIVERY_RESULTS} == dict.fromkeys(WEBHOOK_DELIVERY_RESULTS, 0)


async def test_a_slow_endpoint_delays_no_other_subscription(db, api: EventsApi, grpc_server, clock, receiver):
    slow = Receiver(delay_s=1.5).start()
    try:
        p = api.programme()
        _subscribe(api, slow, p.programme_id)
        _subscribe(api, receiver, p.programme_id)
        api.enrol(p.programme_id)
        await all_final(db)
        started = time.monotonic()
        task = asyncio.ensure_future(webhooks.deliver(db, clock, _rules(grpc_server, timeout_s=1.0)))
        while not receiver.got:
            await asyncio.sleep(0.02)
        assert time.monotonic() - started < 1.0  # the fast one did not wait for the slow one
        await task
        assert [e["type"] for e in receiver.first_receipts()] == ["member.enrolled"]
        listed = {w.url: w for w in api.events.ListWebhooks(
            events_pb2.ListWebhooksRequest(programme_id=p.programme_id)).webhooks}
        assert listed[slow.url].last_error == "no answer within 1 s" and listed[slow.url].attempts == 1
    finally:
        slow.stop()


def test_a_webhook_is_refused_without_the_right_or_with_a_bad_url(api: EventsApi, channel_with):
    p = api.programme()
    pos = EventsApi(channel_with("pos", "read_only"))
    with pytest.raises(grpc.RpcError) as refused:
        pos.create_webhook(p.programme_id, "https://example.invalid/hook")
    assert refusal(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    with pytest.raises(grpc.RpcError) as refused:
        api.create_webhook(p.programme_id, "ftp://example.invalid/hook")
    assert refusal(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    with pytest.raises(grpc.RpcError) as refused:
        api.create_webhook(p.programme_id, "https://example.invalid/hook", "points.minted")
    assert refusal(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    assert list(api.events.ListWebhooks(events_pb2.ListWebhooksRequest(programme_id=p.programme_id)).webhooks) == []


def test_the_secret_is_derived_not_stored_and_the_same_on_a_replay(api: EventsApi, database_url):
    p = api.programme()
    request = events_pb2.CreateWebhookRequest(request_id=new_id(), webhook=events_pb2.Webhook(
        programme_id=p.programme_id, url="https://example.invalid/hook"))
    first, again = api.events.CreateWebhook(request), api.events.CreateWebhook(request)
    assert first == again
    assert first.signing_secret == webhooks.shown_secret(MASTER_KEY, first.webhook.webhook_id)
    with psycopg.connect(database_url) as conn:
        stored = str(conn.execute("SELECT array_agg(s::text) FROM webhook_subscription s").fetchone()[0])
        stored += str(conn.execute("SELECT array_agg(k::text) FROM idempotency_key k").fetchone()[0])
    secret = first.signing_secret.removeprefix(webhooks.SECRET_PREFIX)
    assert secret not in stored and webhooks.signing_secret(MASTER_KEY, first.webhook.webhook_id).hex() not in stored
    api.events.DeleteWebhook(events_pb2.DeleteWebhookRequest(request_id=new_id(), programme_id=p.programme_id,
                                                             webhook_id=first.webhook.webhook_id))
    assert list(api.events.ListWebhooks(events_pb2.ListWebhooksRequest(programme_id=p.programme_id)).webhooks) == []
