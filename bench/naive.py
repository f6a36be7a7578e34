"""The naive variant of the scan path: the same gateway, but its Store awaits Redis once per command.

``python -m bench.naive serve --redis-url URL --port P`` runs the real ``placegate serve`` with only the store
swapped (``gateway.app.Store``), so the difference measured is exactly the command batching.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from typing import cast

from redis.exceptions import RedisError

import gateway.scan.feature
from gateway import keyspace
from gateway.cli import main as placegate_main
from gateway.errors import StoreUnavailableError
from gateway.intake import scan_event_place_reason
from gateway.scan.store import LookupRequest, ReplayMark, ScanLookup, ScanRecord, ScanStore
from gateway.status.cache import unpack_status

__all__ = ["NaiveStore", "main"]


class NaiveStore(ScanStore):
    """One awaited round trip per Redis command: what the scan path costs without ``CommandBatcher``.

    The scanner hands the store a whole loop turn's scans at once; each scan's commands run in their own
    coroutine, concurrently with the other scans', as they would in per-request handlers.
    """

    async def lookup_scans(
        self, requests: Sequence[LookupRequest], *, days: Mapping[str, int] | None = None,
        timeout_s: float | None = None,
    ) -> tuple[list[ScanLookup | None], dict[str, bytes]]:
        lookups = await asyncio.gather(*(self._lookup(request, timeout_s) for request in requests))
        try:
            keys = await self.day_keys(days or {}, timeout_s=timeout_s)
        except StoreUnavailableError:
            keys = {}
        return lookups, keys

    async def _lookup(self, request: LookupRequest, timeout_s: float | None) -> ScanLookup | None:
        holder_ref, memory_key, ttl_s, place_id = request
        raw: object = None
        try:
            async with asyncio.timeout(timeout_s):
                if holder_ref is not None:
                    bucket, field = self.locator.locate(holder_ref)
                    raw = await self.redis.hget(bucket, field)  # type: ignore[arg-type,unused-ignore]
                first = await self.redis.set(memory_key, place_id, nx=True, get=True, ex=max(1, ttl_s))
        except (RedisError, OSError, TimeoutError):
            return None
        status = None if raw is None else unpack_status(cast(bytes, raw))
        return ScanLookup(status, None if first is None else cast(bytes, first).decode())

    async def day_keys(self, days: Mapping[str, int], *, timeout_s: float | None = None) -> dict[str, bytes]:
        keys: dict[str, bytes] = {}
        try:
            async with asyncio.timeout(timeout_s):
                for day, expire_at in days.items():
                    fresh = os.urandom(32)
                    old = await self.redis.set(keyspace.day_key(day), fresh, nx=True, get=True, exat=expire_at)
                    keys[day] = fresh if old is None else cast(bytes, old)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError("redis failed") from exc
        return keys

    async def record_scans(
        self, records: Sequence[ScanRecord], *, marks: Sequence[ReplayMark] = (), timeout_s: float | None = None
    ) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(self._record(record) for record in records))
                for key, place_id, ttl_s in marks:
                    await self.redis.set(key, place_id, nx=True, ex=ttl_s)
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError("redis failed") from exc

    async def _record(self, record: ScanRecord) -> None:
        """The same writes as ``ScanStore.record_scans``, each awaited alone."""
        day, expire_at, entry, event = record
        log_key = keyspace.scan_log_key(day)
        await self.redis.xadd(log_key, dict(zip(entry[::2], entry[1::2], strict=True)))  # type: ignore[arg-type]
        await self.redis.expireat(log_key, expire_at)
        if event is not None:
            await self.redis.xadd(keyspace.DISPATCH_INTAKE, dict(zip(event[::2], event[1::2], strict=True)))  # type: ignore[arg-type]
            place_id, reason = scan_event_place_reason(event)
            counter = keyspace.place_exceptions_key(place_id, day)
            await self.redis.hincrby(counter, reason, 1)  # type: ignore[misc,unused-ignore]
            await self.redis.expireat(counter, expire_at)


def main() -> int:
    gateway.scan.feature.ScanStore = NaiveStore  # type: ignore[misc]
    return placegate_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
