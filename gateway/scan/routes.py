"""The scan API: ``POST /v1/scan`` (one code) and ``POST /v1/scan/batch`` (a turnstile bank's codes).

A device is bound to its place; an app backend presents the venue's signed place code (self-scan). A batch gets
the same answer per code as single scans, and its codes go through ``Scanner.scan_many`` together, so a batch
costs two pipelined Redis groups, not two per code.
"""

from __future__ import annotations

import orjson
from aiohttp import web

from gateway.appstate import CLOCK, REDIS, SETTINGS
from gateway.auth import PRINCIPAL, requires
from gateway.errors import BadRequestError, ForbiddenError, MalformedCodeError
from gateway.http import json_response, read_json
from gateway.principals import Principal, Role
from gateway.scan.idempotency import HEADER, idempotency_name, remember_answer, stored_answer
from gateway.scan.scanner import Presentation, Presented, Scanner, ScanOutcome
from gateway.scan.state import PLACE_RESOLVER, SCANNER
from policy.idcard import InvalidIdCardError, normalise_id_card
from policy.temperature import InvalidTemperatureError, check_temperature

__all__ = ["routes"]

routes = web.RouteTableDef()

# The single-scan body limit covers the codes of this many batch items (a code is at most a few hundred bytes; the
# limit's headroom is for clients that pretty-print): 64 codes get 8 times the single-scan limit.
_CODES_PER_BODY = 8


@routes.post("/v1/scan")
@requires(Role.DEVICE, Role.APP)
async def scan(request: web.Request) -> web.Response:
    """Answer admit / deny / review for one presented code (timed per route by gateway/observe.py)."""
    app = request.app
    body = await read_json(request, limit=app[SETTINGS].max_body_bytes)
    principal = request[PRINCIPAL]
    code, place_code, place_id = _single_fields(body, principal, app[SCANNER])
    idem = idempotency_name(principal.principal_id, "scan", request.headers.get(HEADER))
    if idem is not None and (stored := await stored_answer(app[REDIS], idem)) is not None:
        return _stored(stored)
    scanner = app[SCANNER]
    now = app[CLOCK].now()
    place = await app[PLACE_RESOLVER].resolve(principal, place_code, place_id, now)
    if isinstance(place, str):
        # The venue's place code was refused: the answer is a deny, counted and timed like any other.
        (outcome,) = scanner.refuse_place(place, 1, now)
    else:
        outcome = await scanner.scan(code, place, principal.principal_id, now=now)
    return await _answer(app, idem, outcome.to_json())


@routes.post("/v1/scan/batch")
@requires(Role.DEVICE, Role.APP)
async def scan_batch(request: web.Request) -> web.Response:
    """One decision per presented code, in order; a malformed item answers ``{"error": "malformed_code"}`` (an
    identity card or a temperature that cannot be one: ``invalid_id_card``, ``invalid_temperature``)."""
    app = request.app
    settings = app[SETTINGS]
    body_limit = settings.max_body_bytes * max(1, -(-settings.max_batch_codes // _CODES_PER_BODY))
    body = await read_json(request, limit=body_limit)
    principal = request[PRINCIPAL]
    items, place_code, place_id = _batch_fields(body, settings.max_batch_codes, principal, app[SCANNER])
    codes = [item for item in items if not isinstance(item, BadRequestError)]
    # One key answers the whole request: a batch is retried as a whole.
    idem = idempotency_name(principal.principal_id, "batch", request.headers.get(HEADER))
    if idem is not None and (stored := await stored_answer(app[REDIS], idem)) is not None:
        return _stored(stored)
    scanner = app[SCANNER]
    now = app[CLOCK].now()
    resolved = await app[PLACE_RESOLVER].resolve(principal, place_code, place_id, now)
    if isinstance(resolved, str):
        # The venue's place code itself was refused: every code of the batch is refused for that reason.
        answers: list[dict[str, object]] = [o.to_json() for o in scanner.refuse_place(resolved, len(codes), now)]
    else:
        outcomes = await scanner.scan_many(codes, resolved, principal.principal_id, now=now) if codes else []
        answers = [
            outcome.to_json() if isinstance(outcome, ScanOutcome) else {"error": MalformedCodeError.code}
            for outcome in outcomes
        ]
    # The items refused before the scan keep their places in the answer.
    decided = iter(answers)
    results = [{"error": item.instance_code} if isinstance(item, BadRequestError) else next(decided)
               for item in items]
    return await _answer(app, idem, {"results": results})


async def _answer(app: web.Application, idem: str | None, doc: dict[str, object]) -> web.Response:
    """The answer, stored first under the request's Idempotency-Key when it carried one."""
    if idem is None:
        return json_response(doc)
    body = orjson.dumps(doc)
    await remember_answer(app[REDIS], idem, body)
    return web.Response(body=body, content_type="application/json")


def _stored(body: bytes) -> web.Response:
    """A stored answer, sent again as it was (``Idempotent-Replayed`` says so)."""
    return web.Response(body=body, content_type="application/json", headers={"Idempotent-Replayed": "true"})


def _place_fields(body: dict[str, object]) -> tuple[str | None, str | None]:
    place_code, place_id = body.get("place_code"), body.get("place")
    if place_code is not None and not isinstance(place_code, str):
        raise BadRequestError("'place_code' must be a string")
    if place_id is not None and not isinstance(place_id, str):
        raise BadRequestError("'place' must be a string")
    return place_code, place_id


def _presented(
    raw: dict[str, object], principal: Principal, scanner: Scanner, what: str
) -> Presented:
    """One presentation: ``code`` or ``id_card`` (exactly one), and an optional ``temperature_c`` (issue 18).

    The identity card number is validated, hashed with the index's key and dropped here: it goes no further
    than this function (never into a log, a metric, an error detail or an answer).

    :raises ForbiddenError: ``id_card_not_allowed``, a device registered without the capability.
    :raises BadRequestError: ``invalid_id_card``, ``invalid_temperature``, or neither/both of code and id_card.
    """
    code, id_card, temperature = raw.get("code"), raw.get("id_card"), raw.get("temperature_c")
    if (code is None) == (id_card is None):
        raise BadRequestError(f"{what} needs exactly one of 'code' and 'id_card'")
    reading = None
    if temperature is not None:
        try:
            reading = check_temperature(temperature)
        except InvalidTemperatureError as exc:
            raise BadRequestError(str(exc), code=exc.code) from None
    if id_card is not None:
        if not principal.id_card or scanner.id_cards is None:
            raise ForbiddenError("this device may not present identity cards", code="id_card_not_allowed")
        if not isinstance(id_card, str):
            raise BadRequestError("'id_card' must be a string", code=InvalidIdCardError.code)
        try:
            number = normalise_id_card(id_card)
        except InvalidIdCardError as exc:
            raise BadRequestError("not a valid identity card number", code=exc.code) from None
        return Presentation(id_digest=scanner.id_cards.digest(number), temperature_c=reading)
    if not isinstance(code, str) or not code:
        raise BadRequestError("'code' must be a non-empty string")
    return code if reading is None else Presentation(code=code, temperature_c=reading)


def _single_fields(
    body: object, principal: Principal, scanner: Scanner
) -> tuple[Presented, str | None, str | None]:
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    if "id_card" not in body and "temperature_c" not in body:  # the common scan: a bare code
        code = body.get("code")
        if not isinstance(code, str) or not code:
            raise BadRequestError("'code' must be a non-empty string")
        return (code, *_place_fields(body))
    return (_presented(body, principal, scanner, "the body"), *_place_fields(body))


def _batch_fields(
    body: object, max_codes: int, principal: Principal, scanner: Scanner
) -> tuple[list[Presented | BadRequestError], str | None, str | None]:
    """The batch's items: a code's text, or an object like a single scan's body (``code`` or ``id_card``,
    ``temperature_c``). An item whose identity card or temperature is invalid gets its error in its place."""
    if not isinstance(body, dict):
        raise BadRequestError("body must be a JSON object")
    codes = body.get("codes")
    if not isinstance(codes, list) or not codes:
        raise BadRequestError("'codes' must be a non-empty list")
    if len(codes) > max_codes:
        raise BadRequestError(f"at most {max_codes} codes per batch")
    items: list[Presented | BadRequestError] = []
    for raw in codes:
        if isinstance(raw, str) and raw:
            items.append(raw)
        elif isinstance(raw, dict):
            try:
                items.append(_presented(raw, principal, scanner, "every item"))
            except BadRequestError as exc:
                if exc.instance_code == BadRequestError.code:
                    raise  # a request the client built wrong, not a reading or a card: the whole batch
                items.append(exc)
        else:
            raise BadRequestError("every code must be a non-empty string or an object")
    return (items, *_place_fields(body))
