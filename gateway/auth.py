"""Principals, bearer tokens and the role check every route declares.

Tokens are random, shown once, and stored only as their SHA-256 (a leaked registry cannot be replayed). An
unknown, revoked or expired token gets the same answer, so the API is no oracle for other principals.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.errors import AuthError, ForbiddenError
from gateway.ttlcache import TtlCache

if TYPE_CHECKING:
    from gateway.trust.registry import Registry

__all__ = [
    "PRINCIPAL",
    "Handler",
    "Principal",
    "PrincipalCache",
    "Role",
    "hash_token",
    "in_jurisdiction",
    "new_token",
    "requires",
    "roles_of",
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

    def to_fields(self) -> dict[str, str]:
        return {
            "id": self.principal_id,
            "role": self.role.value,
            "places": ",".join(sorted(self.places)),
            "jurisdiction": self.jurisdiction,
            "department": self.department,
            "expires_at": str(self.expires_at),
            "revoked": "1" if self.revoked else "0",
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


class PrincipalCache:
    """Short-lived cache of token lookups: a revocation takes effect within ``ttl_s`` seconds."""

    def __init__(self, registry: Registry, ttl_s: float) -> None:
        self._cache: TtlCache[Principal | None] = TtlCache(registry.get_principal, ttl_s)

    async def authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise AuthError("bearer token required", code="missing_token")
        token = token.strip()
        if scheme.lower() != "bearer" or _TOKEN.fullmatch(token) is None:
            raise AuthError("invalid token")
        # The token is looked up by its SHA-256, never compared with anything: lookup timing can reveal at most
        # a prefix of a hash, which does not help find a preimage (secrets_equal serves real comparisons).
        principal = await self._cache.get(hash_token(token))
        # Unknown, revoked and expired tokens are one answer: the API is no oracle for other principals.
        if principal is None or not principal.usable(time.time()):
            raise AuthError("invalid token")
        return principal


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL_CACHE: web.AppKey[PrincipalCache] = web.AppKey("principal_cache", PrincipalCache)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def requires(*roles: Role) -> Callable[[Handler], Handler]:
    """Declare the roles a route admits; authentication and the role check run before the handler."""
    allowed = frozenset(roles)
    if not allowed:
        raise ValueError("a route must admit at least one role; public routes are not decorated")

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = await request.app[PRINCIPAL_CACHE].authenticate(request)
            if principal.role not in allowed:
                raise ForbiddenError("role not permitted")
            request[PRINCIPAL] = principal
            return await handler(request)

        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        guarded.placegate_roles = allowed  # type: ignore[attr-defined]
        return guarded

    return wrap


def roles_of(handler: object) -> frozenset[Role] | None:
    """The roles a handler declared, ``None`` for a public route."""
    roles: Iterable[Role] | None = getattr(handler, "placegate_roles", None)
    return None if roles is None else frozenset(roles)
