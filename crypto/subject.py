"""The keyed hash that names a data subject wherever a record must point at a holder without holding them.

Trace approvals, the audit entries of traces and holder reads, merged-case keys and the subject-access query all
name a holder by ``subject_hash``: ``"sh_" + HMAC-SHA256(subject key, holder ref)[:32 hex]``. The subject key is a
sub-key of the master secret (``crypto/kdf.py``), so the hash is stable across days and processes (a privacy
officer can answer "who read my data" for years, PIPL Art. 45) but cannot be reversed or recomputed by anyone
who holds only Redis: a dictionary attack on the small holder-reference space needs the secret. It is never
the scan log's day pseudonym (that one is keyed by a day key and dies with it).
"""

from __future__ import annotations

import hmac

from crypto.kdf import derive_key

__all__ = ["SUBJECT_PREFIX", "SubjectHasher"]

SUBJECT_PREFIX = "sh_"
_LABEL = b"placegate/subject/v1"


class SubjectHasher:
    """``of(holder_ref)``: the stable keyed hash of a holder reference (35 characters, ``sh_`` + 32 hex)."""

    __slots__ = ("_key",)

    def __init__(self, master: bytes) -> None:
        self._key = derive_key(master, _LABEL)

    def __repr__(self) -> str:
        return "SubjectHasher(***)"

    def of(self, holder_ref: str) -> str:
        return SUBJECT_PREFIX + hmac.digest(self._key, holder_ref.encode(), "sha256").hex()[:32]

    @staticmethod
    def looks_like(value: str) -> bool:
        """True for a string of this hash's shape (a free-text audit field may carry it, never a raw ref)."""
        if len(value) != 35 or not value.startswith(SUBJECT_PREFIX):
            return False
        return all(c in "0123456789abcdef" for c in value[3:])
