"""The baseline: a bare aiohttp JSON POST handler on the same event loop (uvloop) and JSON library (orjson)
as the gateway, with no auth, crypto or Redis. ``python -m bench.bare --port P``."""

from __future__ import annotations

import argparse
import asyncio

import orjson
import uvloop
from aiohttp import web

__all__ = ["create_bare_app", "main"]


async def _echo(request: web.Request) -> web.Response:
    body = orjson.loads(await request.read())
    answer = {"decision": "admit", "reason": "ok", "length": len(body.get("code") or body.get("codes") or "")}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def create_bare_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/{tail:.*}", _echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    web.run_app(create_bare_app(), host=args.host, port=args.port, loop=loop, access_log=None, print=None)


if __name__ == "__main__":
    main()
