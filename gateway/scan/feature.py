"""The scan feature in the app: the scan routes, and the scanner with everything it is given.

Its cleanup context runs after the trust and status features' (it reads their trust state and status-cache
layout) and closes the scanner first on the way out, so the turns in progress write their records before the
core context closes the batcher.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from crypto.kdf import derive_key
from crypto.sealing import NOTE_LABEL, Sealer
from crypto.subject import SubjectHasher
from gateway.appstate import BATCHER, HEALTH, METRICS, REDIS, RULES, SETTINGS
from gateway.scan.offload import VerifyPool, verify_threads
from gateway.scan.outage import OutageMemory
from gateway.scan.places import PlaceResolver
from gateway.scan.routes import routes
from gateway.scan.scanner import Scanner, StaticReplay
from gateway.scan.state import PLACE_RESOLVER, SCAN_STORE, SCANNER
from gateway.scan.store import ScanStore
from gateway.status.state import STATUS_WRITER
from gateway.trust.state import PLACES, TRUST_STATE

__all__ = ["ROUTES", "install"]

ROUTES: tuple[web.AbstractRouteDef, ...] = tuple(routes)


def install(app: web.Application) -> None:
    app.router.add_routes(ROUTES)
    app.cleanup_ctx.append(_context)


async def _context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.secret is not None
    secret = settings.secret.reveal()
    store = ScanStore(app[REDIS], app[BATCHER], app[STATUS_WRITER].locator, retention_days=settings.retention_days)
    # Every worker derives the same key, so a DCC shared between gates served by two workers is still caught.
    replay = StaticReplay(derive_key(secret, b"placegate/dcc-replay/v1"), settings.dcc_replay_window_s)
    # Settings.workers is what `serve --workers N` gave every worker process: the cores are shared among them.
    threads = verify_threads(settings.verify_threads, workers=settings.workers)
    pool = VerifyPool(threads) if threads else None
    scanner = Scanner(
        store, trust=app[TRUST_STATE], rules=app[RULES], sealer=Sealer(secret),
        subjects=SubjectHasher(secret), metrics=app[METRICS],
        static_replay=replay, health=app[HEALTH],
        outage=OutageMemory(max_codes=settings.outage_max_codes, max_pending=settings.outage_max_pending,
                            metrics=app[METRICS]),
        retention_days=settings.retention_days, id_cards=app[STATUS_WRITER].id_cards,
        reading_sealer=Sealer(secret, label=NOTE_LABEL),
        redis_timeout_s=settings.redis_timeout_ms / 1000, retry_window_s=settings.scan_retry_window_s,
        verify_pool=pool,
    )  # fmt: skip
    app[SCAN_STORE] = store
    app[SCANNER] = scanner
    app[PLACE_RESOLVER] = PlaceResolver(app[PLACES], app[TRUST_STATE])
    try:
        yield
    finally:
        await scanner.aclose()
        if pool is not None:
            pool.close()  # after the turns: none of them waits on a thread any more
