"""Operational endpoints: liveness, readiness (Redis and trust list good) and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from gateway.http import json_response
from gateway.state import METRICS, STORE, TRUST_STATE

__all__ = ["healthz", "metrics", "readyz"]


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    redis_ok = await request.app[STORE].ping()
    trust = request.app[TRUST_STATE]
    trust_ok = trust.healthy and trust.usable_health_keys > 0
    ready = redis_ok and trust_ok
    body = {"ready": ready, "redis": redis_ok, "trust_list": trust_ok, "trust_version": trust.version}
    return json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
