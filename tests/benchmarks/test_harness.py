"""The benchmark harness in short mode against a test database: its output's structure and the ledger check, never a time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import cpu, profiling, stats
from benchmarks.runner import CEILINGS, LOAD_SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


def test_percentiles_by_nearest_rank() -> None:
    samples = list(range(1000, 101_000, 1000))  # 1..100 ms
    assert stats.percentile(samples, 50) == 50.0
    assert stats.percentile(samples, 99) == 99.0
    assert stats.percentile([], 99) is None


def test_merge_adds_rates_of_side_by_side_clients() -> None:
    part = {"elapsed_s": 2.0, "methods": {"Quote": {"lat_us": [1000, 2000], "errors": {"UNAVAILABLE": 1}}},
            "acks": {"Quote": 3}}
    merged = stats.merge([part, part])
    assert merged["total"]["ok"] == 4
    assert merged["total"]["calls_per_s"] == 2.0
    assert merged["methods"]["Quote"]["errors"] == {"UNAVAILABLE": 2}
    assert merged["acks"] == {"Quote": 6}


def test_cpu_per_call_counts_a_busy_child_of_the_server_and_not_an_idle_one() -> None:
    # A "server" that sleeps, whose child spins for the whole window: the child's CPU is the server's.
    sleeper = subprocess.Popen([sys.executable, "-c",
                                "import subprocess, sys, time\n"
                                "child = subprocess.Popen([sys.executable, '-c', "
                                "'import time\\nend = time.time() + 1.2\\nwhile time.time() < end: pass'])\n"
                                "child.wait()"])
    try:
        with cpu.CpuSampler(lambda: [sleeper.pid]) as sampler:
            start = time.time() + 0.3
            time.sleep(1.0)
        got = sampler.per_call((start, start + 0.5), calls=100)
    finally:
        sleeper.wait(timeout=30)
    # Half a second of one busy core over 100 calls is 5,000 µs each; the ticks are 10 ms coarse.
    assert 3_000 <= got["server_us_per_call"] <= 6_000
    assert got["postgres_us_per_call"] is not None and got["postgres_us_per_call"] >= 0
    assert sampler.per_call(None, calls=100) == {"server_us_per_call": None, "postgres_us_per_call": None}


def test_profile_layers_add_up_and_the_innermost_frame_decides() -> None:
    raw = "\n".join([
        "process 1:\"python\";<module> (server/__main__.py:5);Quote (server/servicers/checkout.py:9);"
        "execute (psycopg/cursor_async.py:3) 6",
        "process 1:\"python\";<module> (server/__main__.py:5);Handle._run (asyncio/events.py:80) 3",
        "process 1:\"python\";<module> (server/__main__.py:5);emit (logging/__init__.py:1) 1",
    ])
    summary = profiling.summarize(raw)
    layers = {row["layer"]: row["share"] for row in summary["layers"]}
    assert summary["samples"] == 10
    assert layers["psycopg (queries, adaptation, pool)"] == 0.6
    assert sum(layers.values()) == pytest.approx(1.0)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_short_run_measures_every_scenario_and_the_ledger_agrees(create_database, tmp_path: Path) -> None:
    url = create_database()
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--short", "--database-url", url, "--out-dir", str(out),
         "--duration", "1", "--warmup", "0.3", "--members", "40"],
        cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "latest.json").read_text())

    assert results["meta"]["mode"] == "short"
    assert {"cpus", "postgresql", "grpcio"} <= set(results["meta"]["machine"])
    assert {r["name"] for r in results["ceilings"]} == set(CEILINGS)
    assert {r["name"] for r in results["load"]} == set(LOAD_SCENARIOS)
    for row in results["ceilings"] + results["load"]:
        assert row["workers"] == 1 and row["concurrency"] == 16
        assert {"calls_per_s", "p50_ms", "p99_ms", "error_count", "errors"} <= set(row["total"])
        assert row["total"]["ok"] > 0, row["name"]
    for row in results["load"]:
        assert row["ceiling_calls_per_s"] and row["ratio"] is not None
    for row in results["load"] + [r for r in results["ceilings"] if not r["name"].startswith("db_")]:
        assert row["cpu"]["server_us_per_call"] > 0 and row["cpu"]["postgres_us_per_call"] >= 0, row["name"]
    assert all(r["cpu"]["server_us_per_call"] is None for r in results["ceilings"] if r["name"].startswith("db_"))
    pos_calls = {m for r in results["load"] if r["name"] == "pos_mix" for m in r["methods"]}
    assert {"Quote", "Checkout", "Capture"} <= pos_calls

    verify = results["verify"]
    assert verify["disagreements"] == 0, verify["first_disagreements"]
    assert verify["captured_orders"] == verify["acked_captures"] > 0
    assert verify["ok"]

    assert results["micro"] is not None
    assert (out / "RESULTS.md").read_text().startswith("# Benchmark results")
    assert (out / "chart.png").stat().st_size > 0
