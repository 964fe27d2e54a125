"""Cost as work grows (issue 17): members seeded through `loyalty-core import`, then at each member
count the quote's and checkout + capture's p50, the expiry job over due lots, the database's bytes
per member, and an open-loop quote row offered at half the gRPC + SELECT ceiling's rate.

    python -m benchmarks.scale --members 10000,100000      # benchmarks/results/scale.json, SCALE.md, scale.png
    python -m benchmarks.scale --short                     # the test suite's mode (a few hundred members)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import baskets, ceilings, load, procs, protogen, stats
from benchmarks.runner import client_plan, create_database, drop_database, log, parse_args

# Each imported member: LOTS_PER_MEMBER opening lots; the first is the one the expiry row makes due.
LOTS_PER_MEMBER = 3
OPEN_LOOP_SHARE = 0.5  # of the gRPC + SELECT ceiling's rate
OPEN_LOOP_P99_TARGET_MS = 5.0
P50_GROWTH_TARGET = 1.2  # p50 at the largest count within this many times the smallest's
EXPIRY_TARGET_S_PER_MILLION = 60.0
IMPORT_TARGET_S_PER_MILLION = 300.0


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def write_rows(path: Path, first: int, last: int) -> None:
    """Members ``first``..``last`` - 1 as JSON Lines, phones as the load client picks them
    (baskets.phone), each with LOTS_PER_MEMBER lots usable now (so quotes can pay) and past purchases."""
    now = datetime.now(UTC)
    activate = _iso(now - timedelta(days=30))
    # Enough points that no checkout asks for more than a member holds (its asks stay under 2,000).
    lots = [{"points": 2_000 + 1_000 * k, "activate_time": activate,
             "expire_time": _iso(now + timedelta(days=200 + 100 * k))}
            for k in range(LOTS_PER_MEMBER)]
    with path.open("w") as f:
        for n in range(first, last):
            f.write(json.dumps({"external_id": f"bench-{n}", "phone": baskets.phone(n), "status": "active",
                                "lots": lots, "purchases_total_minor": 10_000 + n % 50_000,
                                "purchases": [{"order_id": f"old-{n}", "purchase_time": activate,
                                               "amount_minor": 10_000}]}) + "\n")


def _cli(url: str, *args: str, timeout_s: float = 3_600) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "server", *args], env=procs.child_env({"LOYALTY_DATABASE_URL": url}),
                          cwd=procs.ROOT, capture_output=True, text=True, timeout=timeout_s)
    return done, time.perf_counter() - started


def import_members(url: str, programme_id: str, first: int, last: int) -> dict[str, Any]:
    """Import members first..last-1 through the command; rows/s and lots/s of the command, end to end."""
    with tempfile.TemporaryDirectory(prefix="loyalty-bench-import-") as tmp:
        path = Path(tmp) / "members.jsonl"
        write_rows(path, first, last)
        done, seconds = _cli(url, "import", str(path), "--programme-id", programme_id)
    if done.returncode != 0:
        raise RuntimeError(f"loyalty-core import failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    rows = last - first
    return {"rows": rows, "lots": rows * LOTS_PER_MEMBER, "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds, 1), "progress": done.stderr.strip().splitlines()[-1][-120:],
            "seconds_per_million_projected": round(seconds / rows * 1_000_000, 1)}


def expire_due(url: str, programme_id: str, members: int) -> dict[str, Any]:
    """Make the first lot of ``members`` members due (its expiry moved into the past, as time
    passing would) and run the expiry job's command over them."""
    with psycopg.connect(url, autocommit=True) as conn:
        due = conn.execute(
            "UPDATE lot l SET expires_at = now() - interval '1 second'"
            " FROM (SELECT DISTINCT ON (f.member_id) f.member_id, f.lot_id FROM lot f JOIN member m USING (member_id)"
            "       WHERE m.programme_id = %s AND f.expired_at IS NULL AND f.remaining > 0"
            "       ORDER BY f.member_id, f.lot_id LIMIT %s) first"
            " WHERE l.member_id = first.member_id AND l.lot_id = first.lot_id", (programme_id, members)).rowcount
    done, seconds = _cli(url, "expire", "--programme-id", programme_id)
    if done.returncode != 0:
        raise RuntimeError(f"loyalty-core expire failed: {done.stderr[-500:]}")
    return {"due_lots": due, "seconds": round(seconds, 2), "lots_per_s": round(due / seconds, 1) if seconds else None,
            "said": done.stdout.strip()[-200:],
            "seconds_per_million_projected": round(seconds / due * 1_000_000, 1) if due else None}


def bytes_per_member(url: str, members: int) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return {"database_bytes": size, "bytes_per_member": round(size / members)}


def _load_row(cfg: Any, scenario: str, target: Any, server: Any, members: int, tag: str, **extra: Any) -> dict[str, Any]:
    plan = client_plan(cfg, scenario, cfg.concurrency[0], members=members, target=server.target,
                       programme_id=target["programme_id"], api_key=target["api_key"], run_tag=f"{tag}-{scenario}",
                       **extra)
    merged = stats.merge(procs.run_clients(plan))
    t = merged["total"]
    log(f"  {scenario:<18} {members:>9} members {t['calls_per_s']:>9.1f}/s  p50 {t['p50_ms']} ms  p99 {t['p99_ms']} ms"
        f"  errors {t['error_count']}")
    return {"scenario": scenario, "members": members, "methods": merged["methods"], "total": t,
            "error_samples": merged["error_samples"]}


def measure_size(cfg: Any, url: str, stub_dir: str, target: dict[str, Any], server: Any, members: int) -> dict[str, Any]:
    tag = f"{target['tag']}-{members}"
    row: dict[str, Any] = {"members": members}
    row["quote"] = _load_row(cfg, "quote", target, server, members, tag)
    row["checkout_capture"] = _load_row(cfg, "checkout_capture", target, server, members, tag)
    # The open loop's rate: half of what gRPC + one SELECT does here, measured now.
    ceilings.setup_schema(url, members)
    try:
        port = procs.free_port()
        with procs.start_ceiling(1, port, stub_dir, url, cfg.pool_size, baskets.message_sizes()[1]):
            plan = client_plan(cfg, "ceiling:select", cfg.concurrency[0], members=members, target=f"127.0.0.1:{port}",
                               stub_dir=stub_dir, request_bytes=baskets.message_sizes()[0])
            select = stats.merge(procs.run_clients(plan))["total"]["calls_per_s"]
    finally:
        ceilings.drop_schema(url)
    rate = round(select * OPEN_LOOP_SHARE, 1)
    row["select_ceiling_calls_per_s"] = select
    row["quote_open_loop"] = _load_row(cfg, "quote_open", target, server, members, tag, rate_per_s=rate)
    row["quote_open_loop"]["offered_per_s"] = rate
    row["storage"] = bytes_per_member(url, members)
    row["expiry"] = expire_due(url, target["programme_id"], members)
    log(f"  expiry: {row['expiry']['due_lots']} due lots in {row['expiry']['seconds']} s; "
        f"{row['storage']['bytes_per_member']} bytes per member")
    return row


def summary(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure against its target: p50 growth from the smallest count to the largest, the
    open-loop p99, the expiry and the import projected to a million."""
    small, large = sizes[0], sizes[-1]

    def p50(row: dict[str, Any], scenario: str, method: str) -> float | None:
        return row[scenario]["methods"].get(method, {}).get("p50_ms")

    growth = {}
    for scenario, method in (("quote", "Quote"), ("checkout_capture", "Capture"), ("checkout_capture", "Checkout")):
        a, b = p50(small, scenario, method), p50(large, scenario, method)
        growth[method] = {"p50_ms_small": a, "p50_ms_large": b,
                          "ratio": round(b / a, 2) if a and b else None}
    return {
        "members": [s["members"] for s in sizes], "p50_growth_max": P50_GROWTH_TARGET, "p50_growth": growth,
        "open_loop_p99_ms_max": OPEN_LOOP_P99_TARGET_MS,
        "open_loop_p99_ms": [s["quote_open_loop"]["total"]["p99_ms"] for s in sizes],
        "expiry_s_per_million_max": EXPIRY_TARGET_S_PER_MILLION,
        "expiry_s_per_million": [s["expiry"]["seconds_per_million_projected"] for s in sizes],
        "import_s_per_million_max": IMPORT_TARGET_S_PER_MILLION,
        "import_s_per_million": [s["import"]["seconds_per_million_projected"] for s in sizes],
        "bytes_per_member": [s["storage"]["bytes_per_member"] for s in sizes],
    }


def markdown(results: dict[str, Any]) -> str:
    out = ["# Cost as work grows", "", f"Run {results['meta']['started_at']} ({results['meta']['mode']} mode, "
           f"{results['meta']['duration_s']:g} s per row, {results['meta']['concurrency']} in flight; the open loop "
           f"offers quotes at {OPEN_LOOP_SHARE:.0%} of the gRPC + SELECT ceiling measured at each count).", "",
           "| members | import rows/s | Quote p50 ms | Checkout p50 ms | Capture p50 ms | open-loop offered/s "
           "| open-loop p99 ms | expiry due lots | expiry s | bytes/member |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in results["sizes"]:
        m = s["checkout_capture"]["methods"]
        out.append(f"| {s['members']} | {s['import']['rows_per_s']:.0f} | {s['quote']['total']['p50_ms']} | "
                   f"{m.get('Checkout', {}).get('p50_ms')} | {m.get('Capture', {}).get('p50_ms')} | "
                   f"{s['quote_open_loop']['offered_per_s']:.0f} | {s['quote_open_loop']['total']['p99_ms']} | "
                   f"{s['expiry']['due_lots']} | {s['expiry']['seconds']} | {s['storage']['bytes_per_member']} |")
    t = results["summary"]
    out += ["", f"- p50 at {t['members'][-1]} members over {t['members'][0]} (target ≤ {t['p50_growth_max']}×): "
            + ", ".join(f"{k} {v['ratio']}×" for k, v in t["p50_growth"].items()),
            f"- open-loop quote p99 (target < {t['open_loop_p99_ms_max']} ms): {t['open_loop_p99_ms']}",
            f"- expiry projected to a million due lots (target < {t['expiry_s_per_million_max']:.0f} s): "
            f"{t['expiry_s_per_million']} s",
            f"- import projected to a million members × {LOTS_PER_MEMBER} lots (target < "
            f"{t['import_s_per_million_max']:.0f} s): {t['import_s_per_million']} s", ""]
    return "\n".join(out)


def chart(results: dict[str, Any], path: Path) -> Path:
    """Each figure against the member count (log scale), its target drawn where it has one."""
    import matplotlib

    matplotlib.use("Agg")  # no screen here, and none needed
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    counts = [s["members"] for s in sizes]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    panels = [
        ("p50 ms (16 in flight)", {"Quote": [s["quote"]["methods"].get("Quote", {}).get("p50_ms") for s in sizes],
                                   **{m: [s["checkout_capture"]["methods"].get(m, {}).get("p50_ms") for s in sizes]
                                      for m in ("Checkout", "Capture")}}, None),
        ("open-loop quote p99 ms", {"p99": [s["quote_open_loop"]["total"]["p99_ms"] for s in sizes]},
         OPEN_LOOP_P99_TARGET_MS),
        ("expiry s per million due lots", {"projected": [s["expiry"]["seconds_per_million_projected"] for s in sizes]},
         EXPIRY_TARGET_S_PER_MILLION),
        ("import s per million members", {"projected": [s["import"]["seconds_per_million_projected"] for s in sizes]},
         IMPORT_TARGET_S_PER_MILLION),
        ("database bytes per member", {"bytes": [s["storage"]["bytes_per_member"] for s in sizes]}, None),
        ("open-loop offered and answered quotes/s", {
            "offered": [s["quote_open_loop"]["offered_per_s"] for s in sizes],
            "answered": [s["quote_open_loop"]["total"]["calls_per_s"] for s in sizes]}, None),
    ]
    for ax, (title, series, target) in zip(axes.flat, panels, strict=True):
        for label, ys in series.items():
            ax.plot(counts, [y if y is not None else float("nan") for y in ys], marker="o", label=label)
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", linewidth=1, label="target")
        ax.set_xscale("log")
        ax.set_xlabel("members")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"Cost as work grows, run {results['meta']['started_at']} ({results['meta']['mode']} mode)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def run(argv: list[str] | None) -> tuple[Any, dict[str, Any]]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", add_help=False)
    p.add_argument("--members", default=None, help="member counts, ascending, comma-separated "
                   "(default 10000,100000; short 100,200)")
    own, rest = p.parse_known_args(argv)
    cfg = parse_args(rest)
    sizes = sorted({int(x) for x in (own.members or ("100,200" if cfg.short else "10000,100000")).split(",")})
    url = cfg.database_url or create_database(cfg.postgres_url)
    stub_dir = protogen.generate()
    tag = secrets.token_hex(4)
    results: dict[str, Any] = {"meta": {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                        "mode": "short" if cfg.short else "full", "duration_s": cfg.duration_s,
                                        "concurrency": cfg.concurrency[0], "lots_per_member": LOTS_PER_MEMBER},
                               "sizes": []}
    try:
        key = cfg.api_key or load.create_key(url, tag)
        with load.Server(url, 1, cfg.pool_size) as server:
            target = {"programme_id": load.create_programme(server.target, key, tag), "api_key": key, "tag": tag}
            imported = 0
            for members in sizes:
                log(f"importing members {imported}..{members - 1}")
                done = import_members(url, target["programme_id"], imported, members)
                log(f"  import: {done['rows']} rows in {done['seconds']} s ({done['rows_per_s']}/s)")
                imported = members
                row = measure_size(cfg, url, str(stub_dir), target, server, members)
                row["import"] = done
                results["sizes"].append(row)
        results["summary"] = summary(results["sizes"])
        verify = load.verify_command(url, target["programme_id"])
        results["verify"] = verify
        log(f"verify: {verify['summary']}")
        return cfg, results
    finally:
        if not cfg.database_url and not cfg.keep_database:
            drop_database(cfg.postgres_url, url)


def main(argv: list[str] | None = None) -> int:
    cfg, results = run(argv)
    out_dir = cfg.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scale.json").write_text(json.dumps(results, indent=1))
    (out_dir / "SCALE.md").write_text(markdown(results))
    png = chart(results, out_dir / "scale.png")
    print(json.dumps({"results": str(out_dir / "scale.json"), "chart": str(png), "summary": results["summary"]}))
    return 0 if results["verify"]["exit_code"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
