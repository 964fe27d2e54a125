"""Writes price with this process's copy of the programme only while its revision is current: a
change made elsewhere (another server process, an operator's SQL) reaches the very next write;
quotes may use the copy for up to its time to live."""

import uuid

import grpc
import psycopg
import pytest

from tests.grpc.conftest import refusal


def revision(url: str, programme_id: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT revision FROM programme WHERE programme_id = %s", (programme_id,)).fetchone()[0]


def change_elsewhere(url: str, sql: str, *params: object) -> None:
    """A change this server's process does not make, so nothing tells it to forget its copy."""
    with psycopg.connect(url) as conn:
        conn.execute(sql, params)


def test_a_capture_earns_at_the_rate_changed_elsewhere_a_moment_before(api, database_url):
    p = api.programme(default_cashback_bps=1_000)
    m = api.enrol(p.programme_id)
    first = api.checkout_order(p.programme_id, m.member_id, [("grocery", 1, 10_000)])
    assert api.capture(p.programme_id, first.order_id).earned_points == 10  # the process has its copy
    before = revision(database_url, p.programme_id)
    change_elsewhere(database_url, "UPDATE programme SET default_cashback_bps = 2000 WHERE programme_id = %s",
                     p.programme_id)
    assert revision(database_url, p.programme_id) == before + 1
    second = api.checkout_order(p.programme_id, m.member_id, [("grocery", 1, 10_000)])
    assert second.pricing.earned_points == 20
    assert api.capture(p.programme_id, second.order_id).earned_points == 20


def test_a_checkout_is_refused_at_once_when_the_programme_was_disabled_elsewhere(api, database_url):
    p = api.programme()
    m = api.enrol(p.programme_id)
    api.checkout_order(p.programme_id, m.member_id, [("grocery", 1, 1_000)])  # the process has its copy
    change_elsewhere(database_url, "UPDATE programme SET enabled = false WHERE programme_id = %s", p.programme_id)
    with pytest.raises(grpc.RpcError) as err:
        api.checkout_order(p.programme_id, m.member_id, [("grocery", 1, 1_000)])
    assert refusal(err.value) == (grpc.StatusCode.FAILED_PRECONDITION, "programme_disabled")


def test_every_change_to_a_programme_or_its_levels_raises_its_revision(api, database_url):
    p = api.programme()
    level_id = str(uuid.uuid4())
    steps = [
        ("UPDATE programme SET name = name || '.' WHERE programme_id = %s", p.programme_id),
        ("INSERT INTO level (programme_id, level_id, name, priority, spend_needed_minor, spend_period_days,"
         " visits_needed, visit_period_days, privilege, cashback_bps, discount_bps, created_at, updated_at)"
         " VALUES (%s, %s, 'silver', 1, 0, 0, 0, 0, 'cashback', 100, 0, now(), now())", p.programme_id, level_id),
        ("UPDATE level SET cashback_bps = 200 WHERE level_id = %s", level_id),
        ("DELETE FROM level WHERE level_id = %s", level_id),
    ]
    for sql, *params in steps:
        before = revision(database_url, p.programme_id)
        change_elsewhere(database_url, sql, *params)
        assert revision(database_url, p.programme_id) == before + 1, sql
