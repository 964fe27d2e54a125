"""What the domain reports for the metrics (points moved, replays, retries), without knowing Prometheus.

The server publishes its metrics as the observer of each RPC (a context variable, so each server
in a process counts its own calls), with the programme the RPC is about; a job over several
programmes names each one as it goes. Points moved inside a transaction are buffered and
reported only once it commits: a rolled-back or retried attempt moved nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class Observer(Protocol):
    def points_moved(self, kind: str, programme_id: str, points: int) -> None: ...

    def idempotent_replay(self, method: str) -> None: ...

    def tx_retry(self, sqlstate: str) -> None: ...

    def expiry_run(self, seconds: float) -> None: ...

    def job_finished(self, job: str, items: int, seconds: float, ok: bool) -> None: ...

    def card_locked(self, programme_id: str) -> None: ...

    def webhook_delivery(self, subscription_id: str, result: str) -> None: ...


_observer: ContextVar[Observer | None] = ContextVar("loyalty_observer", default=None)
_programme: ContextVar[str] = ContextVar("loyalty_observed_programme", default="")
_pending: ContextVar[list[tuple[str, str, int]] | None] = ContextVar("loyalty_pending_points", default=None)


@contextmanager
def observed_by(observer: Observer, programme_id: str = "") -> Iterator[None]:
    """Report what happens in this block (and the tasks it starts) to ``observer``, as happening
    in ``programme_id`` unless an inner ``in_programme`` says otherwise."""
    token = _observer.set(observer)
    try:
        with in_programme(programme_id):
            yield
    finally:
        _observer.reset(token)


@contextmanager
def in_programme(programme_id: str) -> Iterator[None]:
    token = _programme.set(programme_id)
    try:
        yield
    finally:
        _programme.reset(token)


@contextmanager
def transaction() -> Iterator[None]:
    """Buffer ``points_moved`` until the block ends without an exception (the commit)."""
    pending: list[tuple[str, str, int]] = []
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
    # Reached only when the block raised nothing: the transaction committed.
    observer = _observer.get()
    if observer is not None:
        for kind, programme_id, points in pending:
            observer.points_moved(kind, programme_id, points)


def points_moved(kind: str, points: int) -> None:
    """A movement of ``kind`` (a movement.kind) of ``points`` (> 0) in the current programme."""
    programme_id = _programme.get()
    pending = _pending.get()
    if pending is not None:
        pending.append((kind, programme_id, points))
        return
    observer = _observer.get()
    if observer is not None:
        observer.points_moved(kind, programme_id, points)


def idempotent_replay(method: str) -> None:
    observer = _observer.get()
    if observer is not None:
        observer.idempotent_replay(method)


def tx_retry(sqlstate: str) -> None:
    observer = _observer.get()
    if observer is not None:
        observer.tx_retry(sqlstate)


def expiry_run(seconds: float) -> None:
    observer = _observer.get()
    if observer is not None:
        observer.expiry_run(seconds)


def job_finished(job: str, items: int, seconds: float, *, ok: bool) -> None:
    observer = _observer.get()
    if observer is not None:
        observer.job_finished(job, items, seconds, ok)


def card_locked() -> None:
    """A card locked after too many wrong secrets, in the current programme."""
    observer = _observer.get()
    if observer is not None:
        observer.card_locked(_programme.get())


# The results of webhook_delivery, every one of them exported (at 0) for each live subscription, so
# that a rate or increase sees the first failure or dead letter (a series born at 1 shows none).
WEBHOOK_DELIVERY_RESULTS = ("delivered", "refused", "timeout", "unreachable", "dead_letter")


def webhook_delivery(subscription_id: str, result: str) -> None:
    """One attempt to deliver an event to a webhook: delivered, refused, timeout, unreachable, or
    dead_letter (given up on after its attempts)."""
    observer = _observer.get()
    if observer is not None:
        observer.webhook_delivery(subscription_id, result)
