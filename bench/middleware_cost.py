"""What observing every answer costs a request (gateway/observe.py), in-process: ``python -m bench.middleware_cost``.

Three figures, best of 7 timeit runs of 200,000 calls each: a trivial handler called directly, through the
observing middleware with the access log off (request id, counter, latency histogram), and with the JSON access
log on (one ``orjson`` line per answer, written per loop turn; here to /dev/null). The extra coroutine layer is
included; aiohttp builds the middleware chain once per handler, not per request. No Redis, no server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import timeit
from functools import partial

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.app import create_app
from gateway.appstate import ACCESS_LOG
from gateway.logjson import AccessLog
from gateway.observe import count_answers
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


async def _request(*, access_log: bool) -> web.Request:
    app = create_app(Settings(secret=Secret(bytes(32)), access_log=access_log))
    request = make_mocked_request("POST", "/v1/scan", app=app)
    match_info = await app.router.resolve(request)
    match_info.add_app(app)
    request._match_info = match_info  # as aiohttp's Application._handle sets it (the helper's is a Mock route)
    assert request.match_info.route.resource is not None
    return request


async def _measure() -> tuple[float, float, float]:
    quiet, logged = await _request(access_log=False), await _request(access_log=True)
    sink = open(os.devnull, "wb")  # noqa: SIM115 - closed below; the log's lines go nowhere
    access = logged.app[ACCESS_LOG]
    access.stream = sink
    try:
        direct = _best(partial(_drive, partial(_handler, quiet)))
        observed = _best(partial(_drive, partial(count_answers, quiet, handler=_handler)))
        with_log = _best(partial(_drive, partial(_logged, access, logged)))
    finally:
        sink.close()
    return direct, observed, with_log


def _logged(access: AccessLog, request: web.Request) -> object:
    # The loop never turns inside timeit: flush as the turn's callback would, every 64 answers.
    if len(access._lines) >= 64:
        access.flush()
    return count_answers(request, handler=_handler)


def main() -> None:
    direct, observed, with_log = asyncio.run(_measure())
    print(f"handler, direct                  {direct:.3f} µs/request")
    print(f"+ middleware, access log off     {observed:.3f} µs/request  (+{observed - direct:.3f})")
    print(f"+ middleware, JSON access log    {with_log:.3f} µs/request  (+{with_log - direct:.3f})")


if __name__ == "__main__":
    main()
