"""The status feature in the app: the health authority's feed (``PUT /v1/status``) and the status-cache writer,
which shares the process's command batcher with the scan path."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.appstate import BATCHER, REDIS, SETTINGS
from gateway.status.cache import StatusLocator
from gateway.status.idcards import IdCardIndex
from gateway.status.routes import routes
from gateway.status.state import STATUS_WRITER
from gateway.status.writer import StatusWriter

__all__ = ["ROUTES", "install"]

ROUTES: tuple[web.AbstractRouteDef, ...] = tuple(routes)


def install(app: web.Application) -> None:
    app.router.add_routes(ROUTES)
    app.cleanup_ctx.append(_context)


async def _context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.secret is not None
    secret = settings.secret.reveal()
    locator = StatusLocator(secret, settings.status_buckets)
    app[STATUS_WRITER] = StatusWriter(app[REDIS], app[BATCHER], locator, settings.status_ttl_s,
                                      IdCardIndex(secret, settings.status_ttl_s))
    yield
