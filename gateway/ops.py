"""Operational endpoints: liveness, readiness (the store and every trust list the configuration needs) and
Prometheus metrics (behind a token, or for loopback peers only)."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from gateway.appstate import BATCHER, CLOCK, HEALTH, METRICS, RULES, SETTINGS
from gateway.errors import AuthError, ForbiddenError, StoreUnavailableError
from gateway.http import json_response
from gateway.principals import secrets_equal
from gateway.trust.dsc import Freshness
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
    required = app[SETTINGS].ready_trust_list_names()
    reasons = []
    if not redis_ok:
        reasons.append("store_unavailable")  # scans answer in degraded mode meanwhile
    if "native" in required:
        if not trust.healthy:
            reasons.append("trust_list_not_loaded")
        elif trust.usable_health_keys == 0:
            reasons.append("no_usable_health_key")
    dsc = "not_required"
    if "dsc" in required:
        # Without a signer list every EU DCC is refused; past its fail age likewise (gateway/trust/dsc.py).
        if trust.dsc_imported_at is None:
            dsc = "not_imported"
            reasons.append("dsc_list_not_imported")
        else:
            fresh = trust.freshness("dsc", app[CLOCK].now())
            dsc = fresh.value
            if fresh is Freshness.STALE:
                reasons.append("dsc_list_stale")
    # EU DCC value sets: shown always (version, age), required only when PLACEGATE_READY_TRUST_LISTS names them.
    valuesets: dict[str, object] = {"version": max(trust.valuesets_version, 0), "sets": len(trust.valuesets.sets),
                                    "imported_at": None if trust.valuesets_imported_at is None
                                    else trust.valuesets_imported_at.isoformat()}
    if "valuesets" in required and trust.valuesets_imported_at is None:
        reasons.append("valuesets_not_imported")
    # EU DCC rule sets the rules file names but nobody imported: shown, not a reason to leave the load balancer
    # (native codes still work; each HC1 code at such a class is denied dcc_rules_unavailable).
    named = {rule.dcc_rule_set for rule in app[RULES].classes.values() if rule.dcc_rule_set is not None}
    dcc_rules = {"version": max(trust.dcc_rules_version, 0), "sets": sorted(trust.dcc_rule_sets),
                 "missing": sorted(named - set(trust.dcc_rule_sets))}
    body = {
        "ready": not reasons, "redis": redis_ok, "trust_list": trust.healthy and trust.usable_health_keys > 0,
        "trust_version": trust.version, "dsc_list": dsc, "valuesets": valuesets, "dcc_rules": dcc_rules,
        "degraded": not health.available,
        "reasons": reasons,
    }  # fmt: skip
    return json_response(body, status=503 if reasons else 200)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """The Prometheus text. With ``metrics_token`` set a bearer token is required; without one only a loopback
    peer is answered (the counters show decisions as they happen, so they are not for everyone)."""
    token = request.app[SETTINGS].metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets_equal(given.strip().lower(), token.reveal().hex()):
            raise AuthError("metrics token required", code="missing_token" if not given else "invalid_token")
    elif not _loopback(request.remote):
        raise ForbiddenError("set PLACEGATE_METRICS_TOKEN to scrape from another host")
    return web.Response(
        body=request.app[METRICS].render(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


def _loopback(remote: str | None) -> bool:
    if remote == "":
        return True  # a unix-socket peer has no address: it is on this host
    if remote is None:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False
