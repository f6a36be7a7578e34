"""The aiohttp application factory; resources open and close in one cleanup context."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web
from redis.asyncio import Redis

from crypto.sealing import Sealer
from crypto.trust import Usage
from gateway.auth import PRINCIPAL_CACHE, PrincipalCache
from gateway.background import refreshing
from gateway.errors import StoreUnavailableError
from gateway.features import FEATURES
from gateway.http import error_middleware
from gateway.metrics import Metrics
from gateway.ops import healthz, metrics, readyz
from gateway.redisio import connect_redis
from gateway.scan.routes import scan
from gateway.scan.routes_batch import scan_batch
from gateway.scan.scanner import Scanner
from gateway.scan.store import Store
from gateway.settings import Settings
from gateway.state import METRICS, PLACES, REGISTRY, SCANNER, SETTINGS, STORE, TRUST_STATE, PlaceCache, TrustState
from gateway.status.routes import put_status
from gateway.trust.registry import Registry
from policy.rules import load_rules

__all__ = ["TRUST_REFRESH_S", "create_app", "refresh_trust", "serving_app"]

log = logging.getLogger("placegate.app")
TRUST_REFRESH_S = 2.0


def create_app(settings: Settings, *, redis: Redis | None = None) -> web.Application:
    """Build the gateway; tests inject ``redis`` (a client to the server they started)."""
    if settings.secret is None:
        raise ValueError("settings.secret is required (Settings.with_secret() generates one)")
    # Bodies are bounded per route in read_json; this cap only stops aiohttp buffering anything larger.
    app = web.Application(middlewares=[error_middleware], client_max_size=8 * 1024 * 1024)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[TRUST_STATE] = TrustState()
    app.cleanup_ctx.append(_resources(redis))
    app.router.add_post("/v1/scan", scan)
    app.router.add_post("/v1/scan/batch", scan_batch)
    app.router.add_put("/v1/status", put_status)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for install in FEATURES:
        install(app)
    return app


def serving_app(settings: Settings) -> web.Application:
    """The app as a served process runs it: after start-up the heap built so far is frozen, and the young
    generation is collected less often (``_GEN0_THRESHOLD``).

    Everything alive once the resources are open (modules, app, trust list, caches) lives as long as the process;
    ``gc.freeze`` moves it out of the collector's generations, so full collections stop rescanning it while
    requests wait: the p99 of the scan path fell from about 18 to 13 ms in the in-process wrk run
    (docs/performance.md). Not done in ``create_app``: tests build many apps in one process.
    """
    app = create_app(settings)
    app.on_startup.append(_freeze_heap)  # runs after the cleanup context has opened every resource
    return app


# Young-generation threshold of a served process (CPython's default is 700). A scan allocates and frees dozens of
# tracked objects and 64 requests are in flight, so at 700 the collector ran about once per 50 requests, scanning
# every object of the requests in flight each time (about 0.2 ms, 2-3 % of the CPU in the in-process wrk run).
# Refcounting frees everything a request leaves behind; only cyclic garbage waits for a collection, and it still
# gets one after 10,000 net allocations, so memory stays bounded.
_GEN0_THRESHOLD = 10_000


async def _freeze_heap(app: web.Application) -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(_GEN0_THRESHOLD, gen1, gen2)


def _resources(injected: Redis | None):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        assert settings.secret is not None
        if injected is None and settings.redis_url is None:
            raise ValueError("no redis_url: `placegate serve` starts the embedded server and passes its URL")
        redis = injected if injected is not None else connect_redis(str(settings.redis_url))
        secret = settings.secret.reveal()
        rules_text = settings.rules_file.read_text("utf-8") if settings.rules_file else None
        store = Store(redis, secret=secret, status_buckets=settings.status_buckets,
                      status_ttl_s=settings.status_ttl_s, retention_days=settings.retention_days)
        registry = Registry(redis)
        app[STORE] = store
        app[REGISTRY] = registry
        app[PLACES] = PlaceCache(registry, settings.principal_cache_s)
        app[PRINCIPAL_CACHE] = PrincipalCache(registry, settings.principal_cache_s)
        app[SCANNER] = Scanner(
            store, rules=load_rules(rules_text), sealer=Sealer(secret), metrics=app[METRICS],
            retention_days=settings.retention_days, redis_timeout_s=settings.redis_timeout_ms / 1000,
        )
        await refresh_trust(app)
        try:
            async with refreshing(lambda: refresh_trust(app), every_s=TRUST_REFRESH_S, what="trust-list"):
                yield
        finally:
            await app[SCANNER].aclose()
            await store.aclose()
            if injected is None:
                await redis.aclose()

    return ctx


async def refresh_trust(app: web.Application, *, force: bool = False) -> None:
    """Reload the trust list when its version moved; a failed refresh keeps the last good list."""
    state = app[TRUST_STATE]
    registry = app[REGISTRY]
    try:
        if not force and state.healthy and await registry.trust_version() == state.version:
            return
        version, trust = await registry.load_trust()
    except StoreUnavailableError:
        state.healthy = False
        return
    now = datetime.now(UTC)
    app[SCANNER].trust = trust
    state.version = version
    state.healthy = True
    state.usable_health_keys = sum(
        1 for k in trust if k.usage is Usage.HEALTH and not k.revoked and k.not_before <= now <= k.not_after
    )
    app[METRICS].trust_keys.set(len(trust))
