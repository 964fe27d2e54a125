"""The e-commerce examples of docs/integration.md, Python and TypeScript, run against a real server as
the doc shows them (the tills' are run by test_standalone.py and test_node.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import TillCustomer, run_in_node_client

ROOT = Path(__file__).resolve().parents[2]


def assert_the_shop_saw_its_sequence(seen: dict[str, Any]) -> None:
    """Both examples print the same; int64 comes as numbers from Python and as strings from Node."""
    numbers = {key: int(seen.pop(key)) for key in ("points_applied", "released", "refund_money_minor",
                                                   "refund_returned_points")}
    assert seen == {"same_hold_on_resend": True, "captured_once": True, "completed": "ORDER_STATE_COMPLETED"}
    # The mug (900) comes back as its share of the money paid; the points that paid the rest stay spent,
    # as the test programme does not return spent points (docs/ledger.md, Refunds).
    assert numbers == {"points_applied": 5, "released": 5, "refund_money_minor": 800, "refund_returned_points": 0}


def test_the_python_ecommerce_example(till_customer: TillCustomer, tmp_path: Path):
    ran = subprocess.run(
        [sys.executable, str(ROOT / "docs/examples/ecommerce.py"),
         till_customer.address, till_customer.programme_id, till_customer.member_id],
        capture_output=True, text=True, timeout=60, env={"LOYALTY_API_KEY": till_customer.key, "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,  # the installed client, not the repository's files
    )
    assert ran.returncode == 0, ran.stderr
    assert_the_shop_saw_its_sequence(json.loads(ran.stdout))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_node_ecommerce_example(node_client: Path, till_customer: TillCustomer):
    ran = run_in_node_client("node", "dist/examples/ecommerce.js",
                             till_customer.address, till_customer.programme_id, till_customer.member_id,
                             env={"LOYALTY_API_KEY": till_customer.key})
    assert_the_shop_saw_its_sequence(json.loads(ran.stdout))
