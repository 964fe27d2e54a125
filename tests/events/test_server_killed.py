"""The server killed (SIGKILL) in the middle of delivering webhooks: after a restart every event
arrives, each member's in its order, none lost (some twice: delivery is at least once)."""

from __future__ import annotations

import signal
import time

import grpc
import pytest

from loyalty.v1 import events_pb2, events_pb2_grpc
from tests.events.conftest import MASTER_KEY, Receiver, parsed
from tests.faults.helpers import Stubs, accrue, create_programme, enrol
from tests.fixtures.keys import ALL_RIGHTS, BearerKey, create_key
from tests.fixtures.server import ServerProcess, wait_for
from tests.grpc.conftest import new_id
from tests.jobs.test_scheduler import _scrape

pytestmark = pytest.mark.slow

MEMBERS = 3
ACCRUALS_EACH = 20
EVENTS = MEMBERS * (ACCRUALS_EACH + 1)


def test_a_server_killed_mid_delivery_loses_and_reorders_nothing(create_database, receiver: Receiver):
    url = create_database(migrated=True)
    _name, key = create_key(url, ALL_RIGHTS)
    env = {"LOYALTY_DATABASE_URL": url, "LOYALTY_WEBHOOK_MASTER_KEY": MASTER_KEY, "LOYALTY_JOB_TICK_S": "0.1",
           "LOYALTY_JOB_DELIVER_WEBHOOKS_INTERVAL_S": "0.1", "LOYALTY_LEDGER_GAUGES_MAX_AGE_S": "0"}
    receiver.delay_s = 0.03  # slow enough that the kill lands mid-run
    server = ServerProcess(env).start().wait_serving()
    try:
        with grpc.insecure_channel(server.address) as ch:
            channel = grpc.intercept_channel(ch, BearerKey(key))
            stubs = Stubs(channel)
            programme = create_programme(stubs)
            created = events_pb2_grpc.EventServiceStub(channel).CreateWebhook(events_pb2.CreateWebhookRequest(
                request_id=new_id(), webhook=events_pb2.Webhook(programme_id=programme, url=receiver.url)))
            receiver.secret = created.signing_secret
            members = [enrol(stubs, programme) for _ in range(MEMBERS)]
            for i in range(ACCRUALS_EACH):
                for m in members:
                    accrue(stubs, programme, m, i + 1)
        wait_for(lambda: len(receiver.got) >= EVENTS // 3, timeout_s=30, what="a third delivered")
        server.terminate(sig=signal.SIGKILL)
        delivered_before_kill = len(receiver.first_receipts())
        assert delivered_before_kill < EVENTS
        server = ServerProcess(env).start().wait_serving()
        wait_for(lambda: len(receiver.first_receipts()) == EVENTS, timeout_s=60, what="every event delivered")
        time.sleep(0.5)  # nothing more comes, nothing unexpected
        hook = created.webhook.webhook_id
        samples = wait_for(lambda: (s := _scrape(server.metrics_port))[("loyalty_events_waiting", (
            ("webhook_id", hook),))] == 0 and s, timeout_s=10, what="nothing waiting")
        assert samples[("loyalty_webhook_deliveries_total", (("result", "delivered"), ("webhook_id", hook)))] >= 1
        assert samples[("loyalty_oldest_event_waiting_age_seconds", (("webhook_id", hook),))] == 0
    finally:
        server.terminate()
    got = [parsed(body) for body in receiver.first_receipts()]
    assert receiver.bad_signatures == 0 and len(got) == EVENTS
    for m in members:
        mine = [e for e in got if e.member_id == m]
        assert [e.sequence for e in mine] == list(range(1, ACCRUALS_EACH + 2))
    # Every receipt, duplicates included, follows each member's order: a resend starts again from
    # the first event not acknowledged, never jumps ahead.
    for m in members:
        sequence = [parsed(r.event).sequence for r in receiver.got if r.event["member_id"] == m]
        assert all(b <= a + 1 for a, b in zip(sequence, sequence[1:]))

