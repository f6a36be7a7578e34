"""Typed application state every feature may read (``web.AppKey``): settings, metrics, the Redis client, the
command batcher, the store's health, the admission rules and the clock. Each feature keeps its own keys in its
own folder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from redis.asyncio import Redis

from gateway.batcher import CommandBatcher
from gateway.logjson import AccessLog
from gateway.metrics import Metrics
from gateway.settings import Settings
from gateway.storehealth import StoreHealth
from policy.rules import Rules

__all__ = ["ACCESS_LOG", "BATCHER", "CLOCK", "HEALTH", "METRICS", "REDIS", "RULES", "SETTINGS", "Clock"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Clock:
    """The time every route reads; one object per app so that tests can move it (code validity, list ages)."""

    __slots__ = ("now",)

    def __init__(self, now: Callable[[], datetime] = _utcnow) -> None:
        self.now = now


SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
REDIS: web.AppKey[Redis] = web.AppKey("redis", Redis)
# One batcher per process: the scan path and the status feed share its pipeline (gateway/batcher.py).
BATCHER: web.AppKey[CommandBatcher] = web.AppKey("batcher", CommandBatcher)
RULES: web.AppKey[Rules] = web.AppKey("rules", Rules)
CLOCK: web.AppKey[Clock] = web.AppKey("clock", Clock)
# Whether the store answers; the breaker every Redis-backed read on the request path consults first.
HEALTH: web.AppKey[StoreHealth] = web.AppKey("health", StoreHealth)
# The access log (gateway/logjson.py); absent when ``Settings.access_log`` is off.
ACCESS_LOG: web.AppKey[AccessLog] = web.AppKey("access_log", AccessLog)
