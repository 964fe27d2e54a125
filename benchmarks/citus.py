"""`python -m benchmarks.citus`: the same benchmark rows, the same client, in one run, on this
machine's single PostgreSQL and on a Citus coordinator with two workers (docs/scale-out.md).

The cluster is the tests' (tests/fixtures/citus.py: built from the vendored source, all three
instances on this machine), so the Citus rows measure what distribution costs per call here, on the
same two cores, not what a cluster of machines does. Arguments after ``--`` go to both runs
(default: ``--short --workers 1 --concurrency 16 --scenarios select,quote,tx,checkout_capture
--skip-micro --skip-outbox``: the outbox's delivery is not run on Citus, docs/scale-out.md).
"""

from __future__ import annotations

import json
import secrets
import sys
from typing import Any

from benchmarks import runner
from tests.fixtures import citus

DEFAULT_ARGS = ["--short", "--workers", "1", "--concurrency", "16", "--scenarios", "select,quote,tx,checkout_capture",
                "--skip-micro", "--skip-outbox"]


def _rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"row": r["name"], "workers": r["workers"], "in_flight": r["concurrency"],
             "calls_per_s": r["total"]["calls_per_s"], "p50_ms": r["total"]["p50_ms"],
             "p99_ms": r["total"]["p99_ms"], "errors": r["total"]["error_count"], "ratio": r.get("ratio")}
            for r in results["ceilings"] + results["load"]]


def main(argv: list[str]) -> int:
    shared = argv[argv.index("--") + 1:] if "--" in argv else DEFAULT_ARGS
    source = citus.find_source()
    if isinstance(source, str):
        print(source, file=sys.stderr)
        return 2
    cluster = citus.start(citus.build(source), citus.CACHE / "cluster-bench")
    try:
        citus_url = cluster.create_database(f"loyalty_bench_citus_{secrets.token_hex(4)}")
        table: dict[str, list[dict[str, Any]]] = {}
        ok = True
        for label, extra in (("postgresql", []), ("citus", ["--database-url", citus_url])):
            runner.log(f"== {label}")
            results = runner.run(runner.parse_args([*shared, *extra]))
            table[label] = _rows(results)
            ok = ok and (results["verify"] is None or results["verify"]["ok"])
        print(json.dumps(table, indent=1))
        return 0 if ok else 1
    finally:
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
