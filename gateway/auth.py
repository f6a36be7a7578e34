"""The aiohttp guard: bearer-token authentication and the role check every route declares.

An unknown, revoked or expired token gets the same answer, so the API is no oracle for other principals. The
principal values themselves live in ``gateway.principals`` (no aiohttp there).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from gateway.errors import AuthError, ForbiddenError
from gateway.principals import Principal, Role, hash_token, is_token_shaped
from gateway.storehealth import StoreHealth
from gateway.ttlcache import TtlCache

__all__ = ["PRINCIPAL", "PRINCIPAL_CACHE", "REFUSAL_AUDIT", "Handler", "PrincipalCache", "RefusalHook", "requires",
           "roles_of"]

class PrincipalCache:
    """Short-lived cache of token lookups: a revocation takes effect within ``ttl_s`` seconds."""

    def __init__(
        self, lookup: Callable[[str], Awaitable[Principal | None]], ttl_s: float, *,
        health: StoreHealth | None = None, stale_max_s: float = 0.0, load_timeout_s: float | None = None,
    ) -> None:
        """:param lookup: the principal stored under a token's SHA-256 (``Registry.get_principal``).
        :param stale_max_s: during a store outage a principal is served from its last good copy up to this age
            (a token revoked during the outage keeps working until the store is back: docs/operations.md)."""
        self._cache: TtlCache[Principal | None] = TtlCache(
            lookup, ttl_s, health=health, stale_max_s=stale_max_s, load_timeout_s=load_timeout_s, what="principals"
        )

    async def authenticate(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise AuthError("bearer token required", code="missing_token")
        token = token.strip()
        if scheme.lower() != "bearer" or not is_token_shaped(token):
            raise AuthError("invalid token")
        # The token is looked up by its SHA-256, never compared with anything: lookup timing can reveal at most
        # a prefix of a hash, which does not help find a preimage (secrets_equal serves real comparisons).
        principal = await self._cache.get(hash_token(token))
        # Unknown, revoked and expired tokens are one answer: the API is no oracle for other principals.
        if principal is None or not principal.usable(time.time()):
            raise AuthError("invalid token")
        return principal

    async def usable(self, token_hash: str) -> Principal | None:
        """The usable principal stored under a token's SHA-256, through the same cache (the web console keeps the
        hash in its session, so a revocation ends a console session as it ends the token's API use)."""
        principal = await self._cache.get(token_hash)
        return principal if principal is not None and principal.usable(time.time()) else None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRINCIPAL_CACHE: web.AppKey[PrincipalCache] = web.AppKey("principal_cache", PrincipalCache)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
RefusalHook = Callable[[web.Request, Principal], Awaitable[None]]
# Installed by the privacy feature: it audits a role refusal (auth.py stays free of the audit trail's Redis code).
REFUSAL_AUDIT: web.AppKey[RefusalHook] = web.AppKey("refusal_audit")


def requires(*roles: Role) -> Callable[[Handler], Handler]:
    """Declare the roles a route admits; authentication and the role check run before the handler."""
    allowed = frozenset(roles)
    if not allowed:
        raise ValueError("a route must admit at least one role; public routes are not decorated")

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = await request.app[PRINCIPAL_CACHE].authenticate(request)
            if principal.role not in allowed:
                hook = request.app.get(REFUSAL_AUDIT)
                if hook is not None:
                    await hook(request, principal)
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
