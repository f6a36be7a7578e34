"""The dispatch backlog as gauges, sampled from the store every ``Settings.store_gauges_s``.

Open cases, intake entries, events delivered but not yet acknowledged, and dead letters: what an operator
watches to see the dispatch core falling behind (ops/prometheus/alerts.yml). Counts only, no labels: nothing
about a case or a holder reaches /metrics. Every worker samples (a few O(1) reads); under ``--workers N`` the
most recent live value is reported.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway import keyspace
from gateway.dispatch.worker import GROUP
from gateway.metrics import Metrics
from gateway.redisio import redis_errors

__all__ = ["sample_backlog"]


async def sample_backlog(redis: Redis, metrics: Metrics) -> None:
    """One sample of every dispatch gauge. :raises StoreUnavailableError: the store did not answer."""
    with redis_errors("dispatch gauges"):
        pipe = redis.pipeline(transaction=False)
        pipe.scard(keyspace.DISPATCH_OPEN)
        pipe.xlen(keyspace.DISPATCH_INTAKE)
        pipe.xlen(keyspace.DISPATCH_DEADLETTER)
        pipe.xpending(keyspace.DISPATCH_INTAKE, GROUP)
        results = await pipe.execute(raise_on_error=False)
    open_cases, intake, dead, pending = results
    metrics.dispatch_open.set(_count(open_cases))
    metrics.dispatch_intake.set(_count(intake))
    metrics.dispatch_dead_letters.set(_count(dead))
    # No group yet (a fresh store whose worker has not started): nothing is pending.
    metrics.dispatch_pending.set(0 if isinstance(pending, ResponseError) else int(pending.get("pending", 0)))


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0
