"""The events' scheduled jobs: expiring-points notices (one per member, date and window) and the purge."""

from __future__ import annotations

import subprocess
import sys

import grpc
import psycopg
import pytest

from loyalty.v1 import events_pb2, points_pb2
from loyalty_core.clock import ManualClock
from loyalty_core.service import events
from loyalty_core.store import jobs
from tests.events.conftest import MASTER_KEY, EventsApi, Receiver, all_final
from tests.grpc.conftest import new_id, refusal


def _notices(database_url: str, member_id: str) -> list[dict]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute(
            "SELECT payload FROM outbox_event WHERE member_id = %s AND type = 'points.expiring_soon' ORDER BY seq",
            (member_id,))]


def _accrue_for(api: EventsApi, programme_id: str, member_id: str, points: int, days: int) -> None:
    api.points.AccruePoints(points_pb2.AccruePointsRequest(
        request_id=new_id(), programme_id=programme_id, member_id=member_id, points=points,
        expiry=points_pb2.Expiry(lifetime_days=days)))


async def test_one_notice_per_member_date_and_window_nearest_window_only(db, api: EventsApi, clock: ManualClock,
                                                                          database_url):
    p = api.programme(expiry_notice_days=[30, 7])
    m = api.enrol(p.programme_id).member_id
    _accrue_for(api, p.programme_id, m, 100, 10)  # expires in 10 days: inside the 30-day window only
    _accrue_for(api, p.programme_id, m, 20, 10)  # the same date: one notice for both
    _accrue_for(api, p.programme_id, m, 5, 60)  # too far for any window
    quiet = api.enrol(p.programme_id).member_id
    _accrue_for(api, p.programme_id, quiet, 9, 3)  # expires in 3 days: both windows open, the nearest wins
    assert await events.write_expiry_notices(db, clock, batch=500) == (2, False)
    assert [(n["points"], n["days_before"]) for n in _notices(database_url, m)] == [(120, 30)]
    assert [(n["points"], n["days_before"]) for n in _notices(database_url, quiet)] == [(9, 7)]
    # Run again: nothing new. Four days on, the 7-day window of the first date opens.
    assert await events.write_expiry_notices(db, clock, batch=500) == (0, False)
    clock.advance(days=4)
    assert await events.write_expiry_notices(db, clock, batch=500) == (1, False)
    assert [n["days_before"] for n in _notices(database_url, m)] == [30, 7]
    assert await events.write_expiry_notices(db, clock, batch=500) == (0, False)


async def test_notices_run_in_bounded_batches_and_resume(db, api: EventsApi, clock: ManualClock, database_url):
    p = api.programme(expiry_notice_days=[7])
    members = [api.enrol(p.programme_id).member_id for _ in range(5)]
    for m in members:
        _accrue_for(api, p.programme_id, m, 10, 5)
    assert await events.write_expiry_notices(db, clock, batch=2) == (2, True)
    assert await events.write_expiry_notices(db, clock, batch=2) == (2, True)
    assert await events.write_expiry_notices(db, clock, batch=2) == (1, False)
    assert [len(_notices(database_url, m)) for m in members] == [1] * 5


def test_notice_windows_are_checked(api: EventsApi):
    for days, field in (([0], "programme.expiry_notice_days[0]"), ([7, 7], "programme.expiry_notice_days[1]"),
                        ([1, 2, 3, 4, 5, 6], "programme.expiry_notice_days")):
        with pytest.raises(grpc.RpcError) as refused:
            api.programme(expiry_notice_days=days)
        assert refusal(refused.value)[0] == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in str(refused.value.trailing_metadata())


async def test_the_purge_keeps_what_a_webhook_has_not_passed(db, api: EventsApi, clock: ManualClock, database_url):
    p = api.programme()
    created = api.create_webhook(p.programme_id, "http://127.0.0.1:9/never-answers")
    m = api.enrol(p.programme_id).member_id
    clock.advance(days=8)
    await all_final(db)
    # Old enough, but the webhook has not had it: kept (other tests' old events may go).
    await events.purge_events(db, clock, retention_days=7, batch=100, max_batches=10)
    assert _kept(database_url, m) == 1
    api.events.DeleteWebhook(events_pb2.DeleteWebhookRequest(request_id=new_id(), programme_id=p.programme_id,
                                                             webhook_id=created.webhook.webhook_id))
    assert await events.purge_events(db, clock, retention_days=7, batch=100, max_batches=10) >= 1
    assert _kept(database_url, m) == 0


def _kept(database_url: str, member_id: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM outbox_event WHERE member_id = %s", (member_id,)).fetchone()[0]


async def test_deliver_webhooks_runs_from_the_command_line(db, api: EventsApi, receiver: Receiver, database_url):
    p = api.programme()
    receiver.secret = api.create_webhook(p.programme_id, receiver.url).signing_secret
    m = api.enrol(p.programme_id).member_id
    api.accrue(p.programme_id, m, 8)

    def command(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server", "deliver-webhooks", "--seconds", "20"],
                              capture_output=True, text=True, timeout=60,
                              env={"LOYALTY_DATABASE_URL": database_url, "PATH": "", **env})

    refused = command()
    assert refused.returncode == 1 and "LOYALTY_WEBHOOK_MASTER_KEY" in refused.stderr
    await all_final(db)
    # While a server's scheduler (here: this session) holds the job, the command leaves it alone.
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s, hashtext('deliver_webhooks'))", (jobs.LOCK_SPACE,))
        held = command(LOYALTY_WEBHOOK_MASTER_KEY=MASTER_KEY)
    assert held.returncode == 0 and "another runner holds" in held.stdout and receiver.got == []
    run = command(LOYALTY_WEBHOOK_MASTER_KEY=MASTER_KEY)
    assert run.returncode == 0, run.stderr
    assert [(e["type"], e["sequence"]) for e in receiver.first_receipts()] == [("member.enrolled", 1),
                                                                               ("points.earned", 2)]
    assert receiver.bad_signatures == 0
