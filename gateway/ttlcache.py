"""A short-lived async cache with single-flight loading, and last-known-good copies for a store outage.

When an entry expires under load every in-flight request would otherwise look it up at once (64 concurrent
lookups for one device token every few seconds) and exhaust the Redis connection pool; here the first caller
loads and the others await that same load.

While the store is unreachable (``StoreHealth``), an expired entry is served as it was last loaded, up to
``stale_max_s`` after that load, without asking the store at all (operations.md "Degraded mode": principals and places
from last-known-good copies, bounded staleness). A load that fails or outlives ``load_timeout_s`` opens the breaker
and falls back the same way; with no copy to fall back on it raises ``StoreUnavailableError``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gateway.errors import StoreUnavailableError
from gateway.storehealth import StoreHealth

__all__ = ["TtlCache"]

V = TypeVar("V")
MAX_ENTRIES = 100_000


class TtlCache(Generic[V]):
    def __init__(
        self,
        load: Callable[[str], Awaitable[V]],
        ttl_s: float,
        *,
        health: StoreHealth | None = None,
        stale_max_s: float = 0.0,
        load_timeout_s: float | None = None,
        what: str = "cache",
    ) -> None:
        self._load = load
        self._ttl_s = ttl_s
        self._health = health
        self._stale_max_s = stale_max_s
        self._load_timeout_s = load_timeout_s
        self._what = what
        self._entries: dict[str, tuple[float, float, V]] = {}  # key -> (fresh until, loaded at, value)
        self._loading: dict[str, asyncio.Future[V]] = {}

    def _stale(self, hit: tuple[float, float, V] | None, now: float) -> bool:
        return hit is not None and now - hit[1] <= self._stale_max_s

    async def get(self, key: str) -> V:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] >= now:
            return hit[2]
        health = self._health
        if health is not None and not health.available:
            if hit is not None and self._stale(hit, now):
                return hit[2]
            raise StoreUnavailableError(f"{self._what} unavailable")
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            try:
                async with asyncio.timeout(self._load_timeout_s):
                    value = await self._load(key)
            except (StoreUnavailableError, TimeoutError) as exc:
                if health is not None:
                    health.failed(self._what)
                if hit is None or not self._stale(hit, now):
                    raise StoreUnavailableError(f"{self._what} unavailable") from exc
                value = hit[2]  # the last good copy; its load time stays, so its staleness keeps counting
                future.set_result(value)
                return value
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved when no one else waited
            raise
        finally:
            del self._loading[key]
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        loaded = time.monotonic()
        self._entries[key] = (loaded + self._ttl_s, loaded, value)
        future.set_result(value)
        return value
