"""The sweeper lease: exactly one process sweeps at a time, whichever gateway worker or CLI run holds it.

``SET pg:dispatch:sweep-lease <token> NX PX ttl`` takes it; a compare script renews or releases it only while
the key still holds this holder's token, so a holder whose lease expired (a stall longer than the TTL) can never
extend or delete its successor's. A holder that dies stops renewing and the lease expires after its TTL.
"""

from __future__ import annotations

import os

from redis.asyncio import Redis

from gateway import keyspace
from gateway.redisio import redis_errors

__all__ = ["SweepLease"]

# KEYS: the lease. ARGV: token, TTL ms ("" = release). 1 while the token holds it, else 0.
_KEEP_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


class SweepLease:
    """One holder's side of the lease; ``hold`` before a pass, ``renew`` between its batches, ``release`` at
    the end. Every redis exception becomes ``StoreUnavailableError``."""

    def __init__(self, redis: Redis, *, ttl_ms: int, key: str = keyspace.SWEEP_LEASE) -> None:
        self.redis = redis
        self.ttl_ms = ttl_ms
        self.key = key
        self.token = os.urandom(16).hex()
        self.held = False
        self._keep = redis.register_script(_KEEP_LUA)

    async def hold(self) -> bool:
        """Keep the lease if this holder has it, else take it if it is free; whether this holder has it now."""
        if self.held and await self.renew():
            return True
        with redis_errors("sweep lease"):
            self.held = bool(await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    async def renew(self) -> bool:
        """Extend the lease by its TTL if this holder still has it; False (and no longer held) if not."""
        with redis_errors("sweep lease"):
            self.held = bool(await self._keep(keys=[self.key], args=[self.token, str(self.ttl_ms)]))
        return self.held

    async def release(self) -> None:
        """Give the lease up (only if this holder still has it), so another process may sweep at once."""
        if not self.held:
            return
        self.held = False
        with redis_errors("sweep lease"):
            await self._keep(keys=[self.key], args=[self.token, ""])
