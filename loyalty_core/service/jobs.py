"""The scheduled jobs: the ledger's and the levels' upkeep that runs without anyone calling it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from loyalty_core.clock import Clock
from loyalty_core.scheduler import Job, JobRun
from loyalty_core import webhooks
from loyalty_core.service import events, idempotent, membership, points
from loyalty_core.settings import Settings
from loyalty_core.store import programmes
from loyalty_core.store.db import Database

# The delivery job's name (its scheduler lock is taken by `loyalty-core deliver-webhooks` too).
DELIVER_WEBHOOKS = "deliver_webhooks"
# Programmes read per query when a job walks them all.
PROGRAMMES_PAGE = 100
# Transactions of the idempotency and event purges per run; with work left they run again at the next tick.
PURGE_BATCHES_PER_RUN = 10


async def _programme_ids(db: Database) -> AsyncIterator[str]:
    after: tuple[int, str] | None = None
    while True:
        async with db.connection() as conn:
            page = await programmes.page(conn, after, PROGRAMMES_PAGE)
        for programme in page:
            yield programme.programme_id
        if len(page) < PROGRAMMES_PAGE:
            return
        after = (page[-1].created_at, page[-1].programme_id)


def _each_programme(db: Database, run: Callable[[str], Awaitable[int]]) -> Callable[[], Awaitable[JobRun]]:
    """A job that runs ``run(programme_id)`` (its own batches) for every programme."""
    async def job() -> JobRun:
        items = 0
        async for programme_id in _programme_ids(db):
            items += await run(programme_id)
        return JobRun(items)
    return job


def scheduled_jobs(settings: Settings, db: Database, clock: Clock) -> list[Job]:
    """Every job with its interval from settings (``LOYALTY_JOB_*``)."""
    batch = settings.job_batch_size

    async def expiry() -> JobRun:
        # Burn expired lots, activate delayed points, release holds past their lifetime: at most
        # ``batch`` members per run, the rest at the next tick.
        run = await points.run_expiry(db, clock, "", None, members_max=batch)
        return JobRun(run.members, more=run.members == batch)

    async def review(programme_id: str) -> int:
        return (await membership.run_level_review(db, clock, programme_id, None, batch)).members_dropped

    async def recalculate(programme_id: str) -> int:
        return (await membership.recalculate_discounts(db, clock, programme_id, batch)).members_changed

    async def purge_idempotency() -> JobRun:
        # Keys past the replay window, ``batch`` per transaction, ten transactions a run.
        purged = await idempotent.purge(db, clock.now_us(), retention_days=settings.idempotency_retention_days,
                                        batch_size=batch, max_batches=PURGE_BATCHES_PER_RUN)
        return JobRun(purged, more=purged == batch * PURGE_BATCHES_PER_RUN)

    rules = delivery_rules(settings)

    async def deliver_webhooks() -> JobRun:
        # Every due subscription at once, each bounded by its own time budget; none without a key.
        if not rules.master_key:
            return JobRun()
        delivered, more = await webhooks.deliver(db, clock, rules)
        return JobRun(delivered, more=more)

    async def purge_events() -> JobRun:
        purged = await events.purge_events(db, clock, retention_days=settings.events_retention_days, batch=batch,
                                           max_batches=PURGE_BATCHES_PER_RUN)
        return JobRun(purged, more=purged == batch * PURGE_BATCHES_PER_RUN)

    async def expiry_notices() -> JobRun:
        written, more = await events.write_expiry_notices(db, clock, batch)
        return JobRun(written, more=more)

    return [
        Job("expiry", settings.job_expiry_interval_s, expiry),
        Job(DELIVER_WEBHOOKS, settings.job_deliver_webhooks_interval_s, deliver_webhooks),
        Job("purge_events", settings.job_purge_events_interval_s, purge_events),
        Job("expiry_notices", settings.job_expiry_notices_interval_s, expiry_notices),
        Job("purge_idempotency", settings.job_purge_idempotency_interval_s, purge_idempotency),
        Job("level_review", settings.job_level_review_interval_s, _each_programme(db, review)),
        Job("recalculate_discounts", settings.job_recalculate_discounts_interval_s, _each_programme(db, recalculate)),
    ]


def delivery_rules(settings: Settings) -> webhooks.DeliveryRules:
    return webhooks.DeliveryRules(
        master_key=settings.webhook_master_key, timeout_s=settings.webhook_timeout_s,
        attempts_max=settings.webhook_attempts_max, backoff_base_s=settings.webhook_backoff_base_s,
        backoff_max_s=settings.webhook_backoff_max_s,
    )
