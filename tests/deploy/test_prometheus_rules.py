"""deploy/prometheus: the rules load (`promtool check rules`) and their unit tests pass (`promtool test
rules`). promtool comes from Debian's `prometheus` package, which `./dev` installs when it is missing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    assert found, ("promtool is missing: `./dev test` installs it (apt-get install prometheus) when run as root; "
                   "otherwise install Debian's prometheus package")
    return found


def run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)


def test_the_rules_load(promtool: str):
    checked = run(promtool, "check", "rules", "loyalty-core.rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_unit_tests_pass(promtool: str):
    tested = run(promtool, "test", "rules", "loyalty-core.rules_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_unit_tested():
    rules = yaml.safe_load((RULES_DIR / "loyalty-core.rules.yml").read_text())
    tests = yaml.safe_load((RULES_DIR / "loyalty-core.rules_test.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    fired = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", ()) if a["exp_alerts"]}
    assert alerts - fired == set()
