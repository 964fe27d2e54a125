"""`loyalty-core review-levels`: the scheduled level review from the command line, as cron runs it."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from loyalty_core.clock import ManualClock
from tests.membership.conftest import Members


def test_review_levels_drops_who_missed_the_period_as_of_the_time_given(
        api: Members, clock: ManualClock, database_url: str) -> None:
    p = api.programme()
    bronze = api.level(p.programme_id, "Bronze", 1)
    api.level(p.programme_id, "Silver", 2, visits_needed=1, visit_period_days=30)
    m = api.enrol(p.programme_id)
    api.buy(p.programme_id, m.member_id, [("bar", 1, 1_000)])
    as_of = datetime.fromtimestamp(clock.now_us() // 1_000_000 + 31 * 86_400, UTC).isoformat()
    run = subprocess.run([sys.executable, "-m", "server", "review-levels", "--programme-id", p.programme_id,
                          "--as-of", as_of], capture_output=True, text=True,
                         env={"LOYALTY_DATABASE_URL": database_url, "PATH": ""}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "reviewed 1 members: 1 dropped one level" in run.stdout
    assert api.member(p.programme_id, m.member_id).level_id == bronze.level_id


def test_review_levels_refuses_a_later_as_of_and_says_why(api: Members, database_url: str) -> None:
    p = api.programme()
    later = datetime.fromtimestamp(datetime.now(UTC).timestamp() + 86_400, UTC).isoformat()
    run = subprocess.run([sys.executable, "-m", "server", "review-levels", "--programme-id", p.programme_id,
                          "--as-of", later], capture_output=True, text=True,
                         env={"LOYALTY_DATABASE_URL": database_url, "PATH": ""}, timeout=60)
    assert run.returncode == 2
    assert "value_out_of_range: as_of_time must not be later than now" in run.stderr
    assert "Traceback" not in run.stderr
