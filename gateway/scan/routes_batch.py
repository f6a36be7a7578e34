"""POST /v1/scan/batch: a turnstile bank presents up to ``MAX_BATCH_CODES`` codes in one request.

Same authentication and the same answer per code as ``POST /v1/scan``; the codes go through
``Scanner.scan_many`` together, so a batch costs two pipelined Redis groups, not two per code.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from aiohttp import web

from gateway.auth import PRINCIPAL, requires
from gateway.errors import BadRequestError, MalformedCodeError
from gateway.http import json_response, read_json
from gateway.principals import Role
from gateway.scan.places import resolve_place
from gateway.scan.scanner import ScanOutcome
from gateway.state import METRICS, SCANNER, SETTINGS

__all__ = ["MAX_BATCH_CODES", "scan_batch"]

MAX_BATCH_CODES = 64
# A batch carries up to MAX_BATCH_CODES codes, so its body may be this many times the single-scan body limit.
_BODY_FACTOR = 8


@requires(Role.DEVICE, Role.APP)
async def scan_batch(request: web.Request) -> web.Response:
    """One decision per presented code, in order; a malformed item answers ``{"error": "malformed_code"}``."""
    started = time.perf_counter()
    app = request.app
    body = await read_json(request, limit=app[SETTINGS].max_body_bytes * _BODY_FACTOR)
    codes, place_code, place_id = _fields(body)
    scanner = app[SCANNER]
    now = scanner.clock()
    resolved = await resolve_place(app, request[PRINCIPAL], place_code, place_id, now)
    if isinstance(resolved, str):
        # The venue's place code itself was refused: every code of the batch is refused for that reason.
        results: list[dict[str, object]] = [o.to_json() for o in scanner.refuse_place(resolved, len(codes), now)]
    else:
        principal_id = request[PRINCIPAL].principal_id
        outcomes = await scanner.scan_many(codes, resolved, principal_id, now=now)
        results = [
            outcome.to_json() if isinstance(outcome, ScanOutcome) else {"error": MalformedCodeError.code}
            for outcome in outcomes
        ]
    response = json_response({"results": results})
    app[METRICS].batch_seconds.observe(time.perf_counter() - started)
    return response


def _fields(body: object) -> tuple[Sequence[str], str | None, str | None]:
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    codes, place_code, place_id = body.get("codes"), body.get("place_code"), body.get("place")
    if not isinstance(codes, list) or not codes:
        raise BadRequestError("'codes' must be a non-empty list")
    if len(codes) > MAX_BATCH_CODES:
        raise BadRequestError(f"at most {MAX_BATCH_CODES} codes per batch")
    if not all(isinstance(c, str) and c for c in codes):
        raise BadRequestError("every code must be a non-empty string")
    if place_code is not None and not isinstance(place_code, str):
        raise BadRequestError("'place_code' must be a string")
    if place_id is not None and not isinstance(place_id, str):
        raise BadRequestError("'place' must be a string")
    return codes, place_code, place_id
