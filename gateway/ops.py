"""Operational endpoints: liveness, readiness (Redis and trust list good) and Prometheus metrics."""

from __future__ import annotations

from aiohttp import web

from gateway.appstate import BATCHER, HEALTH, METRICS
from gateway.errors import StoreUnavailableError
from gateway.http import json_response
from gateway.trust.state import TRUST_STATE

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


# Readiness answers within a second even when the store hangs: a load balancer's probe must not pile up.
_READY_PING_S = 0.5


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when the store answers and a usable trust list is loaded; otherwise 503 and the reasons."""
    app = request.app
    health = app[HEALTH]
    redis_ok = health.available
    if redis_ok:
        try:
            await app[BATCHER].run((("PING",),), _READY_PING_S)  # the scan path's own pipeline
        except StoreUnavailableError:
            redis_ok = False
            health.failed("readiness ping")
    trust = app[TRUST_STATE]
    reasons = []
    if not redis_ok:
        reasons.append("store_unavailable")  # scans answer in degraded mode meanwhile
    if not trust.healthy:
        reasons.append("trust_list_not_loaded")
    elif trust.usable_health_keys == 0:
        reasons.append("no_usable_health_key")
    body = {
        "ready": not reasons, "redis": redis_ok, "trust_list": trust.healthy and trust.usable_health_keys > 0,
        "trust_version": trust.version, "degraded": not health.available, "reasons": reasons,
    }  # fmt: skip
    return json_response(body, status=503 if reasons else 200)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )
