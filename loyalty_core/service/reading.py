"""Reads outside a transaction: one pooled connection in autocommit, so no BEGIN/COMMIT round trips."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from loyalty_core.store.db import Database


@asynccontextmanager
async def reading(db: Database) -> AsyncIterator[Any]:
    """A connection whose every statement commits by itself (autocommit is client-side: no round trip).

    The pool hands out connections in the default mode, so the mode is put back before returning it.
    """
    async with db.connection() as conn:
        await conn.set_autocommit(True)
        try:
            yield conn
        finally:
            await conn.set_autocommit(False)
