"""Every answer observed: request ids, the access log, ``placegate_http_requests_total{route,status}``,
``placegate_http_request_seconds{route}``, and the app's sink for ``placegate_store_errors_total{op}``.

``count_answers`` is the outermost middleware, outside ``gateway.http.error_middleware``, so what it counts and
logs is the status the client gets: a refusal rendered from an error (400, 401, 403, 404, 413, 503, a 500 for an
unexpected exception) as well as a handler's own answer. The route label is the matched resource's template
(``/v1/cases/{case_id}``), or ``unmatched`` when no route matched: a raw path carries case ids and would make
the label set unbounded.

Request ids: a client's ``X-Request-Id`` is kept when it is 1-64 characters of ``[A-Za-z0-9._-]`` (a code
string has a ``:`` and is longer, so a scanner cannot put one there by mistake); anything else is replaced by a
fresh random id. Every answer carries the id back in ``X-Request-Id``, and the access-log line names it, so a
device's complaint can be found in the logs without anyone quoting a code.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.appstate import ACCESS_LOG, METRICS
from gateway.auth import PRINCIPAL, Handler
from gateway.redisio import count_store_errors

__all__ = ["REQUEST_ID", "REQUEST_ID_HEADER", "UNMATCHED", "count_answers", "counting_store_errors",
           "request_id_of"]

# The route label of a request no route matched (404, or 405 for a known path with another method).
UNMATCHED = "unmatched"
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


# Fresh ids: a random per-process prefix and a counter (8 + up to 8 hex digits). Unique across processes and
# restarts with overwhelming odds; not secret (an id names an answer, it grants nothing) and, unlike a
# urandom call per request, free on the scan path.
_PREFIX = os.urandom(4).hex()
_SERIAL = itertools.count(1)


def request_id_of(raw: str | None) -> str:
    """The client's id when it is well formed, else a fresh one."""
    if raw is not None and _CLIENT_ID.fullmatch(raw):
        return raw
    return f"{_PREFIX}{next(_SERIAL) & 0xFFFFFFFF:08x}"


@web.middleware
async def count_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    rid = request[REQUEST_ID] = request_id_of(request.headers.get(REQUEST_ID_HEADER))
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # only a redirect passes the error middleware; aiohttp sends it as is
        exc.headers[REQUEST_ID_HEADER] = rid
        _observe(request, exc.status, started, rid)
        raise
    except Exception:  # passed the error middleware after all: aiohttp answers 500
        _observe(request, 500, started, rid)
        raise
    response.headers[REQUEST_ID_HEADER] = rid
    _observe(request, response.status, started, rid)
    return response


def _observe(request: web.Request, status: int, started: float, rid: str) -> None:
    duration = time.perf_counter() - started
    resource = request.match_info.route.resource
    route = UNMATCHED if resource is None else resource.canonical
    app = request.app
    app[METRICS].count_http(route, status, duration)
    access = app.get(ACCESS_LOG)
    if access is not None:
        principal = request.get(PRINCIPAL)
        access.record(request_id=rid, method=request.method, route=route, status=status, duration_s=duration,
                      principal=None if principal is None else principal.principal_id)


async def counting_store_errors(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: while the app runs, its Metrics counts every failed store call (gateway.redisio)."""
    remove = count_store_errors(app[METRICS].count_store_error)
    try:
        yield
    finally:
        remove()
