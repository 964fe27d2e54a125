"""PostgreSQL goes away under load and comes back: calls during the outage fail with UNAVAILABLE,
the same server process recovers by itself, and the retried writes land exactly once.

The "restart" is a TCP proxy the test controls, cutting every connection and refusing new ones:
to the server that is what a PostgreSQL restart looks like, and the machine's shared
PostgreSQL, which other tests use, is never touched.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from tests.faults.helpers import (
    RETRYABLE,
    Stubs,
    accrue,
    assert_ledger_clean,
    balance,
    capture_request,
    checkout_request,
    create_programme,
    enrol,
    movements_by_order,
    until_final,
)
from tests.fixtures.keys import ALL_RIGHTS, BearerKey, create_key
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.server import ServerProcess, wait_for

pytestmark = pytest.mark.slow

TILLS = 8
START_POINTS = 100_000
OUTAGE_S = 3.0


def test_calls_fail_unavailable_during_the_outage_and_the_server_recovers_alone(create_database):
    database_url = create_database(migrated=True)
    _name, key = create_key(database_url, ALL_RIGHTS)
    proxy = TcpProxy(database_url).start()
    server = ServerProcess({"LOYALTY_DATABASE_URL": proxy.url, "LOYALTY_POOL_TIMEOUT_S": "1",
                            "LOYALTY_POOL_RECONNECT_TIMEOUT_S": "1", "LOYALTY_MIGRATE_ON_START": "false",
                            # Keys are looked up again during the outage too.
                            "LOYALTY_AUTH_CACHE_TTL_S": "0.5"}).start().wait_serving()
    raw = grpc.insecure_channel(server.address)
    stubs = Stubs(grpc.intercept_channel(raw, BearerKey(key)))
    try:
        programme = create_programme(stubs)
        members = [enrol(stubs, programme) for _ in range(TILLS)]
        for member in members:
            accrue(stubs, programme, member, START_POINTS)

        phase = {"name": "before"}
        codes: dict[str, list[grpc.StatusCode]] = {"before": [], "outage": [], "after": []}
        acknowledged: dict[int, list[tuple[str, int, int]]] = {i: [] for i in range(TILLS)}
        stop = threading.Event()
        lock = threading.Lock()

        def note(code: grpc.StatusCode) -> None:
            with lock:
                codes[phase["name"]].append(code)

        def attempt(call, request):
            """One try, as a till makes it; the code is noted, retryable failures are tried again."""
            while True:
                try:
                    resp = call(request, timeout=10)
                    note(grpc.StatusCode.OK)
                    return resp
                except grpc.RpcError as err:
                    note(err.code())
                    if err.code() not in RETRYABLE:
                        raise
                if stop.is_set():
                    # The load is over: finish with the till's usual patient retry.
                    return until_final(call, request)
                time.sleep(0.05)

        def till(index: int) -> None:
            n = 0
            while not stop.is_set():
                order_id, price, points = f"o-{index}-{n}", 500 + n, 10 + index
                attempt(stubs.checkout.Checkout, checkout_request(programme, members[index], order_id, price, points))
                attempt(stubs.checkout.Capture, capture_request(programme, order_id))
                acknowledged[index].append((order_id, price, points))
                n += 1

        with ThreadPoolExecutor(TILLS) as pool:
            tills = [pool.submit(till, i) for i in range(TILLS)]
            wait_for(lambda: sum(map(len, acknowledged.values())) >= 40, 30, "load before the outage")

            phase["name"] = "outage"
            proxy.cut()
            time.sleep(OUTAGE_S)
            proxy.restore()
            phase["name"] = "after"
            restored_at = time.monotonic()
            done_before = sum(map(len, acknowledged.values()))
            # Recovery by itself: the same process serves again, no restart.
            wait_for(lambda: sum(map(len, acknowledged.values())) >= done_before + 40, 30, "load after the outage")
            recovered_s = time.monotonic() - restored_at
            stop.set()
            for t in tills:
                t.result()

        assert server.proc.poll() is None, "the server process died"
        assert recovered_s < 15
        outage = set(codes["outage"])
        assert grpc.StatusCode.UNAVAILABLE in outage, "no call met the outage: the test proved nothing"
        assert outage <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, outage
        assert set(codes["before"]) == {grpc.StatusCode.OK}
        assert set(codes["after"]) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}

        ledger = movements_by_order(database_url, programme)
        made = {order_id for plans in acknowledged.values() for order_id, _, _ in plans}
        assert set(ledger) == made
        for order_id, kinds in ledger.items():
            assert kinds == {"held": 1, "spent": 1, "earned": 1}, (order_id, kinds)
        for index, member in enumerate(members):
            spent = sum(points for _, _, points in acknowledged[index])
            earned = sum((price - points) // 10 for _, price, points in acknowledged[index])
            assert balance(stubs, programme, member).active_points == START_POINTS - spent + earned
        assert_ledger_clean(stubs, programme)
    finally:
        raw.close()
        # The server first: once it is gone nothing can connect through the proxy while it closes.
        assert server.terminate() == 0
        proxy.cut()
