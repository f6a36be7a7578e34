"""POST /v1/scan: a device bound to its place, or an app backend presenting the venue's signed place code."""

from __future__ import annotations

from aiohttp import web

from crypto.errors import Base45Error, CodeError, UnknownFormatError
from crypto.native import verify_place_code
from gateway.auth import PRINCIPAL, Role, requires
from gateway.errors import BadRequestError, ForbiddenError, MalformedCodeError
from gateway.http import json_response, read_json
from gateway.registry import Place
from gateway.scan import ScanOutcome, new_scan_id
from gateway.state import PLACES, SCANNER, SETTINGS
from policy.admission import refuse

__all__ = ["scan"]


@requires(Role.DEVICE, Role.APP)
async def scan(request: web.Request) -> web.Response:
    """Answer admit / deny / review for one presented code."""
    app = request.app
    body = await read_json(request, limit=app[SETTINGS].max_body_bytes)
    code, place_code, place_id = _fields(body)
    principal = request[PRINCIPAL]
    scanner = app[SCANNER]
    now = scanner.clock()
    if principal.role is Role.DEVICE:
        bound = next(iter(principal.places), None)
        if bound is None or (place_id is not None and place_id not in principal.places):
            raise ForbiddenError("device is not bound to this place")
        place = await app[PLACES].get(place_id or bound)
        if place is None:
            raise ForbiddenError("device is not bound to this place")
    else:
        if place_code is None:
            raise BadRequestError("self-scan needs the venue's place_code")
        try:
            verified = verify_place_code(place_code, scanner.trust, now=now)
        except (Base45Error, UnknownFormatError) as exc:
            raise MalformedCodeError("place_code is not a place code") from exc
        except CodeError as exc:
            # A forged, revoked or expired place code is refused like a forged health code: a deny.
            outcome = ScanOutcome(refuse(scanner.rules, "place_" + exc.code, rule_id="place"), None,
                                  new_scan_id(now), now)
            return json_response(outcome.to_json())
        place = await app[PLACES].get(verified.place_id)
        if place is None:
            outcome = ScanOutcome(refuse(scanner.rules, "place_unknown", rule_id="place"), None, new_scan_id(now), now)
            return json_response(outcome.to_json())
        place = Place(place.place_id, place.name, verified.venue_class, verified.jurisdiction)
    outcome = await scanner.scan(code, place, principal.principal_id, now=now)
    return json_response(outcome.to_json())


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
