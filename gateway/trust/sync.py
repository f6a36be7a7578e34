"""Pull the EU DCC signer list from a national backend on a schedule (docs/dcc.md "Trust-list sync").

Each round one process (``SET pg:dscsync:lock NX EX interval``) fetches ``dsc_sync_url``, checks the list's
signature against the configured trust anchor and its CSCA -> DSC chains (``crypto/dcc_trustlist.py``) and
imports the DSCs it vouches for through ``DscRegistry`` (audited, replacing the stored list, restarting its age).
A list that fails its signature or its format is refused and audited (``dsc_sync_refused``); the stored list is
left as it was and keeps ageing, so the freshness limits still degrade and then stop HC1 on schedule.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import aiohttp
from cryptography import x509
from redis.asyncio import Redis

from crypto.dcc_trustlist import MAX_LIST_BYTES, verify_signed_list
from crypto.errors import TrustListError
from gateway import keyspace
from gateway.privacy.audit import record_privileged
from gateway.redisio import redis_errors
from gateway.trust.dsc import DscRegistry

__all__ = ["RETRY_AFTER_FAILURE_S", "SyncOutcome", "fetch_list", "sync_dsc_list", "take_sync_round"]

log = logging.getLogger("placegate.dsc_sync")

RETRY_AFTER_FAILURE_S: Final = 60  # an unreachable backend is tried again this soon, not a whole interval later
_FETCH_TIMEOUT_S: Final = 30.0
SYNC_ACTOR: Final = "gateway"


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """What one pull did: ``imported`` (``stored`` DSCs), ``refused`` (``code`` why) or ``unreachable``."""

    outcome: str
    stored: int = 0
    code: str = ""
    dropped: int = 0


class _FetchError(Exception):
    pass


async def fetch_list(url: str, *, timeout_s: float = _FETCH_TIMEOUT_S) -> bytes:
    """The body at ``url``, at most ``MAX_LIST_BYTES``.

    :raises _FetchError: no answer, a status other than 200, or a body over the cap.
    """
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
            session.get(url, allow_redirects=False) as resp,
        ):
            if resp.status != 200:
                raise _FetchError(f"HTTP {resp.status}")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_LIST_BYTES:
                    raise _FetchError("trust list larger than the size cap")
            return bytes(body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _FetchError(type(exc).__name__) from exc


async def take_sync_round(redis: Redis, interval_s: float) -> bool:
    """Whether this process pulls this round (the lock was free; it now holds it for ``interval_s``)."""
    with redis_errors("DSC trust list"):
        return bool(await redis.set(keyspace.DSC_SYNC_LOCK, "1", nx=True, ex=max(1, int(interval_s))))


async def sync_dsc_list(
    redis: Redis, *, url: str, anchor: x509.Certificate, now: datetime, actor: str = SYNC_ACTOR
) -> SyncOutcome:
    """One pull: fetch, check, import or refuse; ``actor`` is who the audit trail names (the gateway's schedule,
    or the operator running ``placegate trust sync``).

    :raises StoreUnavailableError: the store failed (the list is then not imported; the audit may be missing).
    """
    try:
        body = await fetch_list(url)
    except _FetchError as exc:
        log.warning("DSC list sync: backend unreachable (%s)", exc)
        with redis_errors("DSC trust list"):
            await redis.expire(keyspace.DSC_SYNC_LOCK, RETRY_AFTER_FAILURE_S)
        return SyncOutcome("unreachable")
    try:
        signed = verify_signed_list(body, anchor)
    except TrustListError as exc:
        # A forged or broken list must leave a trace: someone answered the backend's URL with it.
        await record_privileged(redis, actor=actor, action="dsc_sync_refused", obj="dsc_trust_list", now=now,
                                extra={"outcome": exc.code, "digest": hashlib.sha256(body).hexdigest()})
        log.warning("DSC list sync: list refused (%s); the stored list stays", exc.code)
        return SyncOutcome("refused", code=exc.code)
    stored = await DscRegistry(redis, actor=actor).import_certificates(list(signed.ders), now=now)
    dropped = signed.dropped_chain + signed.dropped_other
    if dropped:
        log.warning("DSC list sync: %d DSCs left out (%d without a CSCA chain)", dropped, signed.dropped_chain)
    return SyncOutcome("imported", stored=stored, dropped=dropped)
