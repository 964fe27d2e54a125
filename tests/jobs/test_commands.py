"""A `loyalty-core` command per scheduled job, for those who schedule with cron instead."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from loyalty.v1 import points_pb2
from tests.faults.helpers import Stubs, accrue, balance, create_programme, enrol


def _command(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server", *args], capture_output=True, text=True,
                          env={"LOYALTY_DATABASE_URL": database_url, "PATH": ""}, timeout=60)


def test_expire_burns_what_is_due_as_of_the_time_given(channel, clock, database_url):
    stubs = Stubs(channel)
    programme = create_programme(stubs)
    member = enrol(stubs, programme)
    accrue(stubs, programme, member, 40, points_pb2.Expiry(lifetime_days=1))
    accrue(stubs, programme, member, 60, points_pb2.Expiry(never=True))
    as_of = datetime.fromtimestamp(clock.now_us() / 1e6 + 2 * 86_400, UTC).isoformat()
    run = _command(database_url, "expire", "--programme-id", programme, "--as-of", as_of)
    assert run.returncode == 0, run.stderr
    assert "1 members: 1 lots expired (40 points)" in run.stdout
    got = balance(stubs, programme, member)
    assert (got.active_points, got.expired_total_points) == (60, 40)
    again = _command(database_url, "expire", "--programme-id", programme, "--as-of", as_of)
    assert "0 members: 0 lots expired (0 points)" in again.stdout


def test_recalculate_discounts_recounts_a_programme(channel, database_url):
    stubs = Stubs(channel)
    programme = create_programme(stubs)
    enrol(stubs, programme)
    run = _command(database_url, "recalculate-discounts", "--programme-id", programme)
    assert run.returncode == 0, run.stderr
    assert "recalculated 1 members: 0 changed" in run.stdout
