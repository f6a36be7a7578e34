"""``Idempotency-Key`` on the scan routes (docs/dispatch.md, "Idempotency"): a scanner that lost an answer sends
the request again with the same key and, within ``keyspace.IDEMPOTENCY_TTL_S``, gets the stored answer: nothing
is decided, logged or sent to dispatch a second time.

The stored answer is the response body as sent: decisions, reasons, scan ids and times, nothing personal
(``ScanOutcome.to_json``). Its key is a hash of the principal, the route and the client's key, so one device's
key never answers another device, and the key name carries none of them. The store being away is no reason to
refuse a scan: without it the request is simply decided again (and a retry at the same device is still no
replay: ``Scanner``'s retry window).
"""

from __future__ import annotations

import hashlib
import re

from redis.asyncio import Redis

from gateway import keyspace
from gateway.errors import BadRequestError, StoreUnavailableError
from gateway.redisio import redis_errors

__all__ = ["HEADER", "idempotency_name", "remember_answer", "stored_answer"]

HEADER = "Idempotency-Key"
_KEY = re.compile(r"[\x21-\x7e]{1,128}")  # visible ASCII, as HTTP header values and UUIDs are


def idempotency_name(principal_id: str, route: str, key: str | None) -> str | None:
    """The Redis key of a request's stored answer, ``None`` without the header.

    :raises BadRequestError: a key that is empty, longer than 128 characters or not visible ASCII.
    """
    if key is None:
        return None
    if not _KEY.fullmatch(key):
        raise BadRequestError(f"{HEADER} must be 1 to 128 visible ASCII characters")
    digest = hashlib.sha256(f"{principal_id}\x00{route}\x00{key}".encode()).hexdigest()[:32]
    return keyspace.idempotency_key(digest)


async def stored_answer(redis: Redis, name: str) -> bytes | None:
    """The answer stored under ``name``, ``None`` when there is none (or the store cannot say)."""
    try:
        with redis_errors("scan idempotency"):
            found = await redis.get(name)
    except StoreUnavailableError:
        return None
    return found.encode() if isinstance(found, str) else found


async def remember_answer(redis: Redis, name: str, body: bytes) -> None:
    """Store the answer for ``IDEMPOTENCY_TTL_S`` (NX: of two requests racing with one key, the first stays)."""
    try:
        with redis_errors("scan idempotency"):
            await redis.set(name, body, nx=True, ex=keyspace.IDEMPOTENCY_TTL_S)
    except StoreUnavailableError:
        return
