"""The run's outputs: results JSON, a markdown table (RESULTS.md), a PNG chart of each scenario beside its ceiling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CEILING_TITLES = {
    "bare": "bare grpc.aio call, no work",
    "select": "gRPC + one autocommit SELECT (pool)",
    "tx": "gRPC + checkout transaction",
    "tx_hot": "gRPC + checkout transaction, 10 hot members",
    "db_tx": "checkout transaction alone (psycopg, no gRPC)",
    "db_tx_hot": "checkout transaction alone, 10 hot members",
}
LOAD_TITLES = {
    "quote": "Quote",
    "checkout_capture": "Checkout + Capture",
    "post_sale": "PostSale (an offline sale, checkout and capture in one call)",
    "post_sales": "PostSales (tills' backlogs streamed, many sales to a transaction; per sale)",
    "pos_mix": "POS mix (quote, checkout, capture, 5% cancel, 2% refund)",
    "hot_members": "POS mix on 10 hot members",
}
CEILING_OF = {"quote": "select", "checkout_capture": "tx", "post_sale": "tx", "post_sales": "tx", "pos_mix": "select/tx mix",
              "hot_members": "select/tx_hot mix"}


def _disagreements(n: int) -> str:
    return "no disagreement" if n == 0 else f"{n} disagreement(s)"


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def _cpu(r: dict[str, Any]) -> str:
    """The row's 'server | PostgreSQL | client' CPU-per-call cells (µs)."""
    c = r.get("cpu") or {}
    return " | ".join(_f(c.get(k), "{:.0f}") for k in ("server_us_per_call", "postgres_us_per_call",
                                                         "client_us_per_call"))


def machine_line(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    return (f"{m['cpus']} cores ({m['cpu_model'] or 'unknown CPU'}), {m['memory_gib']} GiB, {m['os']}; "
            f"Python {m['python']}, grpcio {m['grpcio']}, psycopg {m['psycopg']}, PostgreSQL {m['postgresql']}; "
            f"client, server and PostgreSQL on the same machine (load average {m['load_average_at_start'][0]:.1f} "
            f"at the start: other work shares it). Run {meta['started_at']}, {meta['mode']} mode: "
            f"{meta['duration_s']:g} s measured after {meta['warmup_s']:g} s warm-up per row, "
            f"{meta['members']} members, pool {meta['pool_size_per_worker']} per worker, "
            f"messages {meta['request_bytes']} B in / {meta['response_bytes']} B out.")


def markdown(results: dict[str, Any]) -> str:
    out = ["# Benchmark results", "", machine_line(results["meta"]), "",
           "Every ratio is to a ceiling measured in the same run, with the same client and calls in flight "
           "(`python -m benchmarks`; see benchmarks/README.md). CPU µs/call: what the server's processes, "
           "PostgreSQL's and the load client's spent per call in the measured window (all share this machine's "
           "cores).", ""]
    if results["load"]:
        out += ["## loyalty-core against its ceilings", "",
                "| scenario | workers | in flight | calls/s | p50 ms | p99 ms | errors "
                "| server CPU µs/call | PostgreSQL CPU µs/call | client CPU µs/call | ceiling | ceiling calls/s "
                "| ratio | target |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"]
        for r in results["load"]:
            t = r["total"]
            target = "–" if r.get("target_ratio") is None else (
                f"≥ {r['target_ratio']:.0%} {'met' if r['meets_target'] else 'missed'}")
            out.append(f"| {LOAD_TITLES[r['name']]} | {r['workers']} | {r['concurrency']} | {t['calls_per_s']:.0f} | "
                       f"{_f(t['p50_ms'])} | {_f(t['p99_ms'])} | {t['error_count']} | {_cpu(r)} | {CEILING_OF[r['name']]} | "
                       f"{_f(r.get('ceiling_calls_per_s'), '{:.0f}')} | {_f(r.get('ratio'), '{:.0%}')} | {target} |")
        out += ["", "Per call:", "", "| scenario | workers | in flight | call | calls/s | p50 ms | p99 ms | errors |",
                "|---|---:|---:|---|---:|---:|---:|---|"]
        for r in results["load"]:
            for name, m in r["methods"].items():
                errs = ", ".join(f"{k} {v}" for k, v in m["errors"].items()) or "0"
                out.append(f"| {r['name']} | {r['workers']} | {r['concurrency']} | {name} | {m['calls_per_s']:.0f} | "
                           f"{_f(m['p50_ms'])} | {_f(m['p99_ms'])} | {errs} |")
        said = [f"- {r['name']} {r['workers']}w×{r['concurrency']} {method}: {text}"
                for r in results["load"] for method, texts in (r.get("error_samples") or {}).items() for text in texts]
        if said:
            out += ["", "What the server said on errors (first few per call and row, warm-up included):", "", *said]
        out.append("")
    out += ["## Ceilings", "", "| ceiling | workers | in flight | calls/s | p50 ms | p99 ms | errors "
            "| server CPU µs/call | PostgreSQL CPU µs/call | client CPU µs/call |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["ceilings"]:
        t = r["total"]
        out.append(f"| {CEILING_TITLES[r['name']]} | {r['workers']} | {r['concurrency']} | {t['calls_per_s']:.0f} | "
                   f"{_f(t['p50_ms'])} | {_f(t['p99_ms'])} | {t['error_count']} | {_cpu(r)} |")
    out.append("")
    targets = results.get("targets") or {}
    if targets.get("quote_p99_at_16"):
        out += ["Quote p99 at 16 in flight (target < 10 ms): " + ", ".join(
            f"{x['workers']} worker(s) {_f(x['p99_ms'])} ms ({'met' if x['met'] else 'missed'})"
            for x in targets["quote_p99_at_16"]), ""]
    if targets.get("post_sales"):
        out += [f"PostSales sales/s (target ≥ {targets['post_sales_per_s_min']:,.0f}) beside Checkout + Capture's "
                "sales/s (its Captures) in the same run: " + ", ".join(
                    f"{x['workers']} worker(s) {x['sales_per_s']:.0f} against {_f(x['checkout_capture_sales_per_s'], '{:.0f}')}"
                    f" ({'met' if x['met'] else 'missed'})" for x in targets["post_sales"]), ""]
    delivered = results.get("outbox")
    if delivered:
        out += ["## The outbox beside the checkout rate", "",
                "Events the load wrote (in the same transactions as its calls), and the delivery job sending "
                "the programme's whole backlog to one webhook on 127.0.0.1 that answers at once.", "",
                "| scenario | workers | in flight | calls/s | events per call | events written/s |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in results["load"]:
            e = r.get("events") or {}
            out.append(f"| {r['name']} | {r['workers']} | {r['concurrency']} | {r['total']['calls_per_s']:.0f} | "
                       f"{_f(e.get('per_call'))} | {_f(e.get('per_s'), '{:.0f}')} |")
        out += ["", f"- one webhook, in order: {delivered['delivered']} of {delivered['backlog']} events delivered in "
                f"{delivered['seconds']:.1f} s: {delivered['events_per_s']:.0f} events/s", ""]
    v = results.get("verify")
    if v:
        out += ["## Ledger after the load", "",
                f"- verify: {_disagreements(v['disagreements'])} ({v['method']})",
                f"- captured orders {v['captured_orders']}, acknowledged captures {v['acked_captures']}: "
                f"{'equal' if v['captures_match'] else 'NOT equal'}", ""]
    micro = results.get("micro")
    if micro and micro.get("benchmarks"):
        out += ["## Micro: Cython twins against the Python ones (calc's bench_fastcalc.py)", "",
                "| case | Python µs | Cython µs | speed-up |", "|---|---:|---:|---:|"]
        for pair in micro.get("speedups", []):
            out.append(f"| {pair['name']} | {pair['python_us']:.2f} | {pair['cython_us']:.2f} | "
                       f"{pair['speedup']:.1f}× |")
        out.append("")
    elif micro:
        out += [f"Micro-benchmarks: {micro.get('skipped', 'none')}", ""]
    prof = results.get("profile")
    if prof and prof.get("top"):
        out += [f"## Where the server's time goes (py-spy, POS mix, {prof['workers']} worker(s), "
                f"{prof['concurrency']} in flight)", "",
                f"{prof['samples']} busy samples (idle waits left out). By layer, each sample to the innermost "
                "frame a layer claims:", "", "| share | layer |", "|---:|---|"]
        runs = {"pos_mix": prof, **{k: v for k, v in (prof.get("scenarios") or {}).items() if v.get("layers")}}
        shares = {name: {row["layer"]: row["share"] for row in run["layers"]} for name, run in runs.items()}
        out[-2] = "| " + " | ".join(runs) + " | layer |"
        out[-1] = "|" + "---:|" * len(runs) + "---|"
        for row in prof["layers"]:
            cells = " | ".join(f"{shares[name].get(row['layer'], 0):.1%}" for name in runs)
            out.append(f"| {cells} | {row['layer']} |")
        out += ["", "Innermost functions (self time):", "", "| share | function |", "|---:|---|"]
        out += [f"| {row['share']:.1%} | `{row['frame']}` |" for row in prof["top"][:12]]
        out += ["", "loyalty-core's own functions, inclusive:", "", "| share | function |", "|---:|---|"]
        out += [f"| {row['share']:.1%} | `{row['frame']}` |" for row in prof["inclusive"][:15]]
        out.append("")
    return "\n".join(out)


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """Throughput and p99 per load run beside its ceiling; None when there is no load to draw."""
    rows = results["load"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no screen here, and none needed
    import matplotlib.pyplot as plt

    labels = [f"{r['name']}\n{r['workers']}w × {r['concurrency']}" for r in rows]
    xs = range(len(rows))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(rows)), 8), sharex=True)
    width = 0.4
    ax1.bar([x - width / 2 for x in xs], [r["total"]["calls_per_s"] for r in rows], width, label="loyalty-core")
    ax1.bar([x + width / 2 for x in xs], [r.get("ceiling_calls_per_s") or 0 for r in rows], width, label="ceiling")
    for x, r in zip(xs, rows, strict=True):
        if r.get("ratio") is not None:
            ax1.annotate(f"{r['ratio']:.0%}", (x, r["total"]["calls_per_s"]), ha="center", va="bottom", fontsize=8)
    ax1.set_ylabel("calls/s")
    ax1.legend()
    ax1.set_title("loyalty-core beside its ceiling (same run, same client, same calls in flight)")
    ceil_p99 = []
    for r in rows:
        name = {"quote": "select", "checkout_capture": "tx", "post_sale": "tx", "post_sales": "tx", "pos_mix": "tx",
                "hot_members": "tx_hot"}[r["name"]]
        match = [c for c in results["ceilings"]
                 if c["name"] == name and c["workers"] == r["workers"] and c["concurrency"] == r["concurrency"]]
        ceil_p99.append(match[0]["total"]["p99_ms"] or 0 if match else 0)
    ax2.bar([x - width / 2 for x in xs], [r["total"]["p99_ms"] or 0 for r in rows], width, label="loyalty-core p99")
    ax2.bar([x + width / 2 for x in xs], ceil_p99, width, label="ceiling p99")
    ax2.set_ylabel("p99 ms")
    ax2.legend()
    ax2.set_xticks(list(xs))
    ax2.set_xticklabels(labels, fontsize=8)
    fig.text(0.01, 0.005, machine_line(results["meta"])[:160], fontsize=6)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """results-<time>.json, latest.json, RESULTS.md and chart.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = results["meta"]["started_at"].replace(":", "").replace("-", "")
    paths = []
    for name in (f"results-{stamp}.json", "latest.json"):
        p = out_dir / name
        p.write_text(json.dumps(results, indent=1))
        paths.append(p)
    md = out_dir / "RESULTS.md"
    md.write_text(markdown(results))
    paths.append(md)
    png = chart(results, out_dir / "chart.png")
    if png:
        paths.append(png)
    return paths
