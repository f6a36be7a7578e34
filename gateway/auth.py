"""Principals, bearer tokens and the role check every route declares.

Tokens are random, shown once, and stored only as their SHA-256 (a leaked registry cannot be replayed). An
unknown, revoked or expired token gets the same answer, so the API is no oracle for other principals.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.errors import AuthError, ForbiddenError

if TYPE_CHECKING:
    from gateway.registry import Registry

__all__ = [
    "PRINCIPAL",
    "Handler",
    "Principal",
    "PrincipalCache",
    "Role",
    "hash_token",
    "new_token",
    "requires",
    "roles_of",
]


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


def new_token() -> tuple[str, str]:
    """A fresh bearer token and the hash under which it is stored."""
    token = "pgt_" + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PrincipalCache:
    """Short-lived cache of token lookups: a revocation takes effect within ``ttl_s`` seconds."""

    def __init__(self, registry: Registry, ttl_s: float) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise AuthError("bearer token required", code="missing_token")
        if scheme.lower() != "bearer" or not token or len(token) > 256:
            raise AuthError("invalid token")
        digest = hash_token(token.strip())
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is None or hit[0] < now:
            principal = await self._registry.get_principal(digest)
            if len(self._entries) > 100_000:
                self._entries.clear()
            self._entries[digest] = (now + self._ttl_s, principal)
        else:
            principal = hit[1]
        if principal is None or not principal.usable(time.time()):
            raise AuthError("invalid token")
        return principal


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL_CACHE: web.AppKey[PrincipalCache] = web.AppKey("principal_cache", PrincipalCache)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def requires(*roles: Role) -> Callable[[Handler], Handler]:
    """Declare the roles a route admits; authentication and the role check run before the handler."""
    allowed = frozenset(roles)

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
