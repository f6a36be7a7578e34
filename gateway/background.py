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
    """Call ``refresh`` every ``every_s`` seconds until the context exits; a failing call is logged and retried."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await refresh()
            except Exception:  # keep refreshing: a transient fault must not freeze what is refreshed
                log.warning("%s refresh failed", what)

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
