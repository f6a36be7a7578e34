"""The privacy feature: the privacy officer's routes, an audit entry whenever the running configuration
(admission rules, retention) differs from the last one audited (rule changes are privileged actions), and the
retention trim: every ``retention_trim_s`` one process (the holder of ``pg:privacy:retention-lease``) trims the
intake stream and the dead letters to the retention by time, whether or not a dispatch sweeper runs (it is the
dispatch sweep's own trim, ``gateway.dispatch.worker.trim_to_retention``: never past an unfinished event)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

from aiohttp import web

from gateway import keyspace
from gateway.appstate import REDIS, RULES, SETTINGS
from gateway.auth import REFUSAL_AUDIT
from gateway.background import refreshing
from gateway.dispatch.lease import SweepLease
from gateway.dispatch.store import CaseStore
from gateway.dispatch.worker import trim_to_retention
from gateway.errors import GatewayError
from gateway.privacy import compaction
from gateway.privacy.audit import record_privileged, set_trail_secret
from gateway.privacy.refusals import RefusalLimiter, audit_role_refusal
from gateway.privacy.routes import routes
from gateway.redisio import redis_errors

__all__ = ["ROUTES", "install"]

log = logging.getLogger("placegate.privacy")
ROUTES: tuple[web.AbstractRouteDef, ...] = tuple(routes)


def install(app: web.Application) -> None:
    secret = app[SETTINGS].secret
    assert secret is not None  # create_app refuses settings without one
    set_trail_secret(secret.reveal())  # every feature's audit entries sign the trail's head with it
    app[REFUSAL_AUDIT] = audit_role_refusal(RefusalLimiter())
    app.router.add_routes(ROUTES)
    app.cleanup_ctx.append(_audit_configuration)
    app.cleanup_ctx.append(_retention_trim)
    compaction.install(app)


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


async def _retention_trim(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = app[REDIS]
    # Only the holder retention matters to the trim; the store is the dispatch core's, read through its own code.
    store = CaseStore(redis, holder_retention_s=settings.retention_days * 24 * 3600)
    ttl_ms = keyspace.sweep_lease_ttl_ms(settings.retention_trim_s)
    lease = SweepLease(redis, ttl_ms=ttl_ms, key=keyspace.RETENTION_LEASE)
    async with contextlib.AsyncExitStack() as background:
        background.push_async_callback(_release, lease)  # runs after the loop has stopped
        await background.enter_async_context(
            refreshing(lambda: _trim(store, lease), every_s=settings.retention_trim_s, what="retention trim")
        )
        yield


async def _trim(store: CaseStore, lease: SweepLease) -> None:
    """One trim if this process holds the retention lease; a failure is logged by its code and retried next period.

    The wall clock, not the app clock: stream ids are the server's wall-clock milliseconds. A dispatch sweep in
    another process may trim at the same moment: both trims are idempotent, except that an event reaching the
    retention unconsumed can then be dead-lettered twice (a copy too many, never one lost or kept too long)."""
    try:
        if not await lease.hold():
            return
        report = await trim_to_retention(store, now=datetime.now(UTC))
    except GatewayError as exc:
        log.warning("retention trim failed (%s)", exc.instance_code)
        return
    if report.trimmed or report.expired:
        log.info("retention trim: %d entries past retention removed, %d intake events expired unconsumed",
                 report.trimmed, report.expired)


async def _release(lease: SweepLease) -> None:
    with contextlib.suppress(GatewayError):  # unreachable store: the lease expires by itself
        await lease.release()
