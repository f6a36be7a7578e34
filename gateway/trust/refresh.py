"""The trust feature in the app: every worker holds the native issuer keys, the EU DCC document-signer list and
the place registry, and reloads each list when its version counter moves.

A failed reload keeps the last good list (``TrustState``); the DSC list's age is judged at each scan, so a
worker that cannot reach Redis still degrades and then fails closed on schedule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from cryptography import x509

from crypto.dcc_trustlist import load_anchor
from crypto.errors import TrustListError
from gateway.appstate import CLOCK, HEALTH, METRICS, REDIS, SETTINGS
from gateway.auth import PRINCIPAL_CACHE, PrincipalCache
from gateway.background import refreshing
from gateway.errors import StoreUnavailableError
from gateway.trust.dccrules import RuleSetRegistry
from gateway.trust.dsc import DscRegistry
from gateway.trust.registry import Registry
from gateway.trust.state import DSC_REGISTRY, PLACES, REGISTRY, TRUST_STATE, PlaceCache, TrustState
from gateway.trust.sync import sync_dsc_list, take_sync_round
from gateway.trust.valuesets import ValueSetRegistry

__all__ = ["install", "refresh_dcc_rules", "refresh_dsc", "refresh_trust", "refresh_valuesets"]

log = logging.getLogger("placegate.trust")

_SYNC_POLL_S = 5.0  # how often a process asks whether this round's pull is still to be done


def install(app: web.Application) -> None:
    """Load every trust list at start-up and keep them current."""
    settings = app[SETTINGS]
    app[TRUST_STATE] = TrustState(dsc_degraded_after_s=settings.dsc_trust_degraded_after_s,
                                  dsc_fail_after_s=settings.dsc_trust_fail_after_s,
                                  native_stale_max_s=settings.outage_stale_max_s)
    app.cleanup_ctx.append(_context)
    if settings.dsc_sync_url is not None and settings.dsc_sync_anchor_file is not None:
        app.cleanup_ctx.append(_sync_context(settings.dsc_sync_url, _anchor(settings.dsc_sync_anchor_file),
                                             settings.dsc_sync_interval_s))


def _anchor(path: Path) -> x509.Certificate:
    """The sync's trust anchor, read once at start-up: a bad file stops the start, named by its variable."""
    try:
        return load_anchor(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"PLACEGATE_DSC_SYNC_ANCHOR_FILE: cannot read {path}: {exc.strerror or exc}") from None
    except TrustListError as exc:
        raise ValueError(f"PLACEGATE_DSC_SYNC_ANCHOR_FILE: {exc}") from None


def _sync_context(
    url: str, anchor: x509.Certificate, interval_s: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Pull the signer list on a schedule (gateway/trust/sync.py): every process asks for the round's lock often
    (a cheap SET NX), the one that gets it pulls, so the deployment pulls once per interval and soon after start."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        health = app[HEALTH]

        async def pull() -> None:
            if not health.available or not await take_sync_round(app[REDIS], interval_s):
                return
            outcome = await sync_dsc_list(app[REDIS], url=url, anchor=anchor, now=app[CLOCK].now())
            app[METRICS].dsc_syncs.labels(outcome.outcome).inc()
            if outcome.outcome == "imported":
                await refresh_dsc(app)

        async with refreshing(pull, every_s=min(interval_s, _SYNC_POLL_S), what="dsc-sync"):
            yield

    return context


async def _context(app: web.Application) -> AsyncIterator[None]:
    redis = app[REDIS]
    registry = Registry(redis)
    app[REGISTRY] = registry
    app[DSC_REGISTRY] = DscRegistry(redis)
    settings, health = app[SETTINGS], app[HEALTH]
    # A lookup on the request path waits no longer than a scan's store budget; then the last good copy serves.
    stale_max_s, load_timeout_s = settings.outage_stale_max_s, settings.redis_timeout_ms / 1000
    app[PLACES] = PlaceCache(registry, settings.principal_cache_s, health=health, stale_max_s=stale_max_s,
                             load_timeout_s=load_timeout_s)
    app[PRINCIPAL_CACHE] = PrincipalCache(registry.get_principal, settings.principal_cache_s, health=health,
                                          stale_max_s=stale_max_s, load_timeout_s=load_timeout_s)
    await refresh_trust(app)
    await refresh_dsc(app)
    await refresh_valuesets(app)
    await refresh_dcc_rules(app)

    async def refresh() -> None:
        if health.available:  # else the last good lists serve; the store's probe says when it is back
            await refresh_trust(app)
            await refresh_dsc(app)
            await refresh_valuesets(app)
            await refresh_dcc_rules(app)
        _report_ages(app)

    _report_ages(app)

    async with refreshing(refresh, every_s=app[SETTINGS].trust_refresh_s, what="trust-list"):
        yield


async def refresh_trust(app: web.Application, *, force: bool = False) -> None:
    """Reload the native keys when their version moved; a failed refresh keeps the last good list."""
    state = app[TRUST_STATE]
    registry = app[REGISTRY]
    try:
        if not force and state.healthy and await registry.trust_version() == state.version:
            state.native_confirmed_at = time.monotonic()
            return
        version, trust = await registry.load_trust()
    except StoreUnavailableError:
        state.healthy = False
        return
    state.set_native(version, trust, datetime.now(UTC))
    app[METRICS].trust_keys.set(len(trust))


async def refresh_dsc(app: web.Application, *, force: bool = False) -> bool:
    """Reload the DSC list when its version moved; False when Redis could not answer (last list kept)."""
    state = app[TRUST_STATE]
    registry = app[DSC_REGISTRY]
    try:
        if not force and await registry.version() == state.dsc_version:
            return True
        snapshot = await registry.load()
    except StoreUnavailableError:
        return False
    state.dsc = snapshot.trust
    state.dsc_imported_at = snapshot.imported_at
    state.dsc_version = snapshot.version
    return True


async def refresh_valuesets(app: web.Application, *, force: bool = False) -> bool:
    """Reload the EU DCC value sets when their version moved; False when Redis could not answer (last kept)."""
    state = app[TRUST_STATE]
    registry = ValueSetRegistry(app[REDIS])
    try:
        if not force and await registry.version() == state.valuesets_version:
            return True
        snapshot = await registry.load()
    except StoreUnavailableError:
        return False
    state.set_valuesets(snapshot.value_sets, snapshot.version, snapshot.imported_at)
    return True


async def refresh_dcc_rules(app: web.Application, *, force: bool = False) -> bool:
    """Reload the EU DCC business-rule sets when their version moved; False when Redis could not answer."""
    state = app[TRUST_STATE]
    registry = RuleSetRegistry(app[REDIS])
    try:
        if not force and await registry.version() == state.dcc_rules_version:
            return True
        snapshot = await registry.load()
    except StoreUnavailableError:
        return False
    state.set_rule_sets(snapshot.rule_sets, snapshot.version, snapshot.imported_at)
    return True


def _report_ages(app: web.Application) -> None:
    """``placegate_trust_list_age_seconds``: how old what this worker holds is (alerts fire on a stale list)."""
    state, gauge = app[TRUST_STATE], app[METRICS].trust_list_age
    if state.native_confirmed_at is not None:
        gauge.labels("native").set(time.monotonic() - state.native_confirmed_at)
    if state.dsc_imported_at is not None:
        gauge.labels("dsc").set(max(0.0, (app[CLOCK].now() - state.dsc_imported_at).total_seconds()))
    if state.valuesets_imported_at is not None:
        gauge.labels("valuesets").set(max(0.0, (app[CLOCK].now() - state.valuesets_imported_at).total_seconds()))
