"""A periodic background refresh that lives exactly as long as the enclosing cleanup context."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["refreshing"]

log = logging.getLogger("placegate.background")


@contextlib.asynccontextmanager
async def refreshing(refresh: Callable[[], Awaitable[object]], *, every_s: float, what: str) -> AsyncIterator[None]:
    """Call ``refresh`` every ``every_s`` seconds until the context exits; a failing call is logged and retried.

    The loop ends on a stop event, not on cancellation alone: a cancellation that lands while the Redis client is
    inside a command can be absorbed there (seen with redis-py 8.1: the command returned normally and the loop
    slept again, so shutdown waited forever). The event is checked before every call and ends every wait.
    """
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
            if stop.is_set():
                return
            try:
                await refresh()
            except Exception:  # keep refreshing: a transient fault must not freeze what is refreshed
                log.warning("%s refresh failed", what)

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
