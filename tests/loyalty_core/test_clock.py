"""Clocks: the system clock is near time.time(); the manual one moves only when told."""

import time

import pytest

from loyalty_core.clock import Clock, ManualClock, SystemClock


def test_system_clock_is_microseconds_since_epoch():
    assert abs(SystemClock().now_us() - time.time() * 1e6) < 5e6
    assert isinstance(SystemClock(), Clock)


def test_manual_clock_moves_when_told(clock: ManualClock):
    start = clock.now_us()
    assert clock.advance(seconds=1.5) == start + 1_500_000
    assert clock.advance(days=1) == start + 1_500_000 + 86_400_000_000
    clock.set(42)
    assert clock.now_us() == 42
    with pytest.raises(ValueError):
        clock.advance(seconds=-1)
    assert isinstance(clock, Clock)
