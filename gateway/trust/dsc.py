"""The EU DCC document-signer (DSC) trust list in Redis: import, load, and how fresh it is.

Only public material is stored: each certificate's DER (base64) under its full SHA-256, so two DSCs whose
8-byte hcert kids collide are both kept and both tried.  Every import records when it happened; a worker
reloads the list when the version counter moves (as ``refresh_trust`` does for native keys) and judges the
list's age at each scan against two limits (docs/dcc.md "DSC trust list in the gateway"; issue 6 "freshness").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from redis.asyncio import Redis

from crypto.dcc_trust import DscKey, DscTrustList, json_bundle_ders
from crypto.errors import TrustListError
from gateway import keyspace
from gateway.privacy.audit import cli_actor, record_privileged
from gateway.redisio import Command, execute_in_order, redis_errors

__all__ = ["DscRegistry", "DscSnapshot", "Freshness", "freshness", "parse_trust_file"]

log = logging.getLogger("placegate.dsc")


class Freshness(StrEnum):
    """How far the DSC trust list can be relied on."""

    FRESH = "fresh"
    DEGRADED = "degraded"  # older than the soft limit: HC1 answers say degraded
    STALE = "stale"  # older than the hard limit, or never imported: HC1 codes fail closed


def freshness(imported_at: datetime | None, now: datetime, *, degraded_after_s: int, fail_after_s: int) -> Freshness:
    """Judge the list's age at ``now``; an import stamped in the future counts as fresh (clock skew)."""
    if imported_at is None:
        return Freshness.STALE
    age_s = (now - imported_at).total_seconds()
    if age_s > fail_after_s:
        return Freshness.STALE
    if age_s > degraded_after_s:
        return Freshness.DEGRADED
    return Freshness.FRESH


@dataclass(frozen=True, slots=True)
class DscSnapshot:
    """One consistent read of the stored list."""

    version: int
    trust: DscTrustList
    imported_at: datetime | None
    skipped: int  # stored entries that no longer load (kept out of the list, reported by `trust list`)


def parse_trust_file(data: bytes) -> list[bytes]:
    """DER certificates from a PEM bundle or a JSON bundle (``[b64, ...]`` or ``{"certificates": [...]}``).

    Every certificate is checked as a usable DSC before anything is stored.

    :raises TrustListError: neither format, or a certificate that is not a usable DSC.
    """
    stripped = data.lstrip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            ders = [cert.public_bytes(Encoding.DER) for cert in x509.load_pem_x509_certificates(data)]
        except ValueError as exc:
            raise TrustListError("PEM bundle holds no parseable certificate") from exc
    elif stripped.startswith((b"[", b"{")):
        ders = json_bundle_ders(data)
    else:
        raise TrustListError("trust file is neither PEM nor a JSON bundle")
    DscTrustList.from_der_list(ders)
    return ders


def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class DscRegistry:
    """Reads and writes of the stored DSC list (configuration: no TTL, changed by ``placegate trust``)."""

    def __init__(self, redis: Redis, *, actor: str | None = None) -> None:
        self.redis = redis
        self.actor = actor  # None: the operating-system account running the CLI

    async def import_certificates(self, ders: Sequence[bytes], *, now: datetime, replace: bool = True) -> int:
        """Store DSCs and stamp the import time; ``replace`` drops certificates absent from this import.

        A trust list is published whole (a DSC that disappears from it is withdrawn), so replacing is the
        default; the version bump makes every worker reload.  Returns the number of stored certificates.
        """
        mapping = {_fingerprint(der): base64.b64encode(der) for der in ders}
        # A signer-list change decides which health codes verify: audited first, not applied if that fails.
        await record_privileged(self.redis, actor=self.actor or cli_actor(), action="dsc_import",
                                obj="dsc_trust_list", now=now,
                                extra={"certificates": str(len(mapping)), "mode": "replace" if replace else "merge",
                                       "digest": hashlib.sha256("".join(sorted(mapping)).encode()).hexdigest()})
        with redis_errors("DSC trust list"):
            # The list in one MULTI (never seen empty mid-replace), then its time and version (other slots on a
            # cluster: written after the list, so a worker reading the version first never runs ahead of it).
            listing: list[Command] = [("DEL", keyspace.DSC_TRUST)] if replace else []
            if mapping:
                listing.append(("HSET", keyspace.DSC_TRUST, *[x for kv in mapping.items() for x in kv]))
            replies = await execute_in_order(self.redis, [
                *([listing] if listing else []), [("SET", keyspace.DSC_TRUST_IMPORTED_AT, int(now.timestamp()))],
                [("INCRBY", keyspace.DSC_TRUST_VERSION, 1)], [("HLEN", keyspace.DSC_TRUST)],
            ])  # fmt: skip
        return int(replies[-1])

    async def version(self) -> int:
        with redis_errors("DSC trust list"):
            return int(await self.redis.get(keyspace.DSC_TRUST_VERSION) or 0)

    async def load(self) -> DscSnapshot:
        """The stored list; an entry that no longer loads is skipped (it could never verify anything)."""
        with redis_errors("DSC trust list"):
            version, imported, raw = await execute_in_order(self.redis, [
                [("GET", keyspace.DSC_TRUST_VERSION)], [("GET", keyspace.DSC_TRUST_IMPORTED_AT)],
                [("HGETALL", keyspace.DSC_TRUST)],
            ])  # fmt: skip
        loaded, skipped = _load_entries(raw.values())
        imported_at = None if imported is None else datetime.fromtimestamp(int(imported), UTC)
        return DscSnapshot(int(version or 0), DscTrustList(tuple(loaded)), imported_at, skipped)


def _load_entries(values: Iterable[bytes]) -> tuple[list[DscKey], int]:
    loaded: list[DscKey] = []
    skipped = 0
    for value in values:
        try:
            loaded.append(DscKey.from_der(base64.b64decode(value, validate=True)))
        except (TrustListError, binascii.Error, ValueError):
            skipped += 1
    if skipped:
        log.warning("skipped %d unusable DSC entries", skipped)
    return loaded, skipped
