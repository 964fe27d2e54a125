"""The Python examples of docs/integration.md run against a real server, as the doc shows them
(the till's is clients/python/examples/till.py, run by test_standalone.py; Node's: test_node.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.clients.conftest import TillCustomer

ROOT = Path(__file__).resolve().parents[2]


def test_the_ecommerce_example_cancels_captures_once_completes_and_refunds(till_customer: TillCustomer, tmp_path: Path):
    ran = subprocess.run(
        [sys.executable, str(ROOT / "docs/examples/ecommerce.py"),
         till_customer.address, till_customer.programme_id, till_customer.member_id],
        capture_output=True, text=True, timeout=60, env={"LOYALTY_API_KEY": till_customer.key, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,  # the installed client, not the repository's files
    )
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    refund = (seen.pop("refund_money_minor"), seen.pop("refund_returned_points"))
    assert seen == {"points_applied": 5, "released": 5, "same_hold_on_resend": True, "captured_once": True,
                    "completed": "ORDER_STATE_COMPLETED"}
    # The mug (900) comes back as its share of the money paid; the points that paid the rest stay spent,
    # as the test programme does not return spent points (docs/ledger.md, Refunds).
    assert refund == (800, 0), refund
