"""A short-lived async cache with single-flight loading.

When an entry expires under load every in-flight request would otherwise look it up at once (64 concurrent
lookups for one device token every few seconds) and exhaust the Redis connection pool; here the first caller
loads and the others await that same load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["TtlCache"]

V = TypeVar("V")
MAX_ENTRIES = 100_000


class TtlCache(Generic[V]):
    def __init__(self, load: Callable[[str], Awaitable[V]], ttl_s: float) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, V]] = {}
        self._loading: dict[str, asyncio.Future[V]] = {}

    async def get(self, key: str) -> V:
        hit = self._entries.get(key)
        if hit is not None and hit[0] >= time.monotonic():
            return hit[1]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await self._load(key)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved when no one else waited
            raise
        finally:
            del self._loading[key]
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self._ttl_s, value)
        future.set_result(value)
        return value
