"""Typed application state (``web.AppKey``) and the short-lived place cache."""

from __future__ import annotations

from aiohttp import web

from gateway.metrics import Metrics
from gateway.scan.scanner import Scanner
from gateway.scan.store import Store
from gateway.settings import Settings
from gateway.trust.registry import Place, Registry
from gateway.ttlcache import TtlCache

__all__ = ["METRICS", "PLACES", "REGISTRY", "SCANNER", "SETTINGS", "STORE", "TRUST_STATE", "PlaceCache", "TrustState"]


class PlaceCache:
    """Place registry lookups, cached for a few seconds (places change rarely; scans are many)."""

    def __init__(self, registry: Registry, ttl_s: float) -> None:
        self._cache: TtlCache[Place | None] = TtlCache(registry.get_place, ttl_s)

    async def get(self, place_id: str) -> Place | None:
        return await self._cache.get(place_id)


class TrustState:
    """Which trust-list version this worker holds and whether the last refresh worked."""

    def __init__(self) -> None:
        self.version = -1
        self.healthy = False
        self.usable_health_keys = 0


SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
SCANNER: web.AppKey[Scanner] = web.AppKey("scanner", Scanner)
PLACES: web.AppKey[PlaceCache] = web.AppKey("places", PlaceCache)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
TRUST_STATE: web.AppKey[TrustState] = web.AppKey("trust_state", TrustState)
