"""Queries sent now and read later: in pipeline mode, those sent before the first read share one round trip."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Later(Generic[T]):
    """A sent query and how to read its result. Statements run in the order they were sent, so a
    query sent after a row lock reads what the lock protects."""

    __slots__ = ("_cursor", "_read")

    def __init__(self, cursor: Any, read: Callable[[Any], Awaitable[T]]) -> None:
        self._cursor = cursor
        self._read = read

    async def get(self) -> T:
        return await self._read(self._cursor)
