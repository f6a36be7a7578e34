"""Typed application state (``web.AppKey``) and the short-lived place cache."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.metrics import Metrics
from gateway.registry import Place, Registry
from gateway.scan import Scanner
from gateway.settings import Settings
from gateway.store import Store

__all__ = ["METRICS", "PLACES", "REGISTRY", "SCANNER", "SETTINGS", "STORE", "TRUST_STATE", "PlaceCache", "TrustState"]


class PlaceCache:
    """Place registry lookups, cached for a few seconds (places change rarely; scans are many)."""

    def __init__(self, registry: Registry, ttl_s: float) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Place | None]] = {}

    async def get(self, place_id: str) -> Place | None:
        now = time.monotonic()
        hit = self._entries.get(place_id)
        if hit is not None and hit[0] >= now:
            return hit[1]
        place = await self._registry.get_place(place_id)
        if len(self._entries) > 100_000:
            self._entries.clear()
        self._entries[place_id] = (now + self._ttl_s, place)
        return place


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
