"""The purpose-limited scan log's time and identity rules: which day partition a scan belongs to, when that
partition and its pseudonym key expire together, the day's pseudonym of a holder, and a scan's id.

Pure functions (no I/O): the scanner, the privacy feature's contact tracing and the retention report all use
these, so the log's day arithmetic and its one pseudonym derivation exist once (PRIVACY.md).
"""

from __future__ import annotations

import functools
import hmac
import os
from datetime import UTC, datetime, timedelta

__all__ = ["day_of", "new_scan_id", "partition_expiry", "pseudonym"]


@functools.lru_cache(maxsize=64)
def _day_of_epoch_day(epoch_day: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=epoch_day)).strftime("%Y%m%d")


def day_of(now: datetime) -> str:
    """The log partition a scan belongs to (UTC days, so every worker and node agrees)."""
    # Cached per day: a strftime per scan is measurable on the hot path (bench/profile-full.md).
    return _day_of_epoch_day(int(now.timestamp()) // 86_400)


@functools.lru_cache(maxsize=64)
def partition_expiry(day: str, retention_days: int) -> int:
    """Unix time at which a day's log partition and its pseudonym key expire together."""
    start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    return int((start + timedelta(days=1 + retention_days)).timestamp())


def new_scan_id(now: datetime) -> str:
    """Milliseconds then 64 random bits: sortable by time, unguessable, and naming nobody."""
    return f"{int(now.timestamp() * 1000):012x}{os.urandom(8).hex()}"


def pseudonym(day_key: bytes, holder_ref: str) -> str:
    """The day's pseudonym of a holder: linkable within one day's log only, unlinkable once the key expires.

    HMAC-SHA256 under the day key, first 128 bits in hex (PRIVACY.md). ``hmac.digest`` is the one-shot C path.
    """
    return hmac.digest(day_key, holder_ref.encode(), "sha256").hex()[:32]
