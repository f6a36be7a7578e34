"""HTTP edge helpers: bounded JSON bodies, JSON answers, and the one middleware that renders every error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.apidocs import ROUTE_DOCS
from gateway.appstate import SETTINGS
from gateway.auth import Handler
from gateway.errors import (
    ERROR_STATUS,
    BadRequestError,
    GatewayError,
    MalformedJsonError,
    PayloadTooLargeError,
    RateLimitedError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)

__all__ = [
    "DRAIN",
    "INSTANT_MAX",
    "INSTANT_MIN",
    "QUERY_VALUE_MAX",
    "Drain",
    "documented_query",
    "error_middleware",
    "json_error",
    "json_response",
    "query_instant",
    "query_params",
    "read_json",
]

log = logging.getLogger("placegate.http")
_HTTP_CODES = {
    400: "invalid_request", 401: "invalid_token", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type",
    429: "too_many_requests",
}
# "identity" is the only coding RFC 9110 lets a request name without compressing; an empty header names none.
_IDENTITY = frozenset({"", "identity"})


# Query parameters (issue 15 "bad input"): no value any route takes is longer (the longest is an ISO 8601 instant
# or a cursor); anything longer is refused before a handler parses it.
QUERY_VALUE_MAX = 128
# The instants a query may name: wide enough for any real evaluation or audit window, narrow enough that no
# arithmetic on them (a range's end, a day's key, a time zone) leaves ``datetime``'s years 1..9999.
INSTANT_MIN = datetime(2000, 1, 1, tzinfo=UTC)
INSTANT_MAX = datetime(2100, 1, 1, tzinfo=UTC)


def documented_query(request: web.Request) -> frozenset[str] | None:
    """The query parameters ``gateway/apidocs.py`` documents for the route ``request`` matched (HEAD as GET);
    ``None`` for a request that matched no documented route (the router answers it)."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    doc = ROUTE_DOCS.get((method, resource.canonical))
    return None if doc is None else frozenset(p.name for p in doc.query)


def query_params(request: web.Request, allowed: Collection[str] | None = None) -> dict[str, str]:
    """The request's query parameters, checked: each a documented one (``allowed``, by default the route's
    entry in ``gateway/apidocs.py``), given at most once, at most ``QUERY_VALUE_MAX`` characters.

    :raises BadRequestError: ``invalid_request`` naming the first parameter refused.
    """
    names = documented_query(request) if allowed is None else allowed
    seen: dict[str, str] = {}
    for name, value in request.query.items():
        shown = name[:40]
        if names is None or name not in names:
            raise BadRequestError(f"unknown query parameter {shown!r}")
        if name in seen:
            raise BadRequestError(f"query parameter {shown!r} given more than once")
        if len(value) > QUERY_VALUE_MAX:
            raise BadRequestError(f"query parameter {shown!r} longer than {QUERY_VALUE_MAX} characters")
        seen[name] = value
    return seen


def query_instant(params: dict[str, str], name: str, *, required: bool = True) -> datetime | None:
    """The query parameter ``name`` as a UTC instant: ISO 8601 with an offset (``Z`` allowed), inside
    [``INSTANT_MIN``, ``INSTANT_MAX``).

    :raises BadRequestError: missing (when ``required``), malformed or out of range, naming the parameter.
    """
    raw = params.get(name, "")
    if not raw:
        if required:
            raise BadRequestError(f"query parameter {name!r} is required")
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise ValueError("no offset")
        value = value.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 with an offset east of UTC
        raise BadRequestError(f"query parameter {name!r} must be an ISO 8601 instant with offset") from None
    if not INSTANT_MIN <= value < INSTANT_MAX:
        raise BadRequestError(f"query parameter {name!r} must lie in [{INSTANT_MIN.year}, {INSTANT_MAX.year})")
    return value


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def json_error(code: str, detail: str = "") -> web.Response:
    return json_response({"error": code, "detail": detail}, status=ERROR_STATUS.get(code, 500))


async def read_json(request: web.Request, *, limit: int) -> Any:
    """The request's JSON document, refused before parsing when too large, compressed, late or not JSON.

    :raises UnsupportedMediaTypeError: not ``application/json``, or any ``Content-Encoding`` but identity
    :raises PayloadTooLargeError: over ``limit`` bytes
    :raises RequestTimeoutError: the body was not whole within ``Settings.body_read_timeout_s``
    """
    ctype = request.headers.get("Content-Type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise UnsupportedMediaTypeError("send application/json")
    if request.headers.get("Content-Encoding", "").strip().lower() not in _IDENTITY:
        # Refused, never decompressed: the limit holds for the bytes we parse, and 200 bytes of brotli can
        # expand to megabytes. The app turns aiohttp's own decompression off (create_app's handler_args), so no
        # byte of such a body was inflated before this refusal.
        raise UnsupportedMediaTypeError("send the body uncompressed (no Content-Encoding)")
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"body over {limit} bytes")
    try:
        async with asyncio.timeout(request.app[SETTINGS].body_read_timeout_s):
            body = await _read_body(request, limit)
    except TimeoutError:
        raise RequestTimeoutError("the body did not arrive in time") from None
    except HttpProcessingError:
        # A body that breaks its own framing (bad chunk sizes, cut short): the client's fault, not a 500.
        raise BadRequestError("malformed request body") from None
    except ConnectionResetError:
        # The client went away before its body was whole: nobody will read the answer, and it is no server error.
        raise BadRequestError("the connection closed before the body was whole") from None
    return _loads(body)


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None:
        return await request.read()  # bounded by read_json; one read, not a chunk loop (hot path)
    body = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        body += chunk
        if len(body) > limit:
            raise PayloadTooLargeError(f"body over {limit} bytes")
    return bytes(body)


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedJsonError("body is not valid JSON") from None


class Drain:
    """What a served process's drain needs to know (``workers.serve_process``): the connections whose request is
    in a handler now, and whether the process is draining, when every answer closes its connection."""

    __slots__ = ("busy", "draining")

    def __init__(self) -> None:
        self.busy: set[object] = set()
        self.draining = False


# Set by the serving code only; an app without it (tests' TestServer) skips the bookkeeping.
DRAIN: web.AppKey[Drain] = web.AppKey("drain", Drain)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    drain = request.app.get(DRAIN)
    if drain is None:
        return await _answer(request, handler)
    # aiohttp's own shutdown drops the bytes that arrive on a connection once it closes it, so a request whose
    # body is still arriving could never finish; the drain leaves the busy connections open instead.
    protocol = request.protocol
    drain.busy.add(protocol)
    try:
        response = await _answer(request, handler)
    finally:
        drain.busy.discard(protocol)
    if drain.draining:
        response.force_close()  # no further request on this connection: the process is going away
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.query_string and (documented := documented_query(request)) is not None:
            # Every route, whether or not its handler reads the query: an unknown parameter is refused, never
            # ignored (issue 15). No query string (the scan path) costs one attribute read.
            query_params(request, documented)
        return await handler(request)
    except GatewayError as exc:
        response = json_error(exc.instance_code, exc.detail)
        if isinstance(exc, RateLimitedError):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        if isinstance(exc, RequestTimeoutError):
            # The rest of a late body may still come: this connection cannot carry another request.
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(_HTTP_CODES.get(exc.status, "invalid_request"), exc.reason)
    except Exception as exc:
        # Never a traceback in a response; the log line names the exception type only, since a message could
        # carry request data.
        log.error("unhandled %s on %s %s", exc.__class__.__name__, request.method, request.path)
        return json_error("internal_error", "")
