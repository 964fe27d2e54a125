"""The SRE's metrics: outstanding points by expiry month, open holds, expiry lag (read on scrape),
and the counters the domain reports through loyalty_core.observe."""

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from loyalty_core import observe
from loyalty_core.clock import ManualClock
from server.metrics import Metrics
from tests.fixtures.clock import START_US

NOW = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=START_US)


def insert_programme(conn) -> str:
    programme_id = str(uuid.uuid4())
    conn.execute(
        """INSERT INTO programme (programme_id, name, enabled, currency_code, point_value_minor,
               point_lifetime_days, activation_delay_days, order_pay_share_bps, default_cashback_bps,
               default_pay_share_bps, discounted_items_earn, compatibility, refund_returns_spent_points,
               hold_ttl_s, negative_balance_policy, debt_limit_points, welcome_bonus_points,
               welcome_bonus_lifetime_days, require_confirmation, purchase_counts_when, card_secret_required,
               created_at, updated_at)
           VALUES (%s, %s, true, 'EUR', 1, 0, 0, 10000, 0, 10000, false, 'points_after_discounts', false,
                   900, 'refuse', 0, 0, 0, false, 'captured', false, %s, %s)""",
        (programme_id, f"gauges-{programme_id}", NOW, NOW))
    return programme_id


def insert_member(conn, programme_id) -> str:
    member_id = str(uuid.uuid4())
    conn.execute("INSERT INTO member (member_id, programme_id, card_number, status, enrolled_at) "
                 "VALUES (%s, %s, %s, 'active', %s)", (member_id, programme_id, member_id, NOW))
    return member_id


def insert_lot(conn, member_id, remaining, expires_at) -> int:
    return conn.execute(
        "INSERT INTO lot (member_id, source, amount, remaining, activates_at, expires_at, created_at) "
        "VALUES (%s, 'manual_accrual', %s, %s, %s, %s, %s) RETURNING lot_id",
        (member_id, remaining + 50, remaining, NOW - timedelta(days=400), expires_at, NOW)).fetchone()[0]


def insert_hold(conn, member_id, programme_id, taken, created_at, expires_at):
    """An open hold of the points it took from lots: taken = [(lot_id, points)]."""
    conn.execute("INSERT INTO hold (member_id, hold_id, programme_id, order_id, points, state, lot_ids, lot_points, "
                 "created_at, expires_at) VALUES (%s, %s, %s, %s, %s, 'open', %s, %s, %s, %s)",
                 (member_id, uuid.uuid4(), programme_id, str(uuid.uuid4()), sum(p for _, p in taken),
                  [lot for lot, _ in taken], [p for _, p in taken], created_at, expires_at))


@pytest.fixture
def own_database(create_database):
    """A database of its own: the expiry lag is the oldest overdue lot or hold of all programmes."""
    return create_database(migrated=True)


def test_outstanding_points_open_holds_and_expiry_lag_are_read_on_scrape(own_database):
    database_url = own_database
    clock = ManualClock(START_US)
    m = Metrics(CollectorRegistry())
    m.watch_ledger(database_url, clock, max_age_s=0)
    value = m.registry.get_sample_value
    with psycopg.connect(database_url) as conn:
        programme = insert_programme(conn)
        member = insert_member(conn, programme)
        march = insert_lot(conn, member, 100, datetime(2026, 3, 10, tzinfo=UTC))
        insert_lot(conn, member, 40, datetime(2026, 3, 31, 23, tzinfo=UTC))
        never = insert_lot(conn, member, 7, None)
        insert_lot(conn, member, 0, datetime(2026, 4, 1, tzinfo=UTC))  # spent: owes nothing
        # Held points are still owed, in the month of the lots they came from.
        insert_hold(conn, member, programme, [(march, 30)], NOW - timedelta(minutes=20), NOW + timedelta(minutes=10))
        insert_hold(conn, member, programme, [(march, 2), (never, 10)], NOW - timedelta(minutes=5),
                    NOW + timedelta(minutes=25))

    assert value("loyalty_ledger_gauges_up") == 1
    assert value("loyalty_outstanding_points", {"programme_id": programme, "expiry_month": "2026-03"}) == 172
    assert value("loyalty_outstanding_points", {"programme_id": programme, "expiry_month": "never"}) == 17
    assert value("loyalty_outstanding_points", {"programme_id": programme, "expiry_month": "2026-04"}) is None
    assert value("loyalty_open_holds", {"programme_id": programme}) == 2
    assert value("loyalty_open_held_points", {"programme_id": programme}) == 42
    assert value("loyalty_oldest_open_hold_age_seconds", {"programme_id": programme}) == 20 * 60

    # Time passes and no expiry run comes: the oldest overdue hold (or lot) says how far behind it is.
    assert value("loyalty_expiry_lag_seconds") == 0
    clock.advance(seconds=15 * 60)
    assert value("loyalty_expiry_lag_seconds") == 5 * 60


def test_the_gauges_say_so_when_the_database_cannot_be_read():
    m = Metrics(CollectorRegistry())
    m.watch_ledger("postgresql://nobody@127.0.0.1:1/none", ManualClock(START_US), max_age_s=0)
    assert m.registry.get_sample_value("loyalty_ledger_gauges_up") == 0
    assert m.registry.get_sample_value("loyalty_expiry_lag_seconds") is None


def test_points_are_counted_only_when_their_transaction_commits():
    m = Metrics(CollectorRegistry())
    value = m.registry.get_sample_value
    with observe.observed_by(m, "p1"):
        with observe.transaction():
            observe.points_moved("earned", 10)
            observe.points_moved("spent", 3)
            observe.points_moved("released", 3)  # not a counter of its own
            with observe.in_programme("p2"):
                observe.points_moved("expired", 4)
        with pytest.raises(RuntimeError), observe.transaction():
            observe.points_moved("earned", 1000)
            raise RuntimeError("rolled back")
        observe.idempotent_replay("Capture")
        observe.tx_retry("40001")
    assert value("loyalty_points_earned_total", {"programme_id": "p1"}) == 10
    assert value("loyalty_points_spent_total", {"programme_id": "p1"}) == 3
    assert value("loyalty_points_expired_total", {"programme_id": "p2"}) == 4
    assert value("loyalty_idempotent_replays_total", {"method": "Capture"}) == 1
    assert value("loyalty_tx_retries_total", {"sqlstate": "40001"}) == 1


def test_the_ledger_counts_points_replays_and_expiry_runs(channel, grpc_server, clock):
    from loyalty.v1 import points_pb2
    from tests.faults.helpers import (
        Stubs, accrue, capture_request, checkout_request, create_programme, enrol)

    stubs = Stubs(channel)
    value = grpc_server.registry.get_sample_value
    programme = create_programme(stubs, point_lifetime_days=30)
    member = enrol(stubs, programme)
    accrue(stubs, programme, member, 100)
    stubs.checkout.Checkout(checkout_request(programme, member, "m-1", 500, 30), timeout=10)
    for _ in range(2):  # the second is a replay: one effect, counted once
        stubs.checkout.Capture(capture_request(programme, "m-1"), timeout=10)
    clock.advance(days=31)
    stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=programme), timeout=10)

    labels = {"programme_id": programme}
    # 100 accrued + (500 - 30) // 10 = 47 earned; 30 held then spent; 70 + 47 burnt after 30 days.
    assert value("loyalty_points_earned_total", labels) == 147
    assert value("loyalty_points_held_total", labels) == 30
    assert value("loyalty_points_spent_total", labels) == 30
    assert value("loyalty_points_expired_total", labels) == 117
    assert value("loyalty_idempotent_replays_total", {"method": "Capture"}) == 1
    assert value("loyalty_expiry_run_seconds_count") == 1
