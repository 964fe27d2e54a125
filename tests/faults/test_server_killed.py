"""The server killed (SIGKILL) in the middle of hundreds of checkouts and captures: after a restart
and the clients' retries with the same request ids, every acknowledged capture is in the ledger
exactly once and nothing else is."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tests.faults.helpers import (
    Stubs,
    accrue,
    assert_ledger_clean,
    balance,
    capture_request,
    checkout_request,
    create_programme,
    enrol,
    free_port,
    movements_by_order,
    until_final,
)
from tests.fixtures.keys import ALL_RIGHTS, BearerKey, create_key
from tests.fixtures.server import ServerProcess

pytestmark = pytest.mark.slow

MEMBERS = 16
ORDERS_PER_MEMBER = 20
START_POINTS = 100_000
# Reconnect quickly after the server comes back (gRPC's default backoff grows to minutes).
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500)]


def order_plan(member_index: int, n: int) -> tuple[str, int, int]:
    """(order id, price, points) of a member's n-th order; it earns (price - points) // 10."""
    return f"o-{member_index}-{n}", 1_000 + 7 * n, 50 + member_index + n


def test_every_acknowledged_capture_is_in_the_ledger_exactly_once(create_database):
    database_url = create_database(migrated=True)
    _name, key = create_key(database_url, ALL_RIGHTS)
    port = free_port()
    env = {"LOYALTY_DATABASE_URL": database_url, "LOYALTY_GRPC_ADDR": f"127.0.0.1:{port}",
           "LOYALTY_POOL_MAX_SIZE": "8", "LOYALTY_MIGRATE_ON_START": "false"}
    servers = [ServerProcess(env).start().wait_serving()]
    raw = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
    stubs = Stubs(grpc.intercept_channel(raw, BearerKey(key)))
    try:
        programme = create_programme(stubs)
        members = [enrol(stubs, programme) for _ in range(MEMBERS)]
        for member in members:
            accrue(stubs, programme, member, START_POINTS)

        acknowledged: list[str] = []
        retries: list[grpc.StatusCode] = []
        lock = threading.Lock()
        kills_done = threading.Event()

        def till(index: int) -> None:
            for n in range(ORDERS_PER_MEMBER):
                order_id, price, points = order_plan(index, n)
                held = until_final(stubs.checkout.Checkout,
                                   checkout_request(programme, members[index], order_id, price, points),
                                   on_retry=retries.append)
                assert held.order.hold.points == points
                captured = until_final(stubs.checkout.Capture, capture_request(programme, order_id),
                                       on_retry=retries.append)
                assert (captured.spent_points, captured.earned_points) == (points, (price - points) // 10)
                with lock:
                    acknowledged.append(order_id)

        def killer() -> None:
            # Kill twice: once early, once with the restarted server under full load.
            for at in (MEMBERS * ORDERS_PER_MEMBER // 4, MEMBERS * ORDERS_PER_MEMBER // 2):
                while len(acknowledged) < at:
                    time.sleep(0.005)
                assert servers[-1].terminate(sig=signal.SIGKILL) == -signal.SIGKILL
                servers.append(ServerProcess(env).start().wait_serving())
            kills_done.set()

        with ThreadPoolExecutor(MEMBERS + 1) as pool:
            kill = pool.submit(killer)
            tills = [pool.submit(till, i) for i in range(MEMBERS)]
            for t in tills:
                t.result()
            kill.result()
        assert kills_done.is_set()
        assert retries, "the kills never interrupted a call: the test proved nothing"

        expected = {order_plan(i, n)[0] for i in range(MEMBERS) for n in range(ORDERS_PER_MEMBER)}
        assert sorted(acknowledged) == sorted(expected)
        ledger = movements_by_order(database_url, programme)
        assert set(ledger) == expected, "an order in the ledger that no till made, or one missing"
        for order_id, kinds in ledger.items():
            assert kinds == {"held": 1, "spent": 1, "earned": 1}, (order_id, kinds)

        for index, member in enumerate(members):
            plans = [order_plan(index, n) for n in range(ORDERS_PER_MEMBER)]
            spent = sum(points for _, _, points in plans)
            earned = sum((price - points) // 10 for _, price, points in plans)
            got = balance(stubs, programme, member)
            assert (got.active_points, got.held_points) == (START_POINTS - spent + earned, 0)
            assert (got.spent_total_points, got.earned_total_points) == (spent, START_POINTS + earned)
        assert_ledger_clean(stubs, programme)
    finally:
        raw.close()
        for server in servers:
            if server.proc and server.proc.poll() is None:
                server.terminate()
