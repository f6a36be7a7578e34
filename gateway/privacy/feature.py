"""The privacy feature: the privacy officer's routes, and an audit entry whenever the running configuration
(admission rules, retention) differs from the last one audited (rule changes are privileged actions)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

from aiohttp import web

from gateway import keyspace
from gateway.appstate import REDIS, RULES, SETTINGS
from gateway.privacy.audit import record_privileged
from gateway.privacy.routes import routes
from gateway.redisio import redis_errors

__all__ = ["ROUTES", "install"]

ROUTES: tuple[web.AbstractRouteDef, ...] = tuple(routes)


def install(app: web.Application) -> None:
    app.router.add_routes(ROUTES)
    app.cleanup_ctx.append(_audit_configuration)


async def _audit_configuration(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    rules = app[RULES]
    rules_text = settings.rules_file.read_bytes() if settings.rules_file else b""
    fingerprint = "|".join((rules.version, hashlib.sha256(rules_text).hexdigest()[:16],
                            str(settings.retention_days), str(settings.status_ttl_s)))
    redis = app[REDIS]
    # GETSET makes N workers starting together write one entry, not N.
    with redis_errors("audit trail"):
        previous = cast(bytes | None, await redis.getset(keyspace.AUDIT_CONFIG, fingerprint))
    if previous != fingerprint.encode():
        await record_privileged(redis, actor="gateway", role="system", action="config_change", obj="rules",
                                now=datetime.now(UTC),
                                extra={"rules_version": rules.version, "retention_days": str(settings.retention_days),
                                       "status_ttl_s": str(settings.status_ttl_s)})
    yield
