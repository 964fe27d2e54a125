"""The benchmark harness in short mode against a test database: its output's structure and the ledger check, never a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def test_cpu_ticks_of_a_process_include_its_children_as_they_count_themselves() -> None:
    # Accounting, not speed: what /proc says a child used is what the child says it used, and a
    # parent's reading adds its children's to its own.
    child = subprocess.Popen([sys.executable, "-c", "import time\nwhile time.process_time() < 0.3: pass\n"
                              "print(time.process_time(), flush=True)\ntime.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        child_says = float(child.stdout.readline())
        alone, _, _ = cpu.read_ticks([child.pid])
        with_children, postgres, as_client = cpu.read_ticks([os.getpid()], [child.pid])
        mine = sum(os.times()[:2])
    finally:
        child.kill()
        child.communicate()
    tick = 1 / cpu.TICKS_PER_S
    assert abs(alone * tick - child_says) <= 3 * tick
    assert abs(with_children * tick - (mine + alone * tick)) <= 3 * tick
    assert abs(as_client - alone) <= 3 and postgres >= 0


def test_a_process_that_exits_keeps_the_cpu_it_spent_in_the_samples() -> None:
    # A client that is done before the window ends (or a PostgreSQL backend that closes) leaves
    # /proc: its group's ticks must not fall, or a row's CPU per call comes out negative.
    child = subprocess.Popen([sys.executable, "-c",
                              "import sys, time\nend = time.process_time() + 0.3\n"
                              "while time.process_time() < end: pass\nprint('done', flush=True)\nsys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    sampler = cpu.CpuSampler(lambda: [], lambda: [child.pid])
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == "done\n"
    sampler._sample()
    child.stdin.close()
    child.wait()
    child.stdout.close()
    sampler._sample()
    (_, _, _, before), (_, _, _, after) = sampler.samples
    assert before >= 0.2 * cpu.TICKS_PER_S and after >= before


def test_cpu_per_call_is_what_the_window_used_over_its_calls() -> None:
    sampler = cpu.CpuSampler(lambda: [])
    t = cpu.TICKS_PER_S
    # (wall time, server, PostgreSQL and client ticks): a core busy in the server, half a core in
    # PostgreSQL, a quarter in the client.
    sampler.samples = [(100.0, 0, 0, 0), (101.0, t, t // 2, t // 4), (102.0, 2 * t, t, t // 2)]
    got = sampler.per_call((100.5, 101.5), calls=1_000)
    assert got == {"server_us_per_call": 1_000.0, "postgres_us_per_call": 500.0, "client_us_per_call": 250.0}
    assert sampler.per_call((100.5, 101.5), calls=1_000, server=False)["server_us_per_call"] is None
    assert sampler.per_call(None, calls=1_000) == dict.fromkeys(cpu.CPU_KEYS)


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
        assert row["cpu"]["client_us_per_call"] > 0, row["name"]
    assert all(r["cpu"]["server_us_per_call"] is None for r in results["ceilings"] if r["name"].startswith("db_"))
    pos_calls = {m for r in results["load"] if r["name"] == "pos_mix" for m in r["methods"]}
    assert {"Quote", "Checkout", "Capture"} <= pos_calls

    for row in results["load"]:
        # A quote writes nothing, so no event; every other row writes (and publishes) its sales.
        assert (row["events"]["written"] > 0) == (row["name"] != "quote"), row["name"]
    delivered = results["outbox"]
    assert delivered["backlog"] > 0 and delivered["delivered"] > 0 and delivered["events_per_s"] > 0

    verify = results["verify"]
    assert verify["disagreements"] == 0, verify["first_disagreements"]
    assert verify["captured_orders"] == verify["acked_captures"] > 0
    assert verify["ok"]

    assert results["micro"] is not None
    assert (out / "RESULTS.md").read_text().startswith("# Benchmark results")
    assert (out / "chart.png").stat().st_size > 0
