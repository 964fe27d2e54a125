"""Clocks: the domain takes `now` from an injected clock, so tests move time instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

US_PER_S = 1_000_000


@runtime_checkable
class Clock(Protocol):
    """A source of the current time as int64 microseconds since the Unix epoch (UTC)."""

    def now_us(self) -> int: ...


class SystemClock:
    """The wall clock."""

    def now_us(self) -> int:
        return time.time_ns() // 1_000


class ManualClock:
    """A clock that moves only when told to: ``advance(seconds=..)`` or ``set(us)``."""

    def __init__(self, start_us: int) -> None:
        self._now_us = int(start_us)

    def now_us(self) -> int:
        return self._now_us

    def advance(self, seconds: float = 0, *, days: float = 0, us: int = 0) -> int:
        """Move forward (never back) and return the new time."""
        delta = round((seconds + days * 86_400) * US_PER_S) + us
        if delta < 0:
            raise ValueError("a ManualClock only moves forward; use set() to go back")
        self._now_us += delta
        return self._now_us

    def set(self, us: int) -> None:
        self._now_us = int(us)

    def __repr__(self) -> str:
        return f"ManualClock({self._now_us})"
