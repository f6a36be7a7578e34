"""Operational endpoints: liveness, readiness (Redis and trust list good) and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from gateway.appstate import METRICS, REDIS
from gateway.errors import StoreUnavailableError
from gateway.http import json_response
from gateway.redisio import redis_errors
from gateway.trust.state import TRUST_STATE

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        with redis_errors("redis"):
            redis_ok = bool(await request.app[REDIS].ping())
    except StoreUnavailableError:  # readiness answers "no" rather than failing
        redis_ok = False
    trust = request.app[TRUST_STATE]
    trust_ok = trust.healthy and trust.usable_health_keys > 0
    ready = redis_ok and trust_ok
    body = {"ready": ready, "redis": redis_ok, "trust_list": trust_ok, "trust_version": trust.version}
    return json_response(body, status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
