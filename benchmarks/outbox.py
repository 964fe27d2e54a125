"""The outbox beside the checkout rate: the events each load row wrote per second, and how fast one
webhook subscription is delivered the whole backlog by the delivery job (to a receiver on 127.0.0.1
that answers 200 at once, so the figure is the job's own rate, not a receiver's)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Any

import psycopg


def events_written(url: str) -> int:
    """Events in the outbox now (the load never purges)."""
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT count(*) FROM outbox_event").fetchone()[0]


def row(before: int, after: int, acks: dict[str, int], calls_per_s: float) -> dict[str, Any]:
    """What one load row wrote: events per acknowledged call (warm-up included on both sides), and
    so per second at the row's call rate."""
    calls = sum(acks.values())
    per_call = (after - before) / calls if calls else 0.0
    return {"written": after - before, "per_call": per_call, "per_s": per_call * calls_per_s}


# The receiver, in a process of its own so its CPU is not the delivery's: keep-alive HTTP/1.1 (one
# connection per sender, as behind any web server), 200 at once, its port on the first line.
_RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
print(server.server_port, flush=True)
server.serve_forever()
"""


def delivery(url: str, programme_id: str, seconds: float) -> dict[str, Any]:
    """Subscribe a local receiver to the programme from its first event and run the delivery job
    until the backlog is delivered or ``seconds`` pass; events delivered per second."""
    receiver = subprocess.Popen([sys.executable, "-c", _RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        return asyncio.run(_deliver(url, programme_id, f"http://127.0.0.1:{port}/", seconds))
    finally:
        receiver.kill()
        receiver.wait()


async def _deliver(url: str, programme_id: str, target: str, seconds: float) -> dict[str, Any]:
    from loyalty_core import webhooks
    from loyalty_core.clock import SystemClock
    from loyalty_core.store import webhooks as subscriptions
    from loyalty_core.store.db import Database

    clock = SystemClock()
    rules = webhooks.DeliveryRules(master_key="benchmark", timeout_s=5.0, attempts_max=3, backoff_base_s=1.0,
                                   backoff_max_s=10.0, run_budget_s=seconds)
    async with Database(url, pool_min_size=1, pool_max_size=4) as db:
        async with db.transaction() as conn:
            sub = await subscriptions.insert(conn, str(uuid.uuid4()), programme_id, target, (), "benchmark", "bench",
                                             clock.now_us())
            # From the programme's first event: the whole backlog the load wrote.
            await conn.execute("UPDATE webhook_subscription SET cursor_tx = '0', cursor_position = 0"
                               " WHERE subscription_id = %s", (sub.subscription_id,))
            cur = await conn.execute("SELECT count(*) FROM outbox_event WHERE programme_id = %s", (programme_id,))
            backlog = (await cur.fetchone())[0]
        delivered, started = 0, time.monotonic()
        while time.monotonic() - started < seconds:
            done, more = await webhooks.deliver(db, clock, rules)
            delivered += done
            if not done and not more:
                break
        elapsed = time.monotonic() - started
        async with db.connection() as conn:
            await subscriptions.delete(conn, sub.subscription_id, clock.now_us())
    return {"backlog": backlog, "delivered": delivered, "seconds": elapsed,
            "events_per_s": delivered / elapsed if elapsed else 0.0}
