"""The token/place cache loads an expired entry once, however many requests want it at that moment."""

from __future__ import annotations

import asyncio

from gateway.ttlcache import TtlCache


async def test_concurrent_misses_share_one_load() -> None:
    calls = 0

    async def load(key: str) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return key.upper()

    cache: TtlCache[str] = TtlCache(load, ttl_s=60)
    assert await asyncio.gather(*(cache.get("a") for _ in range(64))) == ["A"] * 64
    assert calls == 1
    assert await cache.get("a") == "A" and calls == 1


async def test_a_failed_load_fails_its_waiters_and_is_retried_next_time() -> None:
    attempts = 0

    async def load(key: str) -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise ConnectionError("redis away")
        return key

    cache: TtlCache[str] = TtlCache(load, ttl_s=60)
    results = await asyncio.gather(*(cache.get("k") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await cache.get("k") == "k" and attempts == 2


async def test_entries_expire() -> None:
    calls = 0

    async def load(key: str) -> int:
        nonlocal calls
        calls += 1
        return calls

    cache: TtlCache[int] = TtlCache(load, ttl_s=0.0)
    assert await cache.get("x") == 1
    await asyncio.sleep(0.001)
    assert await cache.get("x") == 2
