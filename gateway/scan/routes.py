"""POST /v1/scan: a device bound to its place, or an app backend presenting the venue's signed place code."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.auth import PRINCIPAL, requires
from gateway.errors import BadRequestError
from gateway.http import json_response, read_json
from gateway.principals import Role
from gateway.scan.places import resolve_place
from gateway.state import METRICS, SCANNER, SETTINGS

__all__ = ["scan"]


@requires(Role.DEVICE, Role.APP)
async def scan(request: web.Request) -> web.Response:
    """Answer admit / deny / review for one presented code."""
    started = time.perf_counter()
    app = request.app
    body = await read_json(request, limit=app[SETTINGS].max_body_bytes)
    code, place_code, place_id = _fields(body)
    principal = request[PRINCIPAL]
    scanner = app[SCANNER]
    now = scanner.clock()
    place = await resolve_place(app, principal, place_code, place_id, now)
    if isinstance(place, str):
        # The venue's place code was refused: the answer is a deny, counted and timed like any other.
        (outcome,) = scanner.refuse_place(place, 1, now)
    else:
        outcome = await scanner.scan(code, place, principal.principal_id, now=now)
    response = json_response(outcome.to_json())
    app[METRICS].scan_seconds.observe(time.perf_counter() - started)
    return response


def _fields(body: object) -> tuple[str, str | None, str | None]:
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    code, place_code, place_id = body.get("code"), body.get("place_code"), body.get("place")
    if not isinstance(code, str) or not code:
        raise BadRequestError("'code' must be a non-empty string")
    if place_code is not None and not isinstance(place_code, str):
        raise BadRequestError("'place_code' must be a string")
    if place_id is not None and not isinstance(place_id, str):
        raise BadRequestError("'place' must be a string")
    return code, place_code, place_id
