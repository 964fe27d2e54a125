"""The load client: one separate process keeping N calls in flight for a bounded time, writing raw latencies as JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks import baskets

# Every call gets this deadline; a call past it is an error (DEADLINE_EXCEEDED), never retried.
CALL_TIMEOUT_S = 30.0
# A loop bound besides time: no worker runs more iterations than this.
MAX_ITERATIONS_PER_WORKER = 2_000_000
# Hot-member scenarios put all traffic on this many members.
HOT_MEMBERS = 10
POINTS_PAYING_SHARE = 0.30  # share of orders that pay partly with points
# The post_sales row: this many tills stream their backlogs at once (the rest of the calls in
# flight stay idle), each backlog this many sales on one PostSales stream.
POST_SALES_STREAMS = 4
BACKLOG_SALES = 500


@dataclass
class Recorder:
    """Latencies (µs) per method while measuring; acknowledged writes for the whole run."""

    measuring: bool = False
    measure_start: float = 0.0
    measure_start_wall: float = 0.0
    stop_at: float = 0.0
    lat_us: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, dict[str, int]] = field(default_factory=dict)
    acks: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, list[str]] = field(default_factory=dict)

    async def call(self, method: str, coro: Awaitable[Any], started: float | None = None) -> Any | None:
        """Await one call, record it (its latency from ``started``, default now), return its response
        or None when it failed."""
        t0 = time.perf_counter() if started is None else started
        try:
            response = await coro
        except Exception as err:  # the status code is the result here, whatever it is
            details = getattr(err, "details", None)
            self._error(method, _code_name(err), str(details() if callable(details) else err))
            return None
        t1 = time.perf_counter()
        self.acks[method] = self.acks.get(method, 0) + 1
        if self.measuring and t1 <= self.stop_at:
            self.lat_us.setdefault(method, []).append(int((t1 - t0) * 1e6))
        return response


    async def stream(self, method: str, call: Any, sent: dict[int, float]) -> None:
        """Read a bidirectional stream's answers (each with the ``index`` of its request); record each
        as one call whose latency runs from its request's send time (``sent``) to its answer. An
        answer that is a refusal counts as an error of its reason; a broken stream as one error."""
        try:
            async for answer in call:
                t1 = time.perf_counter()
                t0 = sent.pop(answer.index)
                if answer.WhichOneof("outcome") == "refusal":
                    self._error(method, answer.refusal.reason, answer.refusal.message)
                    continue
                self.acks[method] = self.acks.get(method, 0) + 1
                if self.measuring and t1 <= self.stop_at:
                    self.lat_us.setdefault(method, []).append(int((t1 - t0) * 1e6))
        except Exception as err:  # the status code is the result here, whatever it is
            self._error(method, _code_name(err), str(err))

    def _error(self, method: str, code: str, details: str) -> None:
        if self.measuring and time.perf_counter() <= self.stop_at:
            by_code = self.errors.setdefault(method, {})
            by_code[code] = by_code.get(code, 0) + 1
        samples = self.error_samples.setdefault(method, [])
        if len(samples) < 3:  # what the server said, for the report; a few are enough
            samples.append(f"{code}: {details}"[:300])


def _code_name(err: BaseException) -> str:
    code = getattr(err, "code", None)
    if callable(code):
        try:
            return code().name
        except Exception:  # not a gRPC error after all
            pass
    return "CLIENT_" + type(err).__name__


class MemberPicker:
    def __init__(self, plan: dict[str, Any], rng: random.Random) -> None:
        self.n = HOT_MEMBERS if plan.get("hot") else int(plan["members"])
        self.rng = rng

    def __call__(self) -> int:
        return self.rng.randrange(self.n)


# --- scenarios: each builds ``iteration(worker_no, rng)`` coroutines --------------------------------

Iteration = Callable[[int, random.Random], Awaitable[None]]


def _channels(plan: dict[str, Any]):
    import grpc.aio

    n = max(1, min(int(plan.get("channels", 16)), int(plan["concurrency"])))
    # A local subchannel pool per channel: otherwise grpc shares one connection between channels
    # with equal arguments, and SO_REUSEPORT balances workers per connection, not per call.
    return [grpc.aio.insecure_channel(plan["target"], options=[
        ("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 4 * 1024 * 1024),
        ("loyaltybench.channel", i)]) for i in range(n)]


def ceiling_scenario(plan: dict[str, Any], rec: Recorder) -> tuple[Iteration, list]:
    from benchmarks import protogen

    pb, pb_grpc = protogen.load(plan["stub_dir"])
    channels = _channels(plan)
    stubs = [pb_grpc.CeilingServiceStub(ch) for ch in channels]
    kind = plan["scenario"].split(":", 1)[1]
    method_name = {"bare": "Bare", "select": "Select", "tx": "CheckoutTx"}[kind]
    body = b"q" * int(plan.get("request_bytes", 600))

    async def iteration(worker: int, rng: random.Random) -> None:
        stub = stubs[worker % len(stubs)]
        member = rng.randrange(HOT_MEMBERS if plan.get("hot") else int(plan["members"]))
        await rec.call(method_name, getattr(stub, method_name)(pb.Payload(member_no=member, body=body),
                                                               timeout=CALL_TIMEOUT_S))

    return iteration, channels


async def db_scenario(plan: dict[str, Any], rec: Recorder) -> tuple[Iteration, Any]:
    """The database ceiling: the checkout's transaction through psycopg, no gRPC."""
    from psycopg_pool import AsyncConnectionPool

    from benchmarks import ceilings

    size = int(plan["pool_size"])
    pool = AsyncConnectionPool(plan["database_url"], min_size=size, max_size=size, open=False,
                               kwargs=ceilings.pool_kwargs())
    await pool.open(wait=True, timeout=30)

    async def one(member: int) -> None:
        async with pool.connection() as conn:
            await ceilings.checkout_tx(conn, member)

    async def iteration(worker: int, rng: random.Random) -> None:
        member = rng.randrange(HOT_MEMBERS if plan.get("hot") else int(plan["members"]))
        await rec.call("CheckoutTx", one(member))

    return iteration, pool


def loyalty_scenario(plan: dict[str, Any], rec: Recorder) -> tuple[Iteration, list]:
    """quote | checkout_capture | post_sale | post_sales | pos_mix against the real server, members by phone."""
    from google.protobuf import timestamp_pb2

    from loyalty.v1 import checkout_pb2 as pb
    from loyalty.v1 import checkout_pb2_grpc, common_pb2

    channels = _channels(plan)
    stubs = [checkout_pb2_grpc.CheckoutServiceStub(ch) for ch in channels]
    programme = plan["programme_id"]
    metadata = (("authorization", f"Bearer {plan['api_key']}"),) if plan.get("api_key") else None
    tag = plan["run_tag"]
    shares = {r["category"]: r["pay_share_bps"] for r in baskets.PROGRAMME_RULES["category_rules"]}
    default_share = baskets.PROGRAMME_RULES["default_pay_share_bps"]
    stores = baskets.PROGRAMME_RULES["stores"]
    kind = plan["scenario"]
    seq = [0] * int(plan["concurrency"])

    def opts() -> dict[str, Any]:
        return {"timeout": CALL_TIMEOUT_S, "metadata": metadata}

    def wish(lines: list[baskets.Line], rng: random.Random) -> int:
        # Points a paying member asks for: at most half of what the share caps allow, so a
        # checkout without a quote first is not refused for asking too much.
        if rng.random() >= POINTS_PAYING_SHARE:
            return 0
        cap = sum((x.quantity * x.unit_price_minor - x.line_discount_minor) * shares.get(x.category, default_share)
                  // 10000 for x in lines) // 2
        return min(rng.randrange(50, 2000), cap)

    def offline_sale(order_id: str, member: Any, store: str, proto_lines: Any, requested: int,
                     context: Any) -> Any:
        # Sold an hour ago while the till was offline.
        sale_time = timestamp_pb2.Timestamp()
        sale_time.FromMicroseconds(time.time_ns() // 1000 - 3_600 * 10**6)
        return pb.PostSaleRequest(
            request_id=uuid.uuid4().hex, programme_id=programme, order_id=order_id, member=member, store_id=store,
            channel="pos", lines=proto_lines, requested_points=requested, currency_code="USD", context=context,
            sale_time=sale_time)

    async def backlog(worker: int, rng: random.Random) -> None:
        """One till's backlog of BACKLOG_SALES sales on one PostSales stream, sent as fast as the
        stream takes them; each sale's answer is recorded as a call."""
        if worker >= POST_SALES_STREAMS:
            await asyncio.sleep(max(0.0, rec.stop_at - time.perf_counter()))
            return
        stub = stubs[worker % len(stubs)]
        store = stores[worker % len(stores)]
        context = common_pb2.WriteContext(store_id=store, terminal_id=f"till-{worker}")
        sent: dict[int, float] = {}

        def sales() -> Any:
            for i in range(BACKLOG_SALES):
                lines = baskets.basket(rng)
                seq[worker] += 1
                member = common_pb2.MemberRef(phone=baskets.phone(rng.randrange(int(plan["members"]))))
                sent[i] = time.perf_counter()
                yield pb.PostSalesRequest(sale=offline_sale(f"{tag}-{worker}-{seq[worker]}", member, store,
                                                            baskets.to_proto(pb, lines), wish(lines, rng), context))

        await rec.stream("PostSales", stub.PostSales(sales(), **opts()), sent)

    async def iteration(worker: int, rng: random.Random) -> None:
        if kind == "post_sales":
            await backlog(worker, rng)
            return
        stub = stubs[worker % len(stubs)]
        member_no = rng.randrange(HOT_MEMBERS if plan.get("hot") else int(plan["members"]))
        member = common_pb2.MemberRef(phone=baskets.phone(member_no))
        lines = baskets.basket(rng)
        proto_lines = baskets.to_proto(pb, lines)
        store = stores[worker % len(stores)]
        if kind == "quote":
            await rec.call("Quote", stub.Quote(pb.QuoteRequest(
                programme_id=programme, member=member, store_id=store, channel="pos", lines=proto_lines,
                requested_points=wish(lines, rng), currency_code="USD"), **opts()))
            return
        requested = wish(lines, rng)
        if kind == "pos_mix":
            quoted = await rec.call("Quote", stub.Quote(pb.QuoteRequest(
                programme_id=programme, member=member, store_id=store, channel="pos", lines=proto_lines,
                currency_code="USD"), **opts()))
            if quoted is None:
                return
            requested = min(requested, quoted.pricing.points_max)
        seq[worker] += 1
        order_id = f"{tag}-{worker}-{seq[worker]}"
        context = common_pb2.WriteContext(store_id=store, terminal_id=f"till-{worker}")
        if kind == "post_sale":
            await rec.call("PostSale", stub.PostSale(offline_sale(order_id, member, store, proto_lines, requested,
                                                                  context), **opts()))
            return
        held = await rec.call("Checkout", stub.Checkout(pb.CheckoutRequest(
            request_id=uuid.uuid4().hex, programme_id=programme, order_id=order_id, member=member, store_id=store,
            channel="pos", lines=proto_lines, requested_points=requested, currency_code="USD", context=context),
            **opts()))
        if held is None:
            return
        if kind == "pos_mix" and rng.random() < 0.05:
            await rec.call("Cancel", stub.Cancel(pb.CancelRequest(
                request_id=uuid.uuid4().hex, programme_id=programme, order_id=order_id, context=context), **opts()))
            return
        captured = await rec.call("Capture", stub.Capture(pb.CaptureRequest(
            request_id=uuid.uuid4().hex, programme_id=programme, order_id=order_id, context=context), **opts()))
        if captured is not None and kind == "pos_mix" and rng.random() < 0.02:
            await rec.call("Refund", stub.Refund(pb.RefundRequest(
                request_id=uuid.uuid4().hex, programme_id=programme, order_id=order_id, context=context), **opts()))

    return iteration, channels


async def open_loop_quotes(plan: dict[str, Any], rec: Recorder, end: float) -> None:
    """Quotes offered at ``plan["rate_per_s"]`` whatever the answers do (open loop): each is sent at
    its own time and its latency counts from that time, so a server that falls behind shows it in
    the latency rather than in a slower offer (what a till feels)."""
    from loyalty.v1 import checkout_pb2 as pb
    from loyalty.v1 import checkout_pb2_grpc, common_pb2

    channels = _channels(plan)
    stubs = [checkout_pb2_grpc.CheckoutServiceStub(ch) for ch in channels]
    metadata = (("authorization", f"Bearer {plan['api_key']}"),) if plan.get("api_key") else None
    stores = baskets.PROGRAMME_RULES["stores"]
    rng = random.Random(f"{plan.get('seed', 1)}-open")
    interval = 1.0 / float(plan["rate_per_s"])
    in_flight: set[asyncio.Task[Any]] = set()

    async def one(n: int, due: float) -> None:
        member = common_pb2.MemberRef(phone=baskets.phone(rng.randrange(int(plan["members"]))))
        call = stubs[n % len(stubs)].Quote(pb.QuoteRequest(
            programme_id=plan["programme_id"], member=member, store_id=stores[n % len(stores)], channel="pos",
            lines=baskets.to_proto(pb, baskets.basket(rng)), currency_code="USD"),
            timeout=CALL_TIMEOUT_S, metadata=metadata)
        await rec.call("Quote", call, started=due)

    start = time.perf_counter()
    for n in range(MAX_ITERATIONS_PER_WORKER):
        due = start + n * interval
        if due >= end:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    await asyncio.gather(*(ch.close() for ch in channels))


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    rec = Recorder()
    scenario = plan["scenario"]
    closer: Callable[[], Awaitable[None]]
    if scenario == "quote_open":
        return await _run_open_loop(plan, rec)
    if scenario.startswith("ceiling:"):
        iteration, channels = ceiling_scenario(plan, rec)
        closer = lambda: asyncio.gather(*(ch.close() for ch in channels))  # noqa: E731
    elif scenario == "db:tx":
        iteration, pool = await db_scenario(plan, rec)
        closer = pool.close
    else:
        iteration, channels = loyalty_scenario(plan, rec)
        closer = lambda: asyncio.gather(*(ch.close() for ch in channels))  # noqa: E731

    warmup_s, duration_s = float(plan["warmup_s"]), float(plan["duration_s"])
    start = time.perf_counter()
    end = start + warmup_s + duration_s
    rec.stop_at = end

    async def worker(no: int) -> None:
        rng = random.Random(f"{plan.get('seed', 1)}-{plan.get('process_no', 0)}-{no}")
        for _ in range(MAX_ITERATIONS_PER_WORKER):
            if time.perf_counter() >= end:
                return
            await iteration(no, rng)

    async def start_measuring() -> None:
        await asyncio.sleep(warmup_s)
        rec.measure_start = time.perf_counter()
        rec.measure_start_wall = time.time()
        rec.measuring = True

    measure = asyncio.create_task(start_measuring())
    await asyncio.gather(*(worker(i) for i in range(int(plan["concurrency"]))))
    await measure
    await closer()
    return _result(rec, scenario)


def _result(rec: Recorder, scenario: str) -> dict[str, Any]:
    methods = {name: {"lat_us": rec.lat_us.get(name, []), "errors": rec.errors.get(name, {})}
               for name in sorted(set(rec.lat_us) | set(rec.errors))}
    elapsed = rec.stop_at - rec.measure_start if rec.measuring else 0.0
    # The measured window on the wall clock, for the runner's CPU readings (benchmarks.cpu).
    window = [rec.measure_start_wall, rec.measure_start_wall + elapsed] if rec.measuring else None
    return {"scenario": scenario, "elapsed_s": elapsed, "window": window, "methods": methods, "acks": rec.acks,
            "error_samples": rec.error_samples}


async def _run_open_loop(plan: dict[str, Any], rec: Recorder) -> dict[str, Any]:
    warmup_s, duration_s = float(plan["warmup_s"]), float(plan["duration_s"])
    start = time.perf_counter()
    rec.stop_at = start + warmup_s + duration_s

    async def start_measuring() -> None:
        await asyncio.sleep(warmup_s)
        rec.measure_start, rec.measure_start_wall, rec.measuring = time.perf_counter(), time.time(), True

    measure = asyncio.create_task(start_measuring())
    await open_loop_quotes(plan, rec, rec.stop_at)
    await measure
    return _result(rec, plan["scenario"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.client", description="one load client process")
    parser.add_argument("--plan", required=True, help="the run's plan as JSON")
    parser.add_argument("--out", required=True, help="where to write raw results (JSON)")
    args = parser.parse_args(argv)
    plan = json.loads(args.plan)
    if plan.get("stub_dir"):
        sys.path.insert(0, plan["stub_dir"])
    result = asyncio.run(run(plan))
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
