"""A per-process cache with a time to live, for rows read on every call that change rarely (programmes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")

# Put a limit on everything: a process serving more programmes than this starts over.
ENTRIES_MAX = 10_000


class TtlCache(Generic[V]):
    """Values by key, each kept ``ttl_s`` seconds (monotonic clock); ``ttl_s`` 0 keeps nothing.

    This process's writes ``forget`` the key once committed; other processes' writes are seen
    within ``ttl_s``. A read that began before a ``forget`` (``generation()`` taken first) does not
    store what it read, so a value read while a write committed never outlives the write's forget.
    """

    def __init__(self, ttl_s: float, *, now: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._now = now
        self._entries: dict[str, tuple[float, V]] = {}
        self._generation = 0

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._now():
            self._entries.pop(key, None)
            return None
        return entry[1]

    def generation(self) -> int:
        return self._generation

    def put(self, key: str, value: V, generation: int) -> None:
        if self.ttl_s <= 0 or generation != self._generation:
            return
        if len(self._entries) >= ENTRIES_MAX:
            self._entries.clear()
        self._entries[key] = (self._now() + self.ttl_s, value)

    def forget(self, key: str) -> None:
        self._generation += 1
        self._entries.pop(key, None)
