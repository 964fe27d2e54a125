"""The per-process TTL cache: values expire, a forget wins over a read that raced it, 0 keeps nothing."""

from __future__ import annotations

from loyalty_core.store.cache import ENTRIES_MAX, TtlCache


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_value_lives_for_the_ttl_then_is_read_again() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(5.0, now=clock)
    cache.put("p", "v1", cache.generation())
    clock.t += 4.9
    assert cache.get("p") == "v1"
    clock.t += 0.1
    assert cache.get("p") is None


def test_forget_drops_the_value_and_refuses_a_read_that_began_before_it() -> None:
    cache: TtlCache[str] = TtlCache(5.0, now=Clock())
    cache.put("p", "old", cache.generation())
    began = cache.generation()  # a read starts, then a write commits and forgets
    cache.forget("p")
    assert cache.get("p") is None
    cache.put("p", "read before the write", began)
    assert cache.get("p") is None
    cache.put("p", "new", cache.generation())
    assert cache.get("p") == "new"


def test_ttl_zero_keeps_nothing_and_the_size_is_bounded() -> None:
    off: TtlCache[int] = TtlCache(0.0)
    off.put("p", 1, off.generation())
    assert off.get("p") is None
    cache: TtlCache[int] = TtlCache(5.0)
    for i in range(ENTRIES_MAX + 1):
        cache.put(str(i), i, cache.generation())
    assert cache.get(str(ENTRIES_MAX)) == ENTRIES_MAX
    assert cache.get("0") is None
