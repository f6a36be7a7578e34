"""Principals, their roles and scopes, and bearer-token values: plain values, no web framework, no Redis.

Tokens are random, shown once, and stored only as their SHA-256 (a leaked registry cannot be replayed). The
aiohttp guard (``gateway.auth``) and the Redis registry (``gateway.trust.registry``) both import these values;
neither is imported here, so the values sit below both.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "TOKEN_PREFIX",
    "Principal",
    "Role",
    "hash_token",
    "in_jurisdiction",
    "is_token_shaped",
    "new_token",
    "secrets_equal",
]

TOKEN_PREFIX = "pgt_"
# The exact shape ``new_token`` produces; anything else is refused before Redis is asked (same answer).
_TOKEN = re.compile(r"pgt_[A-Za-z0-9_-]{43}")


class Role(StrEnum):
    DEVICE = "device"
    APP = "app"
    FEEDER = "feeder"
    SITE_MANAGER = "site_manager"
    DISPATCHER = "dispatcher"
    HANDLER = "handler"
    SUPERVISOR = "supervisor"
    PRIVACY_OFFICER = "privacy_officer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and the scope it is bound to."""

    principal_id: str
    role: Role
    places: frozenset[str] = frozenset()
    jurisdiction: str = ""  # a jurisdiction subtree, e.g. "sh/pudong"
    department: str = ""
    expires_at: int = 0  # unix seconds; 0 = does not expire
    revoked: bool = False
    # A digital sentry's device may present identity card numbers (issue 18, `devices add --id-card`): the most
    # sensitive input the gateway takes, so only devices registered for it may send one.
    id_card: bool = False

    def to_fields(self) -> dict[str, str]:
        return {
            "id": self.principal_id,
            "role": self.role.value,
            "places": ",".join(sorted(self.places)),
            "jurisdiction": self.jurisdiction,
            "department": self.department,
            "expires_at": str(self.expires_at),
            "revoked": "1" if self.revoked else "0",
            "id_card": "1" if self.id_card else "0",
        }

    @classmethod
    def from_fields(cls, raw: Mapping[bytes, bytes]) -> Principal:
        f = {k.decode(): v.decode() for k, v in raw.items()}
        return cls(
            principal_id=f["id"],
            role=Role(f["role"]),
            places=frozenset(p for p in f.get("places", "").split(",") if p),
            jurisdiction=f.get("jurisdiction", ""),
            department=f.get("department", ""),
            expires_at=int(f.get("expires_at", "0") or 0),
            revoked=f.get("revoked") == "1",
            id_card=f.get("id_card") == "1",
        )

    def usable(self, now_s: float) -> bool:
        return not self.revoked and (self.expires_at == 0 or now_s < self.expires_at)

    def covers_place(self, place_id: str, jurisdiction: str = "") -> bool:
        """Whether a place is inside this principal's scope (its places, or its jurisdiction subtree)."""
        if place_id in self.places:
            return True
        return bool(self.jurisdiction) and in_jurisdiction(jurisdiction, self.jurisdiction)


def in_jurisdiction(path: str, subtree: str) -> bool:
    """``path`` lies in ``subtree`` on whole segments ("city/d1" holds "city/d1/s1", never "city/d10")."""
    if not subtree or not path:
        return False
    return path == subtree or path.startswith(subtree.rstrip("/") + "/")


def secrets_equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality for anything secret or derived from a secret (tokens, their hashes, ids)."""
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


def new_token() -> tuple[str, str]:
    """A fresh bearer token (256 random bits) and the hash under which it is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()




def is_token_shaped(token: str) -> bool:
    """Whether ``token`` has the exact shape ``new_token`` produces (checked before any lookup)."""
    return _TOKEN.fullmatch(token) is not None
