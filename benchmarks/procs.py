"""Child processes of a benchmark run: servers started and stopped by their own pid, clients run to completion."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# A client process gets its planned time plus this long before it is stopped as hung.
CLIENT_SLACK_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra or {})
    return env


class Workers:
    """Server processes started together; stopped with SIGTERM, then SIGKILL, each by its pid."""

    def __init__(self, procs: list[subprocess.Popen]) -> None:
        self.procs = procs

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self, grace_s: float = 15.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_ceiling(workers: int, port: int, stub_dir: str, database_url: str, pool_size: int,
                  response_bytes: int, timeout_s: float = 60.0) -> Workers:
    """``workers`` ceiling server processes on one port; returns once every one said ready."""
    procs = []
    for _ in range(workers):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks.ceilings", "--port", str(port), "--stubs", stub_dir,
             "--database-url", database_url, "--pool-size", str(pool_size), "--response-bytes", str(response_bytes)],
            stdout=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT))
    group = Workers(procs)
    try:
        deadline = time.monotonic() + timeout_s
        for p in procs:
            line = p.stdout.readline() if p.stdout else ""
            if line.strip() != "ready" or time.monotonic() > deadline:
                raise RuntimeError(f"ceiling server {p.pid} did not start (said {line!r})")
    except BaseException:
        group.stop()
        raise
    return group


def run_clients(plan: dict[str, Any], processes: int = 1, started: list[int] | None = None) -> list[dict[str, Any]]:
    """Run ``processes`` client processes side by side on ``plan`` (concurrency split between
    them) and return their raw outputs; their pids are added to ``started`` as they start."""
    outs, procs = [], []
    per = max(1, int(plan["concurrency"]) // processes)
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-client-") as tmp:
        for i in range(processes):
            out = os.path.join(tmp, f"client-{i}.json")
            sub_plan = dict(plan, concurrency=per, process_no=i, run_tag=f"{plan.get('run_tag', 'r')}p{i}")
            procs.append(subprocess.Popen([sys.executable, "-m", "benchmarks.client", "--plan", json.dumps(sub_plan),
                                           "--out", out], env=child_env(), cwd=ROOT))
            if started is not None:
                started.append(procs[-1].pid)
            outs.append(out)
        limit = float(plan["warmup_s"]) + float(plan["duration_s"]) + CLIENT_SLACK_S
        deadline = time.monotonic() + limit
        for p in procs:
            try:
                rc = p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for q in procs:
                    if q.poll() is None:
                        q.kill()
                raise RuntimeError(f"load client {p.pid} still running after {limit:.0f}s: stopped") from None
            if rc != 0:
                raise RuntimeError(f"load client {p.pid} exited {rc} on {plan['scenario']}")
        results = []
        for out in outs:
            with open(out) as f:
                results.append(json.load(f))
    return results
