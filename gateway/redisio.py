"""Redis connections and the command batcher that coalesces one event-loop turn's commands into one pipeline.

One awaited redis-py command costs about 50 µs of client CPU (DESIGN.md "Performance bar"); sending every
command queued during a loop turn as one pipeline pays that cost once per turn instead of once per command.
Every redis exception is translated here into ``StoreUnavailableError``; no other module sees one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from gateway.errors import StoreUnavailableError

__all__ = ["CommandBatcher", "PipelineFiller", "connect_redis"]

PipelineFiller = Callable[[Pipeline], None]


def connect_redis(url: str, *, max_connections: int = 64) -> Redis:
    """A client for ``redis://``, ``rediss://`` or ``unix://`` URLs; bytes in, bytes out."""
    return Redis.from_url(
        url, decode_responses=False, max_connections=max_connections, health_check_interval=30
    )


class CommandBatcher:
    """Collects command groups submitted during one loop turn and sends them as a single pipeline."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[PipelineFiller, asyncio.Future[list[Any]]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.flushes = 0
        self.commands = 0

    def submit(self, fill: PipelineFiller) -> asyncio.Future[list[Any]]:
        """Queue the commands ``fill`` adds; the future gets their replies (an exception object per failed one)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((fill, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[PipelineFiller, asyncio.Future[list[Any]]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        sizes: list[int] = []
        for fill, _ in batch:
            before = len(pipe.command_stack)
            fill(pipe)
            sizes.append(len(pipe.command_stack) - before)
        self.flushes += 1
        self.commands += len(pipe.command_stack)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            error = StoreUnavailableError(f"redis pipeline failed: {exc.__class__.__name__}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        at = 0
        for (_, future), size in zip(batch, sizes, strict=True):
            if not future.done():
                future.set_result(replies[at : at + size])
            at += size

    async def run(self, fill: PipelineFiller) -> list[Any]:
        """Submit and await; a command that failed inside the pipeline raises ``StoreUnavailableError``."""
        replies = await self.submit(fill)
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreUnavailableError(f"redis command failed: {reply.__class__.__name__}")
        return replies

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
