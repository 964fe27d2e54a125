"""The scale benchmark (benchmarks/scale.py) in short mode: members seeded through the import, every
row measured at each member count and the ledger verifying clean; its structure, never a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_scale_run_measures_every_row_at_every_member_count(create_database, tmp_path: Path) -> None:
    url = create_database()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "--short", "--members", "60,120", "--database-url", url,
         "--out-dir", str(tmp_path), "--duration", "0.5", "--warmup", "0.2"],
        cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "scale.json").read_text())

    assert [s["members"] for s in results["sizes"]] == [60, 120]
    for size in results["sizes"]:
        assert size["import"]["rows"] == 60 and size["import"]["lots"] == 180
        assert size["quote"]["total"]["ok"] > 0 and size["checkout_capture"]["methods"]["Capture"]["ok"] > 0
        assert size["quote_open_loop"]["total"]["ok"] > 0 and size["quote_open_loop"]["offered_per_s"] > 0
        # One lot of every member made due, the expiry job burns each.
        due = size["expiry"]["due_lots"]
        assert due == size["members"] and f"{due} lots expired" in size["expiry"]["said"]
        assert size["storage"]["bytes_per_member"] > 0
    assert set(results["summary"]["p50_growth"]) == {"Quote", "Checkout", "Capture"}
    assert results["verify"]["exit_code"] == 0
    assert (tmp_path / "SCALE.md").read_text().startswith("# Cost as work grows")
    assert (tmp_path / "scale.png").read_bytes().startswith(b"\x89PNG")
