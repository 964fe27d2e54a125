"""How many calls about one member a process lets in at once, so that a hot or attacked member
(all its calls wait for one row lock) never takes more than a few of the pool's connections."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from loyalty_core import errors


class MemberCalls:
    """Calls in flight per member key (programme and identifier, as the request names the member);
    beyond ``limit``, a call is refused at once (member_busy_calls) instead of queuing on the lock."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight: dict[tuple[str, str], int] = {}

    @contextmanager
    def admitted(self, programme_id: str, member_key: str) -> Iterator[None]:
        key = (programme_id, member_key)
        count = self._in_flight.get(key, 0)
        if count >= self.limit:
            raise errors.ResourceExhausted(
                "member_busy_calls", "too many calls about this member are waiting; retry shortly", limit=self.limit)
        self._in_flight[key] = count + 1
        try:
            yield
        finally:
            if self._in_flight[key] == 1:
                del self._in_flight[key]
            else:
                self._in_flight[key] -= 1
