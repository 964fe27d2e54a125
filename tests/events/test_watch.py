"""WatchEvents: a stream from a cursor, resumable with nothing lost or reordered, behind the guard."""

from __future__ import annotations

import logging
import threading

import grpc
import psycopg
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from loyalty.v1 import events_pb2
from loyalty_core.events import PAYLOAD_FIELDS
from tests.events.conftest import EventsApi, take
from tests.fixtures.server import wait_for
from tests.grpc.conftest import refusal, until_not_busy

WRITERS = 4
ACCRUALS_EACH = 15


def test_a_stream_resumes_from_its_cursor_with_nothing_lost_or_reordered(api: EventsApi, database_url):
    p = api.programme()
    members = [api.enrol(p.programme_id).member_id for _ in range(WRITERS)]
    first = api.watch(p.programme_id, "0-0")
    seen = take(first, WRITERS)  # the enrolments
    assert [e.type for e in seen] == ["member.enrolled"] * WRITERS

    def write(member_id: str) -> None:
        for i in range(ACCRUALS_EACH):
            until_not_busy(api.accrue, p.programme_id, member_id, i + 1)

    # Writers commit concurrently while the stream is read and then dropped half-way.
    threads = [threading.Thread(target=write, args=(m,)) for m in members]
    for t in threads:
        t.start()
    seen += take(first, WRITERS * ACCRUALS_EACH // 2)
    first.cancel()
    for t in threads:
        t.join()
    resumed = api.watch(p.programme_id, seen[-1].cursor)
    seen += take(resumed, WRITERS * (ACCRUALS_EACH + 1) - len(seen))
    resumed.cancel()

    assert len({e.event_id for e in seen}) == len(seen)
    for m in members:
        mine = [e for e in seen if e.member_id == m]
        assert [e.sequence for e in mine] == list(range(1, ACCRUALS_EACH + 2))
        assert [e.points_moved.points for e in mine[1:]] == list(range(1, ACCRUALS_EACH + 1))
    with psycopg.connect(database_url) as conn:
        stored = {r[0] for r in conn.execute(
            "SELECT event_id::text FROM outbox_event WHERE programme_id = %s", (p.programme_id,))}
    assert stored == {e.event_id for e in seen}


def test_a_stream_from_now_sends_only_what_commits_later(api: EventsApi):
    p = api.programme()
    m = api.enrol(p.programme_id).member_id
    stream = api.watch(p.programme_id, "", "points.earned")
    api.enrol(p.programme_id)  # another type: filtered out
    api.accrue(p.programme_id, m, 42)
    (event,) = take(stream, 1)
    stream.cancel()
    assert (event.type, event.member_id, event.sequence, event.points_moved.points) == ("points.earned", m, 2, 42)


def test_the_stream_is_guarded_like_any_call(api: EventsApi, channel_with, grpc_server, caplog):
    caplog.set_level(logging.INFO, logger="loyalty.access")
    p = api.programme()
    with pytest.raises(grpc.RpcError) as refused:
        next(EventsApi(channel_with("read_only", "pos")).watch(p.programme_id))
    assert refusal(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "right_not_granted")
    other = api.programme()
    limited = EventsApi(channel_with("webhook_admin", programmes=[p.programme_id]))
    with pytest.raises(grpc.RpcError) as refused:
        next(limited.watch(other.programme_id))
    assert refusal(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")
    with pytest.raises(grpc.RpcError) as refused:
        next(limited.watch(""))  # every programme: not for a key of some
    assert refusal(refused.value) == (grpc.StatusCode.PERMISSION_DENIED, "programme_not_granted")
    with pytest.raises(grpc.RpcError) as refused:
        next(EventsApi(channel_with(key="")).watch(p.programme_id))
    assert refusal(refused.value) == (grpc.StatusCode.UNAUTHENTICATED, "credential_missing")
    for cursor in ("12", "a-b", "1-2-3", "99999999999999999999-1"):
        with pytest.raises(grpc.RpcError) as refused:
            next(api.watch(p.programme_id, cursor))
        assert refusal(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    with pytest.raises(grpc.RpcError) as refused:
        next(api.watch(p.programme_id, "", "points.minted"))
    assert refusal(refused.value) == (grpc.StatusCode.INVALID_ARGUMENT, "value_out_of_range")
    ok = api.watch(p.programme_id, "0-0")
    api.enrol(p.programme_id)
    take(ok, 1)
    ok.cancel()

    def handled() -> dict[str, str]:
        codes = {}
        for family in text_string_to_metric_families(generate_latest(grpc_server.registry).decode()):
            for sample in family.samples:
                if sample.name == "grpc_server_handled_total" and sample.labels["grpc_method"] == "WatchEvents":
                    codes[sample.labels["grpc_code"]] = sample.labels["grpc_type"]
        return codes

    # A cancelled stream is counted once the server has seen the cancellation.
    wait_for(lambda: "CANCELLED" in handled(), timeout_s=5, what="the cancelled stream counted")
    lines = [r for r in caplog.records if r.name == "loyalty.access" and getattr(r, "method", "").endswith("/WatchEvents")]
    assert {r.grpc_code for r in lines} >= {"PERMISSION_DENIED", "UNAUTHENTICATED", "INVALID_ARGUMENT", "CANCELLED"}
    assert {code: handled()[code] for code in ("PERMISSION_DENIED", "INVALID_ARGUMENT", "CANCELLED")} == dict.fromkeys(
        ("PERMISSION_DENIED", "INVALID_ARGUMENT", "CANCELLED"), "server_stream")


def test_the_event_message_documents_every_type():
    names = {f.name for f in events_pb2.Event.DESCRIPTOR.oneofs_by_name["payload"].fields}
    assert set(PAYLOAD_FIELDS.values()) == names


async def test_the_python_client_passes_the_stream_through_with_its_key(api: EventsApi, grpc_server, make_key):
    from loyalty.client import AsyncLoyaltyClient, LoyaltyClient

    p = api.programme()
    _name, key = make_key("webhook_admin")
    request = events_pb2.WatchEventsRequest(programme_id=p.programme_id, after_cursor="0-0")
    with LoyaltyClient(grpc_server.address, api_key=key) as client:
        stream = client.events.WatchEvents(request, timeout=30)
        member_id = api.enrol(p.programme_id).member_id
        first = next(stream).event
        stream.cancel()
    assert (first.type, first.member_id) == ("member.enrolled", member_id)
    async with AsyncLoyaltyClient(grpc_server.address, api_key=key) as client:
        call = client.events.WatchEvents(request, timeout=30)
        again = (await call.read()).event
        call.cancel()
    assert again == first
