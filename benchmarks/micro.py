"""Micro-benchmarks: runs the calc twins' own benchmarks/bench_fastcalc.py under pytest-benchmark and reads its JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import procs

BENCH_FILE = procs.ROOT / "benchmarks" / "bench_fastcalc.py"
TIME_LIMIT_S = 900


def run(short: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """{"benchmarks": [{name, implementation, median_us, ops}], "speedups": [{name, speedup}]}, or
    {"skipped": why} when the calc benchmarks are not there or fail."""
    if not BENCH_FILE.exists():
        return {"skipped": f"{BENCH_FILE.name} not found"}
    log(f"micro: {BENCH_FILE.name} (pytest-benchmark{', short' if short else ''})")
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-micro-") as tmp:
        out = Path(tmp) / "micro.json"
        limits = (["--benchmark-max-time=0.02", "--benchmark-min-rounds=3", "--benchmark-warmup=off"] if short
                  else ["--benchmark-max-time=0.5", "--benchmark-min-rounds=5"])
        cmd = [sys.executable, "-m", "pytest", str(BENCH_FILE), "-q", "-p", "no:cacheprovider",
               "-o", "python_files=bench_*.py", "-o", "addopts=", f"--benchmark-json={out}", *limits]
        done = subprocess.run(cmd, cwd=procs.ROOT, env=procs.child_env(), capture_output=True, text=True,
                              timeout=TIME_LIMIT_S)
        if done.returncode != 0 or not out.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            return {"skipped": f"bench_fastcalc.py failed (exit {done.returncode}): " + " | ".join(tail)}
        raw = json.loads(out.read_text())
    rows = []
    for b in raw["benchmarks"]:
        rows.append({"name": b["name"], "median_us": b["stats"]["median"] * 1e6, "ops": b["stats"]["ops"]})
    return {"benchmarks": rows, "speedups": speedups(rows)}


def speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair test[python-…] with test[cython-…] and give python median / cython median."""
    by_key: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        m = re.fullmatch(r"(\w+)\[(.*)\]", r["name"])
        if not m:
            continue
        params = m.group(2).split("-")
        impl = next((p for p in params if p in ("python", "cython")), None)
        if impl is None:
            continue
        rest = "-".join(p for p in params if p != impl)
        by_key.setdefault((m.group(1), rest), {})[impl] = r["median_us"]
    out = []
    for (test, rest), pair in sorted(by_key.items()):
        if "python" in pair and "cython" in pair and pair["cython"] > 0:
            out.append({"name": f"{test}[{rest}]" if rest else test, "python_us": pair["python"],
                        "cython_us": pair["cython"], "speedup": pair["python"] / pair["cython"]})
    return out
