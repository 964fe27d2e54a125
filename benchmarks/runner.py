"""One benchmark run: ceilings, load on the real server, ledger check, micro-benchmarks; then JSON, table, chart."""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from benchmarks import baskets, ceilings, cpu, procs, protogen, stats

ROOT = procs.ROOT
RESULTS_DIR = ROOT / "benchmarks" / "results"

# Which ceiling each load scenario is held against, and its target ratio where the issue sets one.
# pos_mix is held against the mix of its own calls: quotes against `select`, writes against `tx`.
LOAD_SCENARIOS = {
    "quote": {"client": "quote", "hot": False, "ceiling": "select", "target_ratio": 0.70},
    "checkout_capture": {"client": "checkout_capture", "hot": False, "ceiling": "tx", "target_ratio": 0.60},
    # An offline till's sale, checked out and captured in one call (one transaction, as `tx`).
    "post_sale": {"client": "post_sale", "hot": False, "ceiling": "tx", "target_ratio": None},
    # Tills' backlogs on PostSales streams, many sales to a transaction: its calls are sales, held
    # against the `tx` ceiling (one checkout transaction per call) and the 5,000 sales/s.
    "post_sales": {"client": "post_sales", "hot": False, "ceiling": "tx", "target_ratio": None},
    "pos_mix": {"client": "pos_mix", "hot": False, "ceiling": "mix", "target_ratio": None},
    "hot_members": {"client": "pos_mix", "hot": True, "ceiling": "mix_hot", "target_ratio": None},
}
CEILINGS = {  # name -> (client scenario, hot)
    "bare": ("ceiling:bare", False),
    "select": ("ceiling:select", False),
    "tx": ("ceiling:tx", False),
    "tx_hot": ("ceiling:tx", True),
    "db_tx": ("db:tx", False),
    "db_tx_hot": ("db:tx", True),
}
QUOTE_P99_TARGET_MS = 10.0
POST_SALES_TARGET_PER_S = 5_000.0
# The calls whose acknowledgement is a captured order (the ledger check counts them).
CAPTURING = ("Capture", "PostSale", "PostSales")

# The order of one (workers, concurrency) round: each load scenario right after its own ceiling,
# so that the drift of a shared machine (other work starting or stopping) hits both alike.
ROUND = ("select", "quote", "tx", "checkout_capture", "post_sale", "post_sales", "pos_mix", "tx_hot", "hot_members", "bare", "db_tx",
         "db_tx_hot")


@dataclass(frozen=True)
class Config:
    short: bool
    warmup_s: float
    duration_s: float
    concurrency: tuple[int, ...]
    workers: tuple[int, ...]
    members: int
    pool_size: int
    channels: int
    out_dir: Path
    database_url: str | None
    postgres_url: str
    keep_database: bool
    ceilings_only: bool
    scenarios: tuple[str, ...]
    skip_micro: bool
    skip_outbox: bool
    profile: bool
    api_key: str | None


def parse_args(argv: list[str] | None) -> Config:
    cpus = os.cpu_count() or 1
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=(
        "Measure loyalty-core against this machine's ceilings in one run: bare gRPC, gRPC + one SELECT, "
        "gRPC + the checkout's transaction, and that transaction alone; then quote, checkout + capture, "
        "a POS mix and a hot-member mix against the real server. Writes benchmarks/results/."))
    p.add_argument("--short", action="store_true",
                   help="a few seconds per scenario, few members (the test suite's mode)")
    p.add_argument("--duration", type=float, help="measured seconds per scenario (default 12, short 1.5)")
    p.add_argument("--warmup", type=float, help="unmeasured seconds before each (default 3, short 0.5)")
    p.add_argument("--concurrency", default=None, help="calls in flight, comma-separated (default 16,64; short 16)")
    p.add_argument("--workers", default=None,
                   help=f"server worker processes to compare, comma-separated (default 1,{cpus}; short 1)")
    p.add_argument("--members", type=int, help="members to enrol (default 10000, short 200)")
    p.add_argument("--pool-size", type=int, default=10, help="connections per server worker (LOYALTY_POOL_MAX_SIZE)")
    p.add_argument("--channels", type=int, default=16, help="client connections (spread over workers by the kernel)")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--database-url", default=os.environ.get("LOYALTY_BENCH_DATABASE_URL"),
                   help="use this (empty or loyalty-core) database; "
                        "default: a new one on --postgres-url, dropped after")
    p.add_argument("--postgres-url",
                   default=os.environ.get("LOYALTY_TEST_DATABASE_URL", "postgresql://127.0.0.1:5432/postgres"),
                   help="server on which to create the benchmark's own database")
    p.add_argument("--keep-database", action="store_true")
    p.add_argument("--ceilings-only", action="store_true",
                   help="measure the ceilings only (needs nothing of loyalty-core)")
    p.add_argument("--scenarios", default=",".join(ROUND),
                   help="rows of each round to run, comma-separated, in the round's order (default: all of "
                        f"{','.join(ROUND)}); a load row is held against its ceiling only when that ran too")
    p.add_argument("--skip-micro", action="store_true", help="skip the Cython-vs-Python micro-benchmarks")
    p.add_argument("--skip-outbox", action="store_true",
                   help="skip the webhook delivery of the outbox's backlog (not run on Citus: docs/scale-out.md)")
    p.add_argument("--profile", action="store_true", help="py-spy the server during one POS-mix run, report top costs")
    p.add_argument("--api-key", default=os.environ.get("LOYALTY_BENCH_API_KEY"),
                   help="API key for the real server; "
                        "default: one is created with `loyalty-core keys create` when available")
    a = p.parse_args(argv)

    def ints(text: str | None, default: str) -> tuple[int, ...]:
        return tuple(sorted({int(x) for x in (text or default).split(",") if x.strip()}))

    short = a.short
    scenarios = tuple(name for name in ROUND if name in {x.strip() for x in a.scenarios.split(",")})
    unknown = {x.strip() for x in a.scenarios.split(",") if x.strip()} - set(ROUND)
    if unknown or not scenarios:
        p.error(f"--scenarios: unknown {', '.join(sorted(unknown)) or '(none given)'}; choose from {','.join(ROUND)}")
    return Config(
        short=short,
        warmup_s=a.warmup if a.warmup is not None else (0.5 if short else 3.0),
        duration_s=a.duration if a.duration is not None else (1.5 if short else 12.0),
        concurrency=ints(a.concurrency, "16" if short else "16,64"),
        workers=ints(a.workers, "1" if short else f"1,{cpus}"),
        members=a.members or (200 if short else 10000),
        pool_size=a.pool_size, channels=a.channels, out_dir=a.out_dir, database_url=a.database_url,
        postgres_url=a.postgres_url, keep_database=a.keep_database, ceilings_only=a.ceilings_only,
        scenarios=scenarios,
        skip_micro=a.skip_micro, skip_outbox=a.skip_outbox, profile=a.profile, api_key=a.api_key)


def log(msg: str) -> None:
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine(database_url: str) -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    import grpc

    with psycopg.connect(database_url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "memory_gib": mem_gib, "os": platform.platform(),
            "python": platform.python_version(), "grpcio": grpc.__version__, "psycopg": psycopg.__version__,
            "postgresql": pg, "load_average_at_start": list(os.getloadavg())}


def client_plan(cfg: Config, scenario: str, concurrency: int, **extra: Any) -> dict[str, Any]:
    return {"scenario": scenario, "concurrency": concurrency, "warmup_s": cfg.warmup_s, "duration_s": cfg.duration_s,
            "members": cfg.members, "channels": cfg.channels, "seed": 1, **extra}


@dataclass
class LoadTarget:
    """The seeded real server's coordinates, shared by every load run."""

    url: str
    api_key: str | None
    tag: str
    programme_id: str | None = None
    seed_s: float | None = None
    acked_captures: int = 0


def measure_all(cfg: Config, url: str, stub_dir: str, sizes: tuple[int, int], results: dict[str, Any],
                target: LoadTarget | None) -> None:
    """For each worker count: start the ceiling servers and the real server side by side (an idle
    one costs nothing), then run the ROUND at every concurrency."""
    from contextlib import ExitStack

    request_bytes, response_bytes = sizes
    for workers in cfg.workers:
        with ExitStack() as stack:
            port = procs.free_port()
            log(f"{workers} worker(s): ceiling servers on 127.0.0.1:{port}")
            ceiling_servers = stack.enter_context(
                procs.start_ceiling(workers, port, stub_dir, url, cfg.pool_size, response_bytes))
            server = None
            if target is not None:
                from benchmarks import load

                server = stack.enter_context(load.Server(target.url, workers, cfg.pool_size))
                log(f"{workers} worker(s): loyalty-core on {server.target} (pid {server.pid})")
                if target.programme_id is None:
                    target.programme_id, target.seed_s = load.seed(server.target, target.api_key, target.tag,
                                                                   cfg.members)
                    log(f"seeded {cfg.members} members by EnrolMember in {target.seed_s:.1f}s "
                        f"({cfg.members / target.seed_s:.0f}/s)")
            for c in cfg.concurrency:
                for name in cfg.scenarios:
                    if name in CEILINGS:
                        scenario, hot = CEILINGS[name]
                        if scenario == "db:tx":
                            # The database alone: as many client processes as server workers, each
                            # with its own pool, so "N workers" means N Python processes on PostgreSQL.
                            plan = client_plan(cfg, scenario, c, hot=hot, database_url=url, pool_size=cfg.pool_size)
                            merged = _measured(plan, None, processes=workers)
                        else:
                            plan = client_plan(cfg, scenario, c, hot=hot, target=f"127.0.0.1:{port}",
                                               stub_dir=stub_dir, request_bytes=request_bytes)
                            merged = _measured(plan, ceiling_servers.pids)
                        results["ceilings"].append(_record(name, workers, c, merged))
                    elif server is not None and target is not None:
                        spec = LOAD_SCENARIOS[name]
                        plan = client_plan(cfg, spec["client"], c, hot=spec["hot"], target=server.target,
                                           programme_id=target.programme_id, api_key=target.api_key,
                                           run_tag=f"{target.tag}-{name}-w{workers}c{c}")
                        from benchmarks import outbox

                        before = outbox.events_written(url)
                        merged = _measured(plan, [server.pid])
                        merged["events"] = outbox.row(before, outbox.events_written(url), merged["acks"],
                                                      merged["total"]["calls_per_s"])
                        target.acked_captures += sum(merged["acks"].get(m, 0) for m in CAPTURING)
                        results["load"].append(_record(name, workers, c, merged))
            if server is not None and target is not None and workers == cfg.workers[-1]:
                from benchmarks import load

                if cfg.profile:
                    results["profile"] = profile(cfg, server, target)
                if not cfg.skip_outbox:
                    from benchmarks import outbox

                    results["outbox"] = outbox.delivery(url, target.programme_id, max(2 * cfg.duration_s, 2.0))
                    o = results["outbox"]
                    log(f"outbox: one webhook delivered {o['delivered']} of {o['backlog']} events in "
                        f"{o['seconds']:.1f}s ({o['events_per_s']:.0f}/s)")
                results["verify"] = load.verify(target.url, server.target, target.api_key, target.programme_id,
                                                target.acked_captures)
                v = results["verify"]
                log(f"verify: {v['disagreements']} disagreement(s); captured orders {v['captured_orders']}, "
                    f"acknowledged captures {v['acked_captures']}")


def _measured(plan: dict[str, Any], server_pids: list[int] | None, processes: int = 1) -> dict[str, Any]:
    """Run the plan's clients; the merged result with the CPU the server processes (``server_pids``
    and their children; None: no server), PostgreSQL and the clients spent per call in the
    measured window."""
    clients: list[int] = []
    with cpu.CpuSampler(lambda: server_pids or [], lambda: clients) as sampler:
        merged = stats.merge(procs.run_clients(plan, processes=processes, started=clients))
    t = merged["total"]
    merged["cpu"] = sampler.per_call(merged.get("window"), t["ok"] + t["error_count"], server=server_pids is not None)
    return merged


def _record(name: str, workers: int, concurrency: int, merged: dict[str, Any]) -> dict[str, Any]:
    t = merged["total"]
    c = merged.get("cpu") or {}
    log(f"  {name:<18} w={workers} c={concurrency:<3} {t['calls_per_s']:>9.1f}/s  p50 {_ms(t['p50_ms'])}  "
        f"p99 {_ms(t['p99_ms'])}  errors {t['error_count']}  cpu/call server {_us(c.get('server_us_per_call'))} "
        f"postgres {_us(c.get('postgres_us_per_call'))} client {_us(c.get('client_us_per_call'))}")
    return {"name": name, "workers": workers, "concurrency": concurrency, **merged}


def _us(v: float | None) -> str:
    return "   -  " if v is None else f"{v:5.0f}µs"


def _ms(v: float | None) -> str:
    return "   -   " if v is None else f"{v:7.2f}ms"


def ceiling_for(ceilings_: list[dict[str, Any]], name: str, workers: int, concurrency: int) -> float | None:
    for r in ceilings_:
        if r["name"] == name and r["workers"] == workers and r["concurrency"] == concurrency:
            return r["total"]["calls_per_s"] or None
    return None


def matched_ceiling(ceilings_: list[dict[str, Any]], load: dict[str, Any]) -> float | None:
    """The ceiling in calls/s a load run is held against, same workers and concurrency. For a mix:
    the harmonic blend of its own calls (each quote costs a `select` call's time, each write a `tx`
    call's), weighted by how many of each it made."""
    spec = LOAD_SCENARIOS[load["name"]]
    w, c = load["workers"], load["concurrency"]
    if spec["ceiling"] in ("select", "tx"):
        return ceiling_for(ceilings_, spec["ceiling"], w, c)
    select = ceiling_for(ceilings_, "select", w, c)
    tx = ceiling_for(ceilings_, "tx_hot" if spec["ceiling"] == "mix_hot" else "tx", w, c)
    if not select or not tx:
        return None
    counts = {m: v["ok"] for m, v in load["methods"].items()}
    total = sum(counts.values())
    if total == 0:
        return None
    seconds = sum(n / (select if m == "Quote" else tx) for m, n in counts.items())
    return round(total / seconds, 1)


def add_ratios(cfg: Config, results: dict[str, Any]) -> None:
    for load in results["load"]:
        ceiling = matched_ceiling(results["ceilings"], load)
        load["ceiling_calls_per_s"] = ceiling
        load["ratio"] = round(load["total"]["calls_per_s"] / ceiling, 3) if ceiling else None
        target = LOAD_SCENARIOS[load["name"]]["target_ratio"]
        load["target_ratio"] = target
        load["meets_target"] = None if target is None or load["ratio"] is None else load["ratio"] >= target
    quote16 = [r for r in results["load"] if r["name"] == "quote" and r["concurrency"] == 16]
    # Sales per second: a PostSales answer is a sale, a Checkout + Capture sale is its Capture.
    per_call = {(r["workers"], r["concurrency"]): r["methods"].get("Capture", {}).get("calls_per_s")
                for r in results["load"] if r["name"] == "checkout_capture"}
    post_sales = [{"workers": r["workers"], "concurrency": r["concurrency"],
                   "sales_per_s": r["total"]["calls_per_s"],
                   "checkout_capture_sales_per_s": per_call.get((r["workers"], r["concurrency"])),
                   "met": r["total"]["calls_per_s"] >= POST_SALES_TARGET_PER_S}
                  for r in results["load"] if r["name"] == "post_sales"]
    results["targets"] = {
        "quote_ratio_min": LOAD_SCENARIOS["quote"]["target_ratio"],
        "checkout_capture_ratio_min": LOAD_SCENARIOS["checkout_capture"]["target_ratio"],
        "quote_p99_ms_max_at_16": QUOTE_P99_TARGET_MS,
        "quote_p99_at_16": [{"workers": r["workers"], "p99_ms": r["total"]["p99_ms"],
                             "met": r["total"]["p99_ms"] is not None and r["total"]["p99_ms"] < QUOTE_P99_TARGET_MS}
                            for r in quote16],
        "post_sales_per_s_min": POST_SALES_TARGET_PER_S,
        "post_sales": post_sales,
    }


def profile(cfg: Config, server: Any, target: LoadTarget) -> dict[str, Any]:
    from benchmarks import profiling

    return profiling.profile_pos_mix(cfg, server, target, client_plan, log)


def create_database(postgres_url: str) -> str:
    name = f"loyalty_bench_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo(postgres_url, dbname=name)


def drop_database(postgres_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run(cfg: Config) -> dict[str, Any]:
    created = None
    url = cfg.database_url
    if not url:
        url = created = create_database(cfg.postgres_url)
    stub_dir = protogen.generate()
    try:
        sizes = baskets.message_sizes()
        results: dict[str, Any] = {
            "meta": {"started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "mode": "short" if cfg.short else "full", "machine": machine(url),
                     "warmup_s": cfg.warmup_s, "duration_s": cfg.duration_s, "members": cfg.members,
                     "pool_size_per_worker": cfg.pool_size, "client_channels": cfg.channels,
                     "client": "one separate Python grpc.aio process, closed loop, N calls in flight",
                     "request_bytes": sizes[0], "response_bytes": sizes[1]},
            "ceilings": [], "load": [], "micro": None, "verify": None, "profile": None, "outbox": None,
        }
        log(f"ceilings: messages of {sizes[0]} B in, {sizes[1]} B out; {cfg.members} member rows")
        ceilings.setup_schema(url, cfg.members)
        target = None
        if not cfg.ceilings_only:
            from benchmarks import load  # needs loyalty-core installed

            tag = secrets.token_hex(4)
            target = LoadTarget(url=url, api_key=cfg.api_key or load.create_key(url, tag), tag=tag)
        try:
            measure_all(cfg, url, str(stub_dir), sizes, results, target)
        finally:
            ceilings.drop_schema(url)
        if target is not None:
            results["meta"]["programme_id"] = target.programme_id
            results["meta"]["seed"] = {"how": "concurrent EnrolMember calls (welcome bonus included)",
                                       "in_flight": 64, "seconds": target.seed_s}
        if not cfg.skip_micro:
            from benchmarks import micro

            results["micro"] = micro.run(cfg.short, log)
        add_ratios(cfg, results)
        results["meta"]["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return results
    finally:
        shutil.rmtree(stub_dir, ignore_errors=True)
        if created and not cfg.keep_database:
            drop_database(cfg.postgres_url, created)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    started = time.monotonic()
    results = run(cfg)
    from benchmarks import report

    paths = report.write(results, cfg.out_dir)
    if not cfg.short and cfg.out_dir.resolve() == RESULTS_DIR.resolve():
        # A full run into the default folder refreshes the committed table the README points at.
        published = ROOT / "benchmarks" / "RESULTS.md"
        published.write_text(report.markdown(results))
        paths.append(published)
    log(f"done in {time.monotonic() - started:.0f}s: " + ", ".join(str(p) for p in paths))
    print(json.dumps({"results": str(paths[0]), "verify": results["verify"]}))
    return 0 if (results["verify"] is None or results["verify"]["ok"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
