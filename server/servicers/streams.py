"""What the streaming servicers share: taking a stream's requests in batches, and a refused item's
answer in the stream's place for a status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from loyalty.v1 import common_pb2
from loyalty_core.errors import LoyaltyError
from server import status


def item_refusal(err: LoyaltyError, field_prefix: str) -> common_pb2.ItemRefusal:
    """What a unary call's status would say of ``err``, for one item of a stream (its field under
    ``field_prefix`` where the domain named it within the item)."""
    field = err.field if not err.field or err.field.startswith(field_prefix) else field_prefix + err.field
    return common_pb2.ItemRefusal(code=status.STATUS_BY_KIND[err.kind].value[0], reason=err.code,
                                   message=err.message, field=field or "",
                                   metadata={k: str(v) for k, v in err.details.items()})


_STREAM_END = object()


async def batches(requests: AsyncIterator[Any], most: int) -> AsyncIterator[list[Any]]:
    """The stream's requests in batches of what has arrived (at least one, at most ``most``): a
    trickle goes out one at a time at once, a flood in full batches. A reader task keeps taking
    requests off the stream while a batch runs, up to two batches ahead (the flow control)."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2 * most)

    async def read() -> None:
        try:
            async for request in requests:
                await queue.put(request)
        finally:
            await queue.put(_STREAM_END)

    reader = asyncio.create_task(read())
    try:
        ended = False
        while not ended:
            batch = [await queue.get()]
            while len(batch) < most and not queue.empty():
                batch.append(queue.get_nowait())
            if batch[-1] is _STREAM_END:
                ended = True
                batch.pop()
            if batch:
                yield batch
        await reader  # a read that failed (the client's stream broke) ends the call with its error
    finally:
        reader.cancel()
