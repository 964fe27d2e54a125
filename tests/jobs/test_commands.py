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


def test_expiry_notices_and_the_event_purge_run_from_the_command_line(channel, clock, database_url):
    stubs = Stubs(channel)
    programme = create_programme(stubs, expiry_notice_days=[7])
    member = enrol(stubs, programme)
    accrue(stubs, programme, member, 25, points_pb2.Expiry(lifetime_days=30))
    as_of = datetime.fromtimestamp(clock.now_us() / 1e6 + 25 * 86_400, UTC).isoformat()
    run = _command(database_url, "expiry-notices", "--as-of", as_of)
    assert run.returncode == 0, run.stderr
    assert "wrote 1 expiring-points notices" in run.stdout
    assert "wrote 0 " in _command(database_url, "expiry-notices", "--as-of", as_of).stdout
    # Years later every event is past its retention, and no webhook holds them back.
    purge = _command(database_url, "purge-events", "--as-of", "2100-01-01T00:00:00+00:00")
    assert purge.returncode == 0, purge.stderr
    assert int(purge.stdout.split()[1]) >= 3  # enrolled, earned and the notice, at least
