"""Subject access: who read or traced one holder, when and under which case (PIPL Art. 45; GDPR Art. 15).

Every audit entry that concerns a holder names them by ``subject`` = ``crypto.subject.SubjectHasher.of(holder
ref)`` (trace approvals and their refusals, traces and their refusals, holder reads, earlier subject-access
queries), never by the reference itself. The answer is a scan of the trail for that hash, newest first.

The trail keeps three years, so the scan is bounded twice: it reads at most ``SCAN_MAX`` entries per call
(paged ``XREVRANGE`` of ``_PAGE`` entries) and returns at most ``LIMIT`` matches; when it stops early it returns
``next_cursor`` (the last stream id it examined) and the officer asks again with ``cursor`` to go on towards
older entries. A full three-year walk is several calls, each a bounded amount of work for Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from redis.asyncio import Redis

from crypto.subject import SubjectHasher
from gateway import keyspace
from gateway.redisio import redis_errors
from gateway.settings import Settings

__all__ = ["LIMIT", "SCAN_MAX", "SubjectAccess", "SubjectEntry", "hasher_for", "subject_access"]

SCAN_MAX = 50_000  # audit entries examined per call (a few hundred ms of XREVRANGE); continue with the cursor
LIMIT = 500  # matching entries returned per call
_PAGE = 1000
_SHOWN = ("who", "role", "when", "action", "case_ref", "purpose", "result_count")
_Rows = list[tuple[bytes, dict[bytes, bytes]]]


def hasher_for(settings: Settings) -> SubjectHasher:
    """The one subject hasher of this deployment (keyed by a sub-key of the master secret)."""
    if settings.secret is None:
        raise ValueError("settings.secret is required to name data subjects")
    return SubjectHasher(settings.secret.reveal())


@dataclass(frozen=True, slots=True)
class SubjectEntry:
    entry_id: str
    fields: dict[str, str]

    def to_json(self) -> dict[str, str]:
        return {"id": self.entry_id, **self.fields}


@dataclass(frozen=True, slots=True)
class SubjectAccess:
    entries: list[SubjectEntry]  # newest first
    next_cursor: str | None  # pass back as ``cursor`` to continue with older entries; None when the trail is done
    scanned: int


async def subject_access(
    redis: Redis, subject: str, *, case_ref: str = "", cursor: str | None = None, scan_max: int = SCAN_MAX,
    limit: int = LIMIT,
) -> SubjectAccess:
    """Audit entries whose ``subject`` is ``subject`` (and, if given, whose ``case_ref`` is ``case_ref``), newest
    first, examining at most ``scan_max`` entries older than ``cursor``."""
    wanted = subject.encode()
    case = case_ref.encode()
    hi = f"({cursor}" if cursor else "+"
    out: list[SubjectEntry] = []
    scanned = 0
    last = ""
    with redis_errors("audit trail"):
        while scanned < scan_max:
            rows = cast(_Rows, await redis.xrevrange(keyspace.AUDIT_STREAM, max=hi, min="-",
                                                     count=min(_PAGE, scan_max - scanned)))
            if not rows:
                return SubjectAccess(out, None, scanned)
            for eid, raw in rows:
                scanned += 1
                last = eid.decode()
                if raw.get(b"subject") == wanted and (not case or raw.get(b"case_ref") == case):
                    out.append(SubjectEntry(last, {k: raw.get(k.encode(), b"").decode() for k in _SHOWN}))
                    if len(out) >= limit:
                        return SubjectAccess(out, last, scanned)
            hi = f"({last}"
    return SubjectAccess(out, last or None, scanned)
