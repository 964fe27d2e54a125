"""Latency and throughput summaries from raw samples: percentiles by nearest rank, no interpolation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def percentile(sorted_us: Sequence[int], q: float) -> float | None:
    """The q-th percentile (0..100) of ascending microsecond samples, in milliseconds."""
    if not sorted_us:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_us)))
    return sorted_us[rank - 1] / 1000


def summarize(lat_us: Iterable[int], errors: Mapping[str, int], elapsed_s: float) -> dict[str, Any]:
    """calls/s counts successful calls only; errors are reported beside it by status code."""
    samples = sorted(lat_us)
    ok = len(samples)
    return {
        "ok": ok,
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "calls_per_s": round(ok / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "p50_ms": percentile(samples, 50),
        "p99_ms": percentile(samples, 99),
        "max_ms": samples[-1] / 1000 if samples else None,
    }


def merge(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge client outputs (one per client process) into one summary per method and overall.

    Each part: {"elapsed_s", "methods": {name: {"lat_us": [...], "errors": {...}}}, "acks": {...}}.
    Processes ran side by side, so rates add up: elapsed is the longest part's.
    """
    elapsed = max(p["elapsed_s"] for p in parts)
    names: list[str] = []
    for p in parts:
        names += [n for n in p["methods"] if n not in names]
    methods: dict[str, Any] = {}
    all_lat: list[int] = []
    all_err: dict[str, int] = {}
    for name in names:
        lat: list[int] = []
        err: dict[str, int] = {}
        for p in parts:
            m = p["methods"].get(name)
            if m is None:
                continue
            lat += m["lat_us"]
            for code, n in m["errors"].items():
                err[code] = err.get(code, 0) + n
        methods[name] = summarize(lat, err, elapsed)
        all_lat += lat
        for code, n in err.items():
            all_err[code] = all_err.get(code, 0) + n
    acks: dict[str, int] = {}
    for p in parts:
        for k, n in p.get("acks", {}).items():
            acks[k] = acks.get(k, 0) + n
    samples: dict[str, list[str]] = {}
    for p in parts:
        for method, texts in p.get("error_samples", {}).items():
            samples.setdefault(method, []).extend(texts[: 3 - len(samples.get(method, []))])
    windows = [p["window"] for p in parts if p.get("window")]
    window = [min(w[0] for w in windows), max(w[1] for w in windows)] if windows else None
    return {"elapsed_s": round(elapsed, 3), "window": window, "total": summarize(all_lat, all_err, elapsed),
            "methods": methods, "acks": acks, "error_samples": samples}
