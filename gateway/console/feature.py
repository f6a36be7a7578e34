"""Mounts the web console at ``/console/`` (issue 17): its pages and the session store on the app's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.appstate import REDIS, SETTINGS
from gateway.console import routes_admin, routes_auth, routes_cases, routes_figures, routes_privacy, routes_site
from gateway.console.sessions import SessionStore
from gateway.console.web import CONSOLE, Console, make_environment

__all__ = ["PREFIX", "install"]

PREFIX = "/console"  # the console's pages are HTML for people, not part of the JSON API (gateway/openapi.py)
ROUTES = (routes_auth.routes, routes_cases.routes, routes_site.routes, routes_figures.routes, routes_privacy.routes,
          routes_admin.routes)


async def _open(app: web.Application) -> AsyncIterator[None]:
    app[CONSOLE].sessions = SessionStore(app[REDIS], ttl_s=app[SETTINGS].console_session_s)
    yield


def install(app: web.Application) -> None:
    # The session store needs the app's Redis client, which the core context opens: it is bound in _open.
    app[CONSOLE] = Console(make_environment())
    for table in ROUTES:
        app.router.add_routes(table)
    app.cleanup_ctx.append(_open)
