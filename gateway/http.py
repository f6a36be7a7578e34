"""HTTP edge helpers: bounded JSON bodies, JSON answers, and the one middleware that renders every error."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

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

__all__ = ["DRAIN", "Drain", "error_middleware", "json_error", "json_response", "read_json"]

log = logging.getLogger("placegate.http")
_HTTP_CODES = {
    400: "invalid_request", 401: "invalid_token", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type",
    429: "too_many_requests",
}
# "identity" is the only coding RFC 9110 lets a request name without compressing; an empty header names none.
_IDENTITY = frozenset({"", "identity"})


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
