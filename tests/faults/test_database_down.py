"""A database that dies is noticed within a second: health NOT_SERVING, calls UNAVAILABLE at once
while it is down (not after the pool's time-out), and the same process serves again by itself.

The death is a TCP proxy the test cuts (every connection dropped, new ones refused), as a
SIGKILLed PostgreSQL looks to the server; the machine's shared PostgreSQL is never touched.
"""

from __future__ import annotations

import time

import grpc
import pytest

from tests.faults.helpers import Stubs, accrue, balance, create_programme, enrol, reason
from tests.fixtures.keys import ALL_RIGHTS, BearerKey, create_key
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.server import ServerProcess, health_status, wait_for

pytestmark = pytest.mark.slow

NOTICED_WITHIN_S = 1.0
FAILS_WITHIN_S = 0.2


def seconds_until(predicate, timeout_s: float = 10.0) -> float:
    started = time.monotonic()
    wait_for(predicate, timeout_s, "the condition")
    return time.monotonic() - started


@pytest.mark.parametrize("load", ["idle", "a call meets it"])
def test_a_dead_database_is_noticed_within_a_second_and_calls_fail_at_once(create_database, load):
    database_url = create_database(migrated=True)
    _name, key = create_key(database_url, ALL_RIGHTS)
    proxy = TcpProxy(database_url).start()
    # The defaults of the pool (5 s) and the probe; keys are looked up on every call.
    server = ServerProcess({"LOYALTY_DATABASE_URL": proxy.url, "LOYALTY_MIGRATE_ON_START": "false",
                            "LOYALTY_AUTH_CACHE_TTL_S": "0"}).start().wait_serving()
    raw = grpc.insecure_channel(server.address)
    stubs = Stubs(grpc.intercept_channel(raw, BearerKey(key)))
    try:
        programme = create_programme(stubs)
        member = enrol(stubs, programme)
        accrue(stubs, programme, member, 100)

        proxy.cut()
        cut_at = time.monotonic()
        if load == "a call meets it":
            with pytest.raises(grpc.RpcError) as first:
                balance(stubs, programme, member)
            assert first.value.code() == grpc.StatusCode.UNAVAILABLE
        wait_for(lambda: health_status(raw) == "NOT_SERVING", 10, "NOT_SERVING")
        noticed_s = time.monotonic() - cut_at

        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            balance(stubs, programme, member)
        failed_s = time.monotonic() - started
        assert (refused.value.code(), reason(refused.value)) == (grpc.StatusCode.UNAVAILABLE, "database_unavailable")

        proxy.restore()
        recovered_s = seconds_until(lambda: health_status(raw) == "SERVING")
        assert balance(stubs, programme, member).active_points == 100
        print(f"{load}: NOT_SERVING after {noticed_s:.3f} s, a call refused in {failed_s:.3f} s, "
              f"SERVING {recovered_s:.3f} s after the database came back")
        assert noticed_s < NOTICED_WITHIN_S
        assert failed_s < FAILS_WITHIN_S
    finally:
        raw.close()
        assert server.terminate() == 0
        proxy.cut()
