"""Every answer counted: the middleware behind ``placegate_http_requests_total{route,status}`` and the app's
sink for ``placegate_store_errors_total{op}``.

``count_answers`` is the outermost middleware, outside ``gateway.http.error_middleware``, so what it counts is
the status the client gets: a refusal rendered from an error (400, 401, 403, 404, 413, 503, a 500 for an
unexpected exception) as well as a handler's own answer. The route label is the matched resource's template
(``/v1/cases/{case_id}``), or ``unmatched`` when no route matched: a raw path carries case ids and would make
the label set unbounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.appstate import METRICS
from gateway.auth import Handler
from gateway.redisio import count_store_errors

__all__ = ["UNMATCHED", "count_answers", "counting_store_errors"]

# The route label of a request no route matched (404, or 405 for a known path with another method).
UNMATCHED = "unmatched"


@web.middleware
async def count_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # only a redirect passes the error middleware; aiohttp sends it as is
        _count(request, exc.status)
        raise
    except Exception:  # passed the error middleware after all: aiohttp answers 500
        _count(request, 500)
        raise
    _count(request, response.status)
    return response


def _count(request: web.Request, status: int) -> None:
    resource = request.match_info.route.resource
    request.app[METRICS].count_http(UNMATCHED if resource is None else resource.canonical, status)


async def counting_store_errors(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: while the app runs, its Metrics counts every failed store call (gateway.redisio)."""
    remove = count_store_errors(app[METRICS].count_store_error)
    try:
        yield
    finally:
        remove()
