"""Fixtures for the events' tests: a server with a webhook master key, the EventService stub, and a
real HTTP receiver that checks every signature, fails when told to, and records what it got."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from standardwebhooks import Webhook

from loyalty.v1 import events_pb2, events_pb2_grpc, membership_pb2_grpc
from loyalty_core.clock import ManualClock
from tests.fixtures.keys import BearerKey
from tests.fixtures.proto_paths import FieldPathCheck
from tests.fixtures.server import ServerThread, make_test_settings
from tests.grpc.conftest import Api, new_id

MASTER_KEY = "test-master-key-0123456789abcdef"


@dataclass
class Received:
    """One POST the receiver took: the parsed event and its webhook-id."""

    webhook_id: str
    event: dict[str, Any]


@dataclass
class Receiver:
    """An HTTP endpoint in a thread. Every request's signature is checked with ``secret`` (set once
    the webhook exists); a bad one is answered 400 and counted in ``bad_signatures``. ``fail_next``
    requests, and every one about ``fail_member``, are answered 503; each request first waits ``delay_s``."""

    secret: str = ""
    fail_next: int = 0
    # Every event of this member is answered 503 (while set).
    fail_member: str = ""
    delay_s: float = 0.0
    got: list[Received] = field(default_factory=list)
    refused: int = 0
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["content-length"]))
                time.sleep(receiver.delay_s)
                code = receiver.take(body, dict(self.headers))
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def take(self, body: bytes, headers: dict[str, str]) -> int:
        with self.lock:
            try:
                event = Webhook(self.secret).verify(body, headers)
            except Exception:  # noqa: BLE001 - any verification failure is a refusal
                self.bad_signatures += 1
                return 400
            if self.fail_next or event["member_id"] == self.fail_member:
                self.fail_next = max(0, self.fail_next - 1)
                self.refused += 1
                return 503
            self.got.append(Received(headers["webhook-id"], event))
            return 200

    def first_receipts(self) -> list[dict[str, Any]]:
        """Each event once, as first received (delivery is at least once)."""
        seen: set[str] = set()
        firsts = []
        with self.lock:
            for r in self.got:
                if r.webhook_id not in seen:
                    seen.add(r.webhook_id)
                    firsts.append(r.event)
        return firsts

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def grpc_server(database_url: str, clock: ManualClock) -> Iterator[ServerThread]:
    """The real server in-process (no scheduler: tests run the delivery job themselves), with a
    webhook master key and a quick stream poll."""
    server = ServerThread(make_test_settings(database_url, webhook_master_key=MASTER_KEY,
                                             watch_poll_interval_s=0.05), clock).start()
    try:
        yield server
    finally:
        server.stop()


class EventsApi(Api):
    """The ledger's shortcuts plus the EventService."""

    def __init__(self, channel: grpc.Channel) -> None:
        super().__init__(channel)
        self.events = events_pb2_grpc.EventServiceStub(channel)
        self.membership = membership_pb2_grpc.MembershipServiceStub(channel)

    def create_webhook(self, programme_id: str, url: str, *types: str) -> events_pb2.CreateWebhookResponse:
        return self.events.CreateWebhook(events_pb2.CreateWebhookRequest(
            request_id=new_id(), webhook=events_pb2.Webhook(programme_id=programme_id, url=url, event_types=types)))

    def watch(self, programme_id: str, after_cursor: str = "", *types: str) -> Any:
        return self.events.WatchEvents(events_pb2.WatchEventsRequest(
            programme_id=programme_id, after_cursor=after_cursor, event_types=types), timeout=30)


@pytest.fixture
def api(grpc_server: ServerThread, make_key: Any) -> Iterator[EventsApi]:
    with grpc.insecure_channel(grpc_server.address) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        _name, key = make_key()
        paths = FieldPathCheck()
        yield EventsApi(grpc.intercept_channel(ch, BearerKey(key), paths))
        paths.assert_clean()


def take(stream: Any, n: int) -> list[events_pb2.Event]:
    """The next ``n`` events of a WatchEvents stream."""
    return [next(stream).event for _ in range(n)]


def parsed(body: dict[str, Any]) -> events_pb2.Event:
    """A webhook body as the Event message it is the JSON form of."""
    return json_format.ParseDict(body, events_pb2.Event())


async def all_final(db: Any, timeout_s: float = 30.0) -> None:
    """Wait until every event written so far is final (below the oldest running transaction of the
    whole PostgreSQL server, which other test sessions share), so a read sees them all."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with db.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(tx) < pg_snapshot_xmin(pg_current_snapshot()), true)"
                                     " FROM outbox_event")
            if (await cur.fetchone())[0]:
                return
        assert time.monotonic() < deadline, "events still not final"
        await asyncio.sleep(0.05)
