"""The scan feature's typed application state."""

from __future__ import annotations

from aiohttp import web

from gateway.scan.places import PlaceResolver
from gateway.scan.scanner import Scanner
from gateway.scan.store import ScanStore

__all__ = ["PLACE_RESOLVER", "SCANNER", "SCAN_STORE"]

SCANNER: web.AppKey[Scanner] = web.AppKey("scanner", Scanner)
SCAN_STORE: web.AppKey[ScanStore] = web.AppKey("scan_store", ScanStore)
PLACE_RESOLVER: web.AppKey[PlaceResolver] = web.AppKey("place_resolver", PlaceResolver)
