"""The per-principal limit on holder reads (``GET /v1/cases/{id}/holder``): at most ``per_hour`` in any hour.

A sliding log, not a fixed window: one sorted set per principal (``keyspace.holder_reads_key``) holds the times
of its reads in the last hour, checked and extended by one script, so the limit holds across every gateway
process and no burst at a window's edge doubles it (issue 14: 100 reads in 0.33 s went unnoticed). The set holds
a principal id and read times only, and expires an hour after the last read.
"""

from __future__ import annotations

import math
import os
from datetime import datetime

from redis.asyncio import Redis

from gateway import keyspace
from gateway.errors import RateLimitedError
from gateway.redisio import redis_errors

__all__ = ["HolderReadLimit"]

# KEYS: the principal's set. ARGV: now ms, window ms, limit, a unique member. Returns 0 when the read is taken,
# else the milliseconds until the oldest read leaves the window (> 0: every kept score is inside it).
_TAKE_LUA = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class HolderReadLimit:
    """``take(principal_id, now=)`` one holder read or raise ``RateLimitedError`` (429 ``rate_limited``)."""

    def __init__(self, redis: Redis, *, per_hour: int) -> None:
        self.per_hour = per_hour
        self._script = redis.register_script(_TAKE_LUA)

    async def take(self, principal_id: str, *, now: datetime) -> None:
        """:raises RateLimitedError: ``per_hour`` reads already in the last hour; Retry-After says when one frees.
        :raises StoreUnavailableError: the limit could not be checked (the read must not happen)."""
        now_ms = int(now.timestamp() * 1000)
        window_ms = keyspace.HOLDER_READS_WINDOW_S * 1000
        member = f"{now_ms}-{os.urandom(6).hex()}"
        with redis_errors("holder reads"):
            wait_ms = await self._script(
                keys=[keyspace.holder_reads_key(principal_id)], args=[now_ms, window_ms, self.per_hour, member]
            )
        if int(wait_ms) > 0:
            raise RateLimitedError(
                f"at most {self.per_hour} holder reads per hour", retry_after_s=max(1, math.ceil(int(wait_ms) / 1000))
            )
