"""`loyalty-core` command line: serve, migrate, verify, keys, import and one command per scheduled job."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

# The server forks only to exec (pg_ctl of the embedded PostgreSQL); gRPC's fork handlers are not
# needed for that and would log a warning about its threads. Read by gRPC at import: set it first.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from loyalty_core.settings import Settings
from server import logs

log = logging.getLogger(__name__)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from server.app import serve_workers

    return serve_workers(settings)


@contextmanager
def _database_url(settings: Settings) -> Iterator[str]:
    """LOYALTY_DATABASE_URL, or the embedded PostgreSQL's URL while it runs."""
    from loyalty_core.store import embedded

    if settings.database_url:
        yield settings.database_url
        return
    pg = embedded.start(settings.data_dir)
    try:
        yield pg.url
    finally:
        pg.stop()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from loyalty_core.store import migrate

    with _database_url(settings) as url:
        applied = asyncio.run(migrate.migrate(url, distribution=settings.database_distribution))
    log.info("migrations applied: %s", applied or "none pending", extra={"event": "migrated", "applied": applied})
    return 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Check the ledger's invariants for every member; print each disagreement, exit 1 if any."""
    from loyalty_core.service.verify import verify
    from loyalty_core.store.db import Database

    async def work(db: Database) -> int:
        result = await verify(db, args.programme_id)
        for d in result.disagreements:
            print(f"{d.programme_id} {d.member_id} {d.invariant}: {d.detail}")
        print(f"checked {result.members_checked} members and {result.lots_checked} lots: "
              f"{len(result.disagreements) or 'no'} disagreements")
        return 1 if result.disagreements else 0

    return _on_database(settings, work)


def _on_database(settings: Settings, work: Callable[[Any], Awaitable[int]], connections: int = 1) -> int:
    """``work(db)`` on a Database of ``connections`` connections (LOYALTY_DATABASE_URL, or the embedded
    one); its exit code, 2 when a rule refused it (say a later --as-of: the message says why, no
    traceback)."""
    from loyalty_core import errors
    from loyalty_core.store.db import Database

    async def run(url: str) -> int:
        async with Database(url, pool_min_size=connections, pool_max_size=connections) as db:
            return await work(db)

    with _database_url(settings) as url:
        try:
            return asyncio.run(run(url))
        except errors.LoyaltyError as err:
            print(f"loyalty-core: {err.code}: {err.message}", file=sys.stderr)
            return 2


def cmd_review_levels(settings: Settings, args: argparse.Namespace) -> int:
    """The scheduled level review of one programme (cron it daily): drop who missed their period."""
    from loyalty_core.clock import SystemClock
    from loyalty_core.service.membership import run_level_review
    from loyalty_core.store.db import Database

    as_of = _as_of_us(args.as_of)

    async def work(db: Database) -> int:
        result = await run_level_review(db, SystemClock(), args.programme_id, as_of, args.batch_size)
        print(f"reviewed {result.members_reviewed} members: {result.members_dropped} dropped one level")
        return 0

    return _on_database(settings, work)


def _as_of_us(as_of: str) -> int | None:
    return None if not as_of else _iso_us(as_of)


def cmd_expire(settings: Settings, args: argparse.Namespace) -> int:
    """The scheduled expiry job from cron: burn expired lots, activate due ones, release stale holds."""
    from loyalty_core.clock import SystemClock
    from loyalty_core.service.points import run_expiry
    from loyalty_core.store.db import Database

    async def work(db: Database) -> int:
        r = await run_expiry(db, SystemClock(), args.programme_id, _as_of_us(args.as_of))
        print(f"{r.members} members: {r.lots_expired} lots expired ({r.points_expired} points), "
              f"{r.lots_activated} lots activated ({r.points_activated} points), "
              f"{r.holds_released} holds released ({r.points_released} points), "
              f"{r.certificates_expired} certificates expired ({r.certificate_points_expired} points), "
              f"{r.certificate_holds_released} certificate holds released")
        return 0

    return _on_database(settings, work)


def cmd_recalculate_discounts(settings: Settings, args: argparse.Namespace) -> int:
    """The scheduled recount of purchase totals and accumulative rates of one programme."""
    from loyalty_core.clock import SystemClock
    from loyalty_core.service.membership import recalculate_discounts
    from loyalty_core.store.db import Database

    async def work(db: Database) -> int:
        r = await recalculate_discounts(db, SystemClock(), args.programme_id, args.batch_size)
        print(f"recalculated {r.members_recalculated} members: {r.members_changed} changed")
        return 0

    return _on_database(settings, work)


def _expire_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--programme-id", default="", help="only this programme (default: every programme)")
    parser.add_argument("--as-of", default="", help="ISO 8601 time with zone to act as of (default: now)")


def _recalculate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--programme-id", required=True, help="the programme to recount")
    parser.add_argument("--batch-size", type=int, default=0, help="members per transaction (default 500)")


def cmd_purge_idempotency(settings: Settings, args: argparse.Namespace) -> int:
    """Delete idempotency keys older than LOYALTY_IDEMPOTENCY_RETENTION_DAYS (cron it daily)."""
    from loyalty_core.clock import SystemClock
    from loyalty_core.service.idempotent import purge
    from loyalty_core.store.db import Database

    now = SystemClock().now_us() if not args.as_of else _iso_us(args.as_of)

    async def work(db: Database) -> int:
        purged = await purge(db, now, retention_days=settings.idempotency_retention_days,
                             batch_size=args.batch_size, max_batches=args.max_batches)
        print(f"purged {purged} idempotency keys older than {settings.idempotency_retention_days} days")
        return 0

    return _on_database(settings, work)


def _purge_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", default="", help="ISO 8601 time with zone the window ends at (default: now)")
    parser.add_argument("--batch-size", type=int, default=1000, help="rows deleted per transaction (default 1000)")
    parser.add_argument("--max-batches", type=int, default=0,
                        help="stop after this many transactions (default 0: until none is left)")


# The actor history records for an export made on the command line (an operator on the machine).
CLI_ACTOR = "loyalty-core-cli"


def cmd_export_member(settings: Settings, args: argparse.Namespace) -> int:
    """One member's data as one JSON document on stdout; recorded in history like ExportMemberData."""
    import uuid

    from loyalty_core import errors
    from loyalty_core.clock import SystemClock
    from loyalty_core.model import WriteContext
    from loyalty_core.service.privacy import MemberDataRequest, export
    from loyalty_core.store.db import Database

    req = MemberDataRequest(args.request_id or str(uuid.uuid4()), args.programme_id, args.member_id,
                            WriteContext(actor=CLI_ACTOR))

    async def work(db: Database) -> int:
        try:
            print((await export(db, SystemClock(), req)).document)
        except errors.LoyaltyError as err:
            print(f"loyalty-core export-member: {err.code}: {err.message}", file=sys.stderr)
            return 2
        return 0

    return _on_database(settings, work)


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    """Import members from a JSON Lines or CSV file, a batch per transaction, a progress line on
    stderr; each refused row on stdout (line, external id, reason, field, message); exit 1 if any
    row was refused. Running it again on the same file imports only what is missing."""
    from loyalty_core import errors
    from loyalty_core.clock import SystemClock
    from loyalty_core.model import ImportRow, WriteContext
    from loyalty_core.service import imports
    from loyalty_core.store.db import Database
    from server import import_source

    with open(args.file, encoding="utf-8", newline="") as f:
        progress = import_source.Progress(import_source.count_rows(f, args.format), sys.stderr)
    context = WriteContext(actor=CLI_ACTOR)
    refused = 0

    def report(line: int, external_id: str, err: errors.LoyaltyError) -> None:
        nonlocal refused
        refused += 1
        print(f"line {line}: {external_id or '-'}: {err.code}" + (f" ({err.field})" if err.field else "")
              + f": {err.message}")

    async def run_batch(db: Database, batch: list[ImportRow]) -> None:
        outcomes = await imports.import_members(db, SystemClock(), batch, context)
        bad = 0
        for row, outcome in zip(batch, outcomes):
            if isinstance(outcome, errors.LoyaltyError):
                bad += 1
                report(row.line, row.member.external_id, outcome)
        progress.add(len(batch), bad)

    async def work(db: Database) -> int:
        # Up to --jobs batches at once, each in its own transaction on its own connection: while
        # one waits for PostgreSQL, the next is read and checked.
        running: set[asyncio.Task[None]] = set()

        async def submit(rows: list[ImportRow]) -> None:
            if len(running) >= args.jobs:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.discard(task)
                    task.result()  # a batch that failed ends the import with its error
            running.add(asyncio.create_task(run_batch(db, rows)))

        batch: list[ImportRow] = []
        with open(args.file, encoding="utf-8", newline="") as f:
            for line, member in import_source.rows(f, args.format):
                if isinstance(member, errors.LoyaltyError):
                    report(line, "", member)
                    progress.add(1, 1)
                    continue
                batch.append(ImportRow(args.programme_id, line, member))
                if len(batch) == args.batch_size:
                    await submit(batch)
                    batch = []
            if batch:
                await submit(batch)
        for task in running:
            await task
        progress.finish()
        return 1 if refused else 0

    return _on_database(settings, work, connections=args.jobs)


def _import_args(parser: argparse.ArgumentParser) -> None:
    from server import import_source

    parser.add_argument("file", help="the rows: one member per line (JSON Lines) or per CSV row")
    parser.add_argument("--programme-id", required=True, help="the programme the members join")
    parser.add_argument("--format", choices=import_source.FORMATS, default="jsonl")
    parser.add_argument("--batch-size", type=_batch_size, default=1000,
                        help="rows per transaction (1..1000)")
    parser.add_argument("--jobs", type=int, choices=range(1, 9), default=2, metavar="1..8",
                        help="batches in flight at once, one connection each (default 2)")


def _batch_size(text: str) -> int:
    from loyalty_core.service.imports import MAX_ROWS_PER_TRANSACTION

    value = int(text)
    if not 1 <= value <= MAX_ROWS_PER_TRANSACTION:
        raise argparse.ArgumentTypeError(f"1..{MAX_ROWS_PER_TRANSACTION}")
    return value


def _export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--programme-id", required=True, help="the member's programme")
    parser.add_argument("--member-id", required=True, help="the member")
    parser.add_argument("--request-id", default="", help="idempotency key (default: a new one, a new history entry)")


def cmd_expiry_notices(settings: Settings, args: argparse.Namespace) -> int:
    """Write the due "points expiring soon" events of every programme (the job, for cron)."""
    from loyalty_core.clock import ManualClock, SystemClock
    from loyalty_core.service.events import write_expiry_notices

    clock = ManualClock(_iso_us(args.as_of)) if args.as_of else SystemClock()

    async def work(db: Any) -> int:
        total, more = 0, True
        while more:  # the job's bounded runs, one after another until none is due
            written, more = await write_expiry_notices(db, clock, args.batch_size)
            total += written
        print(f"wrote {total} expiring-points notices")
        return 0

    return _on_database(settings, work)


def cmd_purge_events(settings: Settings, args: argparse.Namespace) -> int:
    """Delete events older than LOYALTY_EVENTS_RETENTION_DAYS that every webhook has had (cron it daily)."""
    from loyalty_core.clock import ManualClock, SystemClock
    from loyalty_core.service.events import purge_events

    clock = ManualClock(_iso_us(args.as_of)) if args.as_of else SystemClock()

    async def work(db: Any) -> int:
        purged = await purge_events(db, clock, retention_days=settings.events_retention_days,
                                    batch=args.batch_size, max_batches=args.max_batches or sys.maxsize)
        print(f"purged {purged} events older than {settings.events_retention_days} days")
        return 0

    return _on_database(settings, work)


def cmd_deliver_webhooks(settings: Settings, args: argparse.Namespace) -> int:
    """Run the webhook delivery job until nothing is due or --seconds pass (for cron), under the
    job's lock; exit 1 without LOYALTY_WEBHOOK_MASTER_KEY."""
    import time

    from loyalty_core import webhooks
    from loyalty_core.clock import SystemClock
    from loyalty_core.service.jobs import DELIVER_WEBHOOKS as JOB, delivery_rules
    from loyalty_core.store import jobs

    if not settings.webhook_master_key:
        print("loyalty-core deliver-webhooks: LOYALTY_WEBHOOK_MASTER_KEY is not set", file=sys.stderr)
        return 1
    rules = delivery_rules(settings)

    async def work(db: Any) -> int:
        # The job's own lock: beside servers that deliver, one sender per subscription at a time.
        async with db.dedicated_connection() as conn:
            if not await jobs.hold(conn, JOB):
                print(f"another runner holds the {JOB} job; nothing done")
                return 0
            total, more, deadline = 0, True, time.monotonic() + args.seconds
            while more and time.monotonic() < deadline:
                delivered, more = await webhooks.deliver(db, SystemClock(), rules)
                total += delivered
            await jobs.unlock(conn, JOB)
        print(f"delivered {total} events")
        return 0

    return _on_database(settings, work)


def _deliver_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=50.0, help="stop after this long (default 50: under cron's minute)")


def _notices_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as-of", default="", help="ISO 8601 time with zone to write the notices as of (default: now)")
    parser.add_argument("--batch-size", type=int, default=500, help="notices per programme and transaction (default 500)")


def _iso_us(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


def _review_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--programme-id", required=True, help="the programme to review")
    parser.add_argument("--as-of", default="", help="ISO 8601 time with zone the periods end at (default: now)")
    parser.add_argument("--batch-size", type=int, default=0, help="members per transaction (default 500)")


def _verify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--programme-id", default="", help="only this programme (default: every programme)")


def add_keys_args(parser: argparse.ArgumentParser) -> None:
    from loyalty_core.store.keys import RIGHTS

    keys_sub = parser.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once (only its hash is stored)")
    create.add_argument("--name", required=True, help="recorded as the actor of every write made with the key")
    create.add_argument("--rights", required=True, help=f"comma-separated: {', '.join(RIGHTS)}")
    scope = create.add_mutually_exclusive_group(required=True)
    scope.add_argument("--programmes", help="comma-separated programme ids the key may act on")
    scope.add_argument("--all-programmes", action="store_true", help="every programme, present and future")
    keys_sub.add_parser("list", help="list keys (names, rights, programmes; never the keys)")
    revoke = keys_sub.add_parser("revoke", help="revoke a key; servers refuse it within LOYALTY_AUTH_CACHE_TTL_S")
    revoke.add_argument("name")


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    import psycopg

    from loyalty_core import errors
    from loyalty_core.clock import SystemClock
    from loyalty_core.store import keys, migrate

    async def run(url: str) -> int:
        await migrate.migrate(url, distribution=settings.database_distribution)
        async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
            now_us = SystemClock().now_us()
            if args.keys_command == "create":
                programmes = None if args.all_programmes else _split(args.programmes)
                key, secret = await keys.create(conn, args.name, _split(args.rights), programmes, now_us)
                print(secret)
                print(f"key {key.name!r} created; it is shown only this once", file=sys.stderr)
            elif args.keys_command == "list":
                print("name\tprefix\trights\tprogrammes\tcreated\trevoked")
                for key in await keys.list_all(conn):
                    programmes = "*" if key.programme_ids is None else ",".join(sorted(key.programme_ids))
                    print(f"{key.name}\t{key.key_prefix}\t{','.join(sorted(key.rights))}\t{programmes}\t"
                          f"{key.created_at.isoformat()}\t{key.revoked_at.isoformat() if key.revoked_at else ''}")
            else:
                key = await keys.revoke(conn, args.name, now_us)
                print(f"key {key.name!r} revoked; servers refuse it within {settings.auth_cache_ttl_s:g} s",
                      file=sys.stderr)
        return 0

    with _database_url(settings) as url:
        try:
            return asyncio.run(run(url))
        except errors.LoyaltyError as err:
            print(f"loyalty-core keys: {err.code}: {err.message}", file=sys.stderr)
            return 2


def _split(csv: str) -> list[str]:
    return [part.strip() for part in csv.split(",") if part.strip()]


# name -> (help, add-arguments, run). Add a subcommand with one line here.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[..., int]]] = {
    "serve": ("run the gRPC server in the foreground (migrates first)", lambda p: None, cmd_serve),
    "migrate": ("apply pending schema migrations and exit", lambda p: None, cmd_migrate),
    "verify": ("check the points ledger's invariants; exit 1 and print what disagrees", _verify_args, cmd_verify),
    "review-levels": ("drop one level every member who missed their level's period", _review_args,
                      cmd_review_levels),
    "expire": ("burn expired lots, activate due ones and release stale holds (the expiry job, for cron)",
               _expire_args, cmd_expire),
    "recalculate-discounts": ("recount purchase totals and accumulative rates of a programme (the job, for cron)",
                              _recalculate_args, cmd_recalculate_discounts),
    "keys": ("create, list and revoke API keys", add_keys_args, cmd_keys),
    "purge-idempotency": ("delete idempotency keys older than the replay window", _purge_args,
                          cmd_purge_idempotency),
    "expiry-notices": ("write the due 'points expiring soon' events (the job, for cron)", _notices_args,
                       cmd_expiry_notices),
    "purge-events": ("delete events past their retention that every webhook has had", _purge_args, cmd_purge_events),
    "deliver-webhooks": ("send the due webhook deliveries (the job, for cron)", _deliver_args, cmd_deliver_webhooks),
    "export-member": ("print everything held about one member as one JSON document", _export_args,
                      cmd_export_member),
    "import": ("import members with their balances and past purchases from a JSON Lines or CSV file",
               _import_args, cmd_import),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="loyalty-core", description="loyalty-core points-and-discounts engine. "
                                     "Configured by LOYALTY_* environment variables (see README).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_, add_args, _run) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_))
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    return COMMANDS[args.command][2](settings, args)


if __name__ == "__main__":
    raise SystemExit(main())
