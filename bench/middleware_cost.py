"""What counting every answer costs a request (gateway/observe.py), in-process: ``python -m bench.middleware_cost``.

Three figures, best of 7 timeit runs of 200,000 calls each: the count alone (route template, cached labelled
child, ``inc``), and a trivial handler called directly and through the counting middleware (the extra coroutine
layer included; aiohttp builds the middleware chain once per handler, not per request). No Redis, no server.
"""

from __future__ import annotations

import asyncio
import contextlib
import timeit
from functools import partial

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.app import create_app
from gateway.observe import _count, count_answers
from gateway.settings import Secret, Settings

_N = 200_000
_RESPONSE = web.Response()


async def _handler(request: web.Request) -> web.StreamResponse:
    return _RESPONSE


def _drive(make: partial[object]) -> None:
    with contextlib.suppress(StopIteration):  # a handler that never waits finishes on its first step
        make().send(None)  # type: ignore[attr-defined]


def _best(stmt: partial[object]) -> float:
    """Microseconds per call, best of 7."""
    return min(timeit.repeat(stmt, number=_N, repeat=7)) / _N * 1e6


async def _request() -> web.Request:
    app = create_app(Settings(secret=Secret(bytes(32))))
    request = make_mocked_request("POST", "/v1/scan", app=app)
    match_info = await app.router.resolve(request)
    match_info.add_app(app)
    request._match_info = match_info  # as aiohttp's Application._handle sets it (the helper's is a Mock route)
    assert request.match_info.route.resource is not None
    return request


def main() -> None:
    request = asyncio.run(_request())
    count = _best(partial(_count, request, 200))
    direct = _best(partial(_drive, partial(_handler, request)))
    wrapped = _best(partial(_drive, partial(count_answers, request, handler=_handler)))
    print(f"count alone            {count:.3f} µs/request")
    print(f"handler, direct        {direct:.3f} µs/request")
    print(f"handler + middleware   {wrapped:.3f} µs/request  (+{wrapped - direct:.3f})")


if __name__ == "__main__":
    main()
