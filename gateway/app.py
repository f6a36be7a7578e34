"""The aiohttp application factory: the core resources and the features, each installed from its own folder.

Resources open and close in cleanup contexts, in the order of ``FEATURES`` after the core one (the Redis client,
the command batcher, the rules) and close in reverse, so a feature can rely on those before it at start-up and
the scanner finishes its turns before the batcher closes.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web
from redis.asyncio import Redis

from gateway import observe, openapi, ops
from gateway.appstate import ACCESS_LOG, BATCHER, CLOCK, HEALTH, METRICS, REDIS, RULES, SETTINGS, Clock
from gateway.batcher import CommandBatcher
from gateway.console import feature as console_feature
from gateway.dispatch import feature as dispatch_feature
from gateway.http import error_middleware
from gateway.logjson import AccessLog
from gateway.metrics import Metrics
from gateway.privacy import feature as privacy_feature
from gateway.redisio import connect_redis
from gateway.scan import feature as scan_feature
from gateway.settings import Settings
from gateway.status import feature as status_feature
from gateway.storehealth import StoreHealth
from gateway.trust import refresh as trust_feature
from policy.rules import load_rules

__all__ = ["FEATURES", "create_app", "serving_app"]

log = logging.getLogger("placegate.app")

# Each feature's install(app) adds its routes and, where it holds resources or background tasks, a cleanup
# context. Order matters: the scan feature reads the trust state and the status-cache layout at start-up.
FEATURES: tuple[Callable[[web.Application], None], ...] = (
    trust_feature.install,  # native issuer keys, EU DCC signers, places; refreshed in the background
    status_feature.install,  # the health authority's feed and the status-cache writer
    scan_feature.install,  # POST /v1/scan and /v1/scan/batch
    privacy_feature.install,  # privacy officer: audit trail, retention, RoPA, contact tracing
    dispatch_feature.install,  # dispatch core: reports, cases, intake consumer, sweeper
    console_feature.install,  # the web console at /console/ for people (sessions on the core Redis client)
)


def create_app(settings: Settings, *, redis: Redis | None = None) -> web.Application:
    """Build the gateway; tests inject ``redis`` (a client to the server they started)."""
    if settings.secret is None:
        raise ValueError("settings.secret is required (Settings.with_secret() generates one)")
    # Bodies are bounded per route in read_json; this cap only stops aiohttp buffering anything larger. aiohttp
    # would inflate a gzip/deflate/br body as it arrives, before any limit could look at it (a decompression
    # bomb): read_json refuses every Content-Encoding instead, so nothing is ever inflated.
    app = web.Application(middlewares=[observe.count_answers, error_middleware], client_max_size=8 * 1024 * 1024,
                          handler_args={"auto_decompress": False})
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[CLOCK] = Clock()
    if settings.access_log:
        app[ACCESS_LOG] = AccessLog()
        app.on_cleanup.append(_flush_access_log)  # the lines still buffered when the process stops
    rules_text = settings.rules_file.read_text("utf-8") if settings.rules_file else None
    app[RULES] = load_rules(rules_text)
    app.cleanup_ctx.append(observe.counting_store_errors)  # first in, last out: shutdown errors count too
    app.cleanup_ctx.append(_core(redis))
    app.router.add_routes(ops.routes)
    openapi.install(app)
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


async def _flush_access_log(app: web.Application) -> None:
    app[ACCESS_LOG].flush()


async def _freeze_heap(app: web.Application) -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(_GEN0_THRESHOLD, gen1, gen2)


def _core(injected: Redis | None) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        if injected is None and settings.redis_url is None:
            raise ValueError("no redis_url: `placegate serve` starts the embedded server and passes its URL")
        redis = injected if injected is not None else connect_redis(
            str(settings.redis_url), connect_timeout_s=settings.redis_connect_timeout_s,
            socket_timeout_s=settings.redis_socket_timeout_s,
        )  # fmt: skip
        batcher = CommandBatcher(redis)
        app[REDIS] = redis
        app[BATCHER] = batcher
        # The probe goes through the scan path's own pipeline: when it answers, scans will too.
        # The batcher holds the probe's deadline itself: a stopped server then leaves no flight waiting for ever.
        probe_timeout_s = max(0.2, settings.redis_timeout_ms / 1000)
        health = StoreHealth(lambda: batcher.run((("PING",),), probe_timeout_s), probe_every_s=settings.store_probe_s,
                             probe_timeout_s=probe_timeout_s, metrics=app[METRICS])
        app[HEALTH] = health
        try:
            async with health.probing():
                yield
        finally:
            await batcher.aclose()
            if injected is None:
                await redis.aclose()

    return ctx
