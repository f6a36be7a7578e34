"""The naive variant of the scan path: the same gateway, but its Store awaits Redis once per command.

``python -m bench.naive serve --redis-url URL --port P`` runs the real ``placegate serve`` with only the store
swapped (``gateway.app.Store``), so the difference measured is exactly the command batching.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import cast

from redis.exceptions import RedisError

import gateway.app
from gateway import keys
from gateway.__main__ import main as placegate_main
from gateway.errors import StoreUnavailableError
from gateway.status_cache import unpack_status
from gateway.store import Fields, ScanLookup, Store

__all__ = ["NaiveStore", "main"]


class NaiveStore(Store):
    """One awaited round trip per Redis command: what the scan path costs without ``CommandBatcher``."""

    async def lookup_scan(
        self, holder_ref: str, nonce_key: str, place_id: str, nonce_ttl_s: int, *, timeout_s: float | None = None
    ) -> ScanLookup:
        bucket, field = self.locator.locate(holder_ref)
        try:
            async with asyncio.timeout(timeout_s):
                raw = await self.redis.hget(bucket, field)  # type: ignore[arg-type,unused-ignore]
                first = await self.redis.set(nonce_key, place_id, nx=True, get=True, ex=max(1, nonce_ttl_s))
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError("redis failed") from exc
        status = None if raw is None else unpack_status(cast(bytes, raw))
        return ScanLookup(status, None if first is None else cast(bytes, first).decode())

    async def day_key(self, day: str, expire_at: int, *, timeout_s: float | None = None) -> bytes:
        cached = self._day_keys.get(day)
        if cached is not None:
            return cached
        name = keys.day_key(day)
        try:
            async with asyncio.timeout(timeout_s):
                await self.redis.set(name, os.urandom(32), nx=True, exat=expire_at)
                value = await self.redis.get(name)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError("redis failed") from exc
        self._day_keys[day] = cast(bytes, value)
        return self._day_keys[day]

    async def record_scan(
        self, day: str, entry: Fields, expire_at: int, event: Fields | None, *, timeout_s: float | None = None
    ) -> None:
        log_key = keys.scan_log_key(day)
        try:
            async with asyncio.timeout(timeout_s):
                await self.redis.xadd(log_key, entry)  # type: ignore[arg-type]
                await self.redis.expireat(log_key, expire_at)
                if event is not None:
                    await self.redis.xadd(keys.DISPATCH_INTAKE, event)  # type: ignore[arg-type]
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError("redis failed") from exc


def main() -> int:
    gateway.app.Store = NaiveStore  # type: ignore[attr-defined,misc,unused-ignore]
    return placegate_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
