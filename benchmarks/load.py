"""The real server under load: start it with N workers, enrol the members, and check the ledger afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import baskets, procs

SEED_IN_FLIGHT = 64
START_TIMEOUT_S = 90.0
# Rights the benchmark key needs: the sale (pos), and programme_admin to create the programme,
# enrol members and run VerifyLedger.
KEY_RIGHTS = "pos,programme_admin"


class Server:
    """``loyalty-core serve`` with ``LOYALTY_WORKERS=workers`` on a free port; its log goes to a temp file
    (kept, and named, when the server fails). Configured as in production but for the pool size."""

    def __init__(self, url: str, workers: int, pool_size: int) -> None:
        self.port = procs.free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.log_file = tempfile.NamedTemporaryFile(prefix=f"loyalty-bench-server-w{workers}-", suffix=".log",
                                                    delete=False)
        env = procs.child_env({
            "LOYALTY_DATABASE_URL": url, "LOYALTY_GRPC_ADDR": self.target, "LOYALTY_METRICS_ADDR": "127.0.0.1:0",
            "LOYALTY_WORKERS": str(workers), "LOYALTY_POOL_MIN_SIZE": str(pool_size),
            "LOYALTY_POOL_MAX_SIZE": str(pool_size)})
        self.proc = subprocess.Popen([sys.executable, "-m", "server", "serve"], env=env, cwd=procs.ROOT,
                                     stdout=self.log_file, stderr=subprocess.STDOUT)
        self.workers = workers
        self.failed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> None:
        """Health SERVING on several fresh connections (so that, with luck, every worker was asked)."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + START_TIMEOUT_S
        ok = 0
        while ok < 4 * self.workers:
            if self.proc.poll() is not None:
                self.failed = True
                raise RuntimeError(f"loyalty-core serve exited {self.proc.returncode}; log: {self.log_file.name}")
            if time.monotonic() > deadline:
                self.failed = True
                raise RuntimeError(f"loyalty-core serve not SERVING after {START_TIMEOUT_S:.0f}s; "
                                   f"log: {self.log_file.name}")
            with grpc.insecure_channel(self.target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                try:
                    status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    ok = ok + 1 if status == health_pb2.HealthCheckResponse.SERVING else 0
                except grpc.RpcError:
                    ok = 0
            if ok == 0:
                time.sleep(0.2)

    def stop(self) -> None:
        procs.Workers([self.proc]).stop(grace_s=30)
        self.log_file.close()
        if not self.failed:
            os.unlink(self.log_file.name)

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self.failed = True
        self.stop()


def create_key(url: str, tag: str) -> str:
    """An API key through the operators' own command (`loyalty-core keys create`)."""
    done = subprocess.run(
        [sys.executable, "-m", "server", "keys", "create", "--name", f"bench-{tag}", "--rights", KEY_RIGHTS,
         "--all-programmes"], env=procs.child_env({"LOYALTY_DATABASE_URL": url}), cwd=procs.ROOT,
        capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"loyalty-core keys create failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


def _metadata(key: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {key}"),) if key else None


async def _create_programme(channel: Any, md: Any, tag: str) -> str:
    """The benchmark programme (baskets.PROGRAMME_RULES) by CreateProgramme; its id."""
    from loyalty.v1 import programme_pb2, programme_pb2_grpc

    rules = baskets.PROGRAMME_RULES
    programme = programme_pb2.Programme(
        name=f"bench {tag}", enabled=True, currency_code=rules["currency_code"],
        point_value_minor=rules["point_value_minor"], point_lifetime_days=365, activation_delay_days=0,
        order_pay_share_bps=rules["order_pay_share_bps"], default_cashback_bps=rules["default_cashback_bps"],
        default_pay_share_bps=rules["default_pay_share_bps"],
        category_rules=[programme_pb2.CategoryRule(**r) for r in rules["category_rules"]],
        discounted_items_earn=True, compatibility=programme_pb2.COMPATIBILITY_POINTS_AFTER_DISCOUNTS,
        refund_returns_spent_points=True, hold_ttl_seconds=3600,
        negative_balance_policy=programme_pb2.NEGATIVE_BALANCE_POLICY_TAKE_AVAILABLE,
        welcome_bonus_points=rules["welcome_bonus_points"], require_confirmation=False,
        purchase_counts_when=programme_pb2.PURCHASE_COUNTS_WHEN_CAPTURED,
        store_ids=rules["stores"], channels=rules["channels"])
    created = await programme_pb2_grpc.ProgrammeServiceStub(channel).CreateProgramme(
        programme_pb2.CreateProgrammeRequest(request_id=uuid.uuid4().hex, programme=programme),
        metadata=md, timeout=30)
    return created.programme.programme_id


def create_programme(target: str, key: str | None, tag: str) -> str:
    """The benchmark programme on the real server at ``target``, with no member yet."""
    import grpc.aio

    async def run() -> str:
        async with grpc.aio.insecure_channel(target) as channel:
            return await _create_programme(channel, _metadata(key), tag)

    return asyncio.run(run())


async def _seed(target: str, key: str | None, tag: str, members: int) -> tuple[str, float]:
    """Create the benchmark programme and enrol ``members`` members by concurrent EnrolMember calls
    (the real path, welcome bonus included). Returns (programme id, seconds spent enrolling)."""
    import grpc.aio
    from loyalty.v1 import member_pb2, member_pb2_grpc

    md = _metadata(key)
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1),
                                                           ("loyaltybench.channel", i)]) for i in range(8)]
    try:
        programme_id = await _create_programme(channels[0], md, tag)
        stubs = [member_pb2_grpc.MemberServiceStub(ch) for ch in channels]
        queue = iter(range(members))
        started = time.perf_counter()

        async def enrol(worker: int) -> None:
            for n in queue:  # bounded: the shared iterator yields each member number once
                await stubs[worker % len(stubs)].EnrolMember(member_pb2.EnrolMemberRequest(
                    request_id=f"bench-{tag}-enrol-{n}", programme_id=programme_id, phone=baskets.phone(n)),
                    metadata=md, timeout=30)

        await asyncio.gather(*(enrol(i) for i in range(SEED_IN_FLIGHT)))
        return programme_id, time.perf_counter() - started
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))


def seed(target: str, key: str | None, tag: str, members: int) -> tuple[str, float]:
    return asyncio.run(_seed(target, key, tag, members))


async def _verify_rpc(target: str, key: str | None, programme_id: str) -> dict[str, Any]:
    import grpc.aio
    from loyalty.v1 import points_pb2, points_pb2_grpc

    async with grpc.aio.insecure_channel(target) as ch:
        resp = await points_pb2_grpc.PointsServiceStub(ch).VerifyLedger(
            points_pb2.VerifyLedgerRequest(programme_id=programme_id), metadata=_metadata(key), timeout=600)
    return {"members_checked": resp.members_checked, "lots_checked": resp.lots_checked,
            "disagreements": len(resp.disagreements),
            "first_disagreements": [f"{d.invariant}: {d.detail}" for d in resp.disagreements[:5]]}


def verify_command(url: str, programme_id: str) -> dict[str, Any]:
    """`loyalty-core verify --programme-id X`: exit 0 and 'no disagreements', or what disagrees."""
    done = subprocess.run([sys.executable, "-m", "server", "verify", "--programme-id", programme_id],
                          env=procs.child_env({"LOYALTY_DATABASE_URL": url}), cwd=procs.ROOT, capture_output=True,
                          text=True, timeout=900)
    lines = done.stdout.strip().splitlines()
    return {"exit_code": done.returncode, "summary": lines[-1] if lines else done.stderr.strip()[-300:],
            "disagreement_lines": lines[:-1][:5]}


def verify(url: str, target: str, key: str | None, programme_id: str, acked_captures: int) -> dict[str, Any]:
    """The ledger's own check, by the operators' command and by the VerifyLedger RPC, and captured
    orders against acknowledged captures."""
    command = verify_command(url, programme_id)
    rpc = asyncio.run(_verify_rpc(target, key, programme_id))
    with psycopg.connect(url) as conn:
        captured = conn.execute(
            "SELECT count(*) FROM orders WHERE programme_id = %s AND state IN ('captured', 'completed')",
            (programme_id,)).fetchone()[0]
    disagreements = rpc["disagreements"] if command["exit_code"] == 0 else max(1, rpc["disagreements"])
    return {"method": "loyalty-core verify (exit code) and VerifyLedger RPC", "command": command, **rpc,
            "disagreements": disagreements, "captured_orders": captured, "acked_captures": acked_captures,
            "captures_match": captured == acked_captures,
            "ok": command["exit_code"] == 0 and disagreements == 0 and captured == acked_captures}


def log_path_hint(server: Server) -> Path:
    return Path(server.log_file.name)
