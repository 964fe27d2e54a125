"""Where the server's time goes: py-spy samples the real server under load; stacks summed by layer and function."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import procs, stats

# Layers, tested against a sample's frames from the innermost out: the innermost frame that any
# layer matches decides (first layer listed wins within a frame), so the shares add up to 100%
# of the server's busy time. Without --native, C code run from the event loop (grpc's core via
# cygrpc callbacks, psycopg's C wait) shows as asyncio's Handle._run.
LAYERS = (
    ("logging (per-RPC log line)", ("/logging/", "server/logs.py")),
    ("protobuf (parse, build, serialise)", ("google/protobuf", "_pb2", "server/servicers/convert", "convert.py")),
    ("psycopg (queries, adaptation, pool)", ("psycopg",)),
    ("Cython calc / Python calc", ("_fastcalc", "_calc_py", "loyalty_core/calc")),
    ("json (pricing and idempotency rows)", ("/json/",)),
    ("loyalty_core use cases and store", ("loyalty_core/",)),
    ("server: servicers, guard (auth, limits), metrics", ("server/", "prometheus_client")),
    ("grpc.aio (transport, event loop glue)", ("grpc/", "cygrpc", "grpc_")),
    ("asyncio loop and C callbacks (grpc core, cygrpc)", ("asyncio/", "selectors.py")),
    ("grpc poller thread (C core) and other threads", ("threading.py",)),
)
# Innermost frames that mean "waiting", sampled because --nonblocking cannot tell idle threads.
IDLE_LEAVES = ("EpollSelector.select ", "select (selectors.py", "_PollLikeSelector.select ")
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def _frames(stack: str) -> list[str]:
    return [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]


def _short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for anchor in ("site-packages/", "lib/python3", "wt-bench/", "/work/"):
        if anchor in path:
            path = path.split(anchor, 1)[1]
    return f"{m.group('func')} ({path})"


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for label, needles in LAYERS:
            if any(s in frame for s in needles):
                return label
    return "other"


def summarize(raw: str, top: int = 25) -> dict[str, Any]:
    """From py-spy's raw (collapsed) output: share of samples by layer, by innermost function
    (self time) and by function anywhere on the stack (inclusive, our code only)."""
    total = idle = 0
    layers: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        if not frames:
            continue
        if any(frames[-1].startswith(w) for w in IDLE_LEAVES):
            idle += n  # the event loop waiting for work: not a cost
            continue
        total += n
        leaf[_short(frames[-1])] += n
        for name in {_short(f) for f in frames}:
            if "loyalty_core/" in name or "server/" in name:
                inclusive[name] += n
        layers[_layer(frames)] += n
    if total == 0:
        return {"samples": 0, "idle_samples": idle, "layers": [], "top": [], "inclusive": []}

    def rows(counter: Counter[str], key: str) -> list[dict[str, Any]]:
        return [{key: k, "share": round(v / total, 4)} for k, v in counter.most_common(top)]

    return {"samples": total, "idle_samples": idle, "layers": rows(layers, "layer"), "top": rows(leaf, "frame"),
            "inclusive": rows(inclusive, "frame")}


def profile_pos_mix(cfg: Any, server: Any, target: Any, client_plan: Callable[..., dict[str, Any]],
                    log: Callable[[str], None]) -> dict[str, Any]:
    """The POS mix's profile, with the quote's and checkout + capture's alone under "scenarios"."""
    summary = profile_scenario(cfg, server, target, client_plan, log, "pos_mix")
    summary["scenarios"] = {name: profile_scenario(cfg, server, target, client_plan, log, name)
                            for name in ("quote", "checkout_capture")}
    return summary


def profile_scenario(cfg: Any, server: Any, target: Any, client_plan: Callable[..., dict[str, Any]],
                     log: Callable[[str], None], scenario: str) -> dict[str, Any]:
    """py-spy on every server process (``--subprocesses``) while ``scenario`` runs at the lowest
    concurrency. The run is reported beside the profile, not in the table: sampling slows it."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {"skipped": "py-spy not installed (pip install -e '.[bench]')"}
    c = min(cfg.concurrency)
    seconds = cfg.warmup_s + cfg.duration_s
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-prof-") as tmp:
        out = Path(tmp) / f"{scenario}.txt"
        log(f"profile: py-spy on pid {server.pid} (+ workers) during {scenario} at {c} in flight")
        rec = subprocess.Popen([spy, "record", "--pid", str(server.pid), "--subprocesses", "--nonblocking",
                                "--rate", "200", "--duration", str(int(seconds) + 1), "--format", "raw",
                                "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        plan = client_plan(cfg, scenario, c, hot=False, target=server.target, programme_id=target.programme_id,
                           api_key=target.api_key, run_tag=f"{target.tag}-profile-{scenario}")
        merged = stats.merge(procs.run_clients(plan))
        target.acked_captures += merged["acks"].get("Capture", 0)
        try:
            _, err = rec.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            rec.kill()
            rec.communicate()
            return {"skipped": "py-spy did not finish"}
        if rec.returncode != 0 or not out.exists():
            return {"skipped": f"py-spy failed (exit {rec.returncode}): {err.strip()[-300:]}"}
        summary = summarize(out.read_text())
    summary.update({"scenario": scenario, "concurrency": c, "workers": server.workers,
                    "calls_per_s_while_sampled": merged["total"]["calls_per_s"]})
    for row in summary["layers"]:
        log(f"  {row['share']:6.1%}  {row['layer']}")
    return summary
