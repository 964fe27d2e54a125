"""64 tills spending from one member, 64 from members of their own, and the expiry run, all at
once: no overdraft, no deadlock or serialization failure reaches a caller, and the sums agree;
and a queue on one member's lock is not mistaken for a database outage."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2

from loyalty.v1 import points_pb2
from tests.faults.helpers import (
    Stubs,
    accrue,
    assert_ledger_clean,
    balance,
    capture_request,
    checkout_request,
    create_programme,
    enrol,
    reason,
)
from tests.fixtures import citus
from tests.fixtures.keys import ALL_RIGHTS, BearerKey, create_key
from tests.fixtures.server import ServerProcess, ServerThread, health_status, make_test_settings

pytestmark = pytest.mark.slow

HOT_TILLS = 64
COLD_TILLS = 64
ORDERS = 3
HOT_POINTS = 2_000
BURNING_POINTS = 500
# Each order pays 20 of its 25 in points and earns nothing (5 // 10 = 0): the hot member's
# tills ask for 64 * 3 * 20 = 3,840 points of its 2,500, so many must be refused.
PRICE, POINTS = 25, 20
# Refusals a till may meet on the hot member: the only answers besides OK.
OUT_OF_POINTS = {"points_must_not_exceed_balance", "points_must_not_exceed_payable_limit"}


def test_no_overdraft_no_deadlock_and_the_sums_agree(create_database):
    database_url = create_database(migrated=True)
    _name, key = create_key(database_url, ALL_RIGHTS)
    # The test races the hot member's tills on its lock, so the bounds on one member's calls
    # (which would refuse most of them at once, tests/faults/test_hot_member.py) are lifted.
    env = {"LOYALTY_DATABASE_URL": database_url, "LOYALTY_MIGRATE_ON_START": "false",
           "LOYALTY_POOL_MAX_SIZE": "10", "LOYALTY_MEMBER_CALLS_MAX": str(HOT_TILLS),
           "LOYALTY_MEMBER_LOCK_TIMEOUT_S": "60"}
    if citus.CITUS_MODE:
        # Three PostgreSQL instances on this machine's two cores make each transaction several times
        # slower (docs/scale-out.md), so the 128 tills queue longer for the pool's 10 connections
        # than its 5 s default: what is tested is the ledger's sums, not the pool's patience.
        env["LOYALTY_POOL_TIMEOUT_S"] = "60"
    server = ServerProcess(env).start().wait_serving()
    raw = grpc.insecure_channel(server.address)
    stubs = Stubs(grpc.intercept_channel(raw, BearerKey(key)))
    try:
        programme = create_programme(stubs)
        hot = enrol(stubs, programme)
        accrue(stubs, programme, hot, HOT_POINTS)
        cold = [enrol(stubs, programme) for _ in range(COLD_TILLS)]
        for member in cold:
            accrue(stubs, programme, member, ORDERS * POINTS)
        # Points that burn while the tills spend: expiry and spending race for the same lot.
        soon = timestamp_pb2.Timestamp()
        soon.FromSeconds(int(time.time()) + 1)
        accrue(stubs, programme, hot, BURNING_POINTS, points_pb2.Expiry(expire_time=soon))

        outcomes: Counter[str] = Counter()
        spent_by: Counter[str] = Counter()
        lock = threading.Lock()
        start = threading.Barrier(HOT_TILLS + COLD_TILLS + 1)
        tills_done = threading.Event()

        def till(member: str, name: str) -> None:
            start.wait()
            for n in range(ORDERS):
                order_id = f"{name}-{n}"
                try:
                    stubs.checkout.Checkout(checkout_request(programme, member, order_id, PRICE, POINTS), timeout=30)
                    captured = stubs.checkout.Capture(capture_request(programme, order_id), timeout=30)
                except grpc.RpcError as err:
                    with lock:
                        outcomes[f"{err.code().name}:{reason(err)}"] += 1
                    continue
                with lock:
                    outcomes["OK"] += 1
                    spent_by[member] += captured.spent_points

        expiry_runs: list[int] = []

        def expiry() -> None:
            start.wait()
            while not tills_done.is_set():
                resp = stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=programme), timeout=30)
                expiry_runs.append(resp.points_expired)
                time.sleep(0.05)

        with ThreadPoolExecutor(HOT_TILLS + COLD_TILLS + 1) as pool:
            runner = pool.submit(expiry)
            tills = [pool.submit(till, hot, f"hot-{i}") for i in range(HOT_TILLS)]
            tills += [pool.submit(till, member, f"cold-{i}") for i, member in enumerate(cold)]
            for t in tills:
                t.result()
            # Past the burning lot's expiry, so the run has had its chance at it.
            time.sleep(max(0.0, soon.seconds + 0.5 - time.time()))
            stubs.points.RunExpiry(points_pb2.RunExpiryRequest(programme_id=programme), timeout=30)
            tills_done.set()
            runner.result()

        allowed = {"OK"} | {f"FAILED_PRECONDITION:{r}" for r in OUT_OF_POINTS}
        assert set(outcomes) <= allowed, outcomes
        assert outcomes["OK"] >= COLD_TILLS * ORDERS, "a till with enough points was refused"
        assert sum(n for k, n in outcomes.items() if k != "OK") > 0, "the hot member was never short"
        assert len(expiry_runs) >= 2

        hot_balance = balance(stubs, programme, hot)
        assert hot_balance.active_points >= 0 and hot_balance.held_points == 0
        assert hot_balance.spent_total_points == spent_by[hot]
        assert hot_balance.earned_total_points == HOT_POINTS + BURNING_POINTS
        assert (hot_balance.active_points + hot_balance.pending_points
                == HOT_POINTS + BURNING_POINTS - spent_by[hot] - hot_balance.expired_total_points)
        assert hot_balance.expired_total_points <= BURNING_POINTS
        for member in cold:
            got = balance(stubs, programme, member)
            assert (got.active_points, got.spent_total_points) == (0, ORDERS * POINTS)
        assert_ledger_clean(stubs, programme)
    finally:
        raw.close()
        assert server.terminate() == 0


@pytest.fixture
def unbounded_server(database_url, clock):
    """A server whose calls wait for one member's lock as long as it takes and as many as come
    (the bounds of tests/faults/test_hot_member.py lifted), so a queue can fill the pool."""
    server = ServerThread(make_test_settings(database_url, member_calls_max=100, member_lock_timeout_s=60),
                          clock).start()
    yield server
    server.stop()


def test_a_queue_on_one_member_does_not_make_the_server_call_itself_down(unbounded_server, make_key, database_url):
    """Calls queued on one member's lock hold every pooled connection; the database is fine, so
    health stays SERVING and the queue drains when the lock is let go."""
    grpc_server = unbounded_server
    raw = grpc.insecure_channel(grpc_server.address)
    stubs = Stubs(grpc.intercept_channel(raw, BearerKey(make_key()[1])))
    programme = create_programme(stubs)
    member = enrol(stubs, programme)
    accrue(stubs, programme, member, 1_000)
    queued = grpc_server.settings.pool_max_size
    with psycopg.connect(database_url) as holder:
        holder.execute("SELECT 1 FROM member WHERE member_id = %s FOR UPDATE", (member,))
        with ThreadPoolExecutor(queued) as pool:
            calls = [pool.submit(stubs.checkout.Checkout,
                                 checkout_request(programme, member, f"q-{i}", PRICE, POINTS), timeout=30)
                     for i in range(queued)]
            # Longer than the pool time-out and many probe intervals: every probe meets a full pool.
            deadline = time.monotonic() + 2 * grpc_server.settings.pool_timeout_s + 1
            with grpc.insecure_channel(grpc_server.address) as plain:
                while time.monotonic() < deadline:
                    assert health_status(plain) == "SERVING"
                    time.sleep(0.1)
            holder.rollback()
            assert all(c.result().order.hold.points == POINTS for c in calls)
    assert_ledger_clean(stubs, programme)
    raw.close()
