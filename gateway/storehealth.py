"""Whether this worker can reach the store, and the way back when it could not.

The first failed or timed-out store call opens the breaker: from then on the scan path, the principal and place
caches and the trust lists stop asking Redis and answer from what the worker holds (operations.md "Degraded mode"), so
every degraded answer comes at once instead of after another timeout. A probe pings the store every
``probe_every_s`` through the scan path's own pipeline; its first answer closes the breaker and runs the recovery
callbacks (the scanner writes what waited: replay marks and log records).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from gateway.errors import StoreUnavailableError
from gateway.metrics import Metrics

__all__ = ["StoreHealth"]

log = logging.getLogger("placegate.store")

Probe = Callable[[], Awaitable[object]]


class StoreHealth:
    """The breaker in front of the store: ``available`` is False from the first failure until a probe answers."""

    def __init__(self, probe: Probe, *, probe_every_s: float, probe_timeout_s: float, metrics: Metrics) -> None:
        self._probe = probe
        self._every_s = probe_every_s
        self._timeout_s = probe_timeout_s
        self._metrics = metrics
        self._available = True
        self._down_since: float | None = None
        self._down = asyncio.Event()
        self._recovery: list[Callable[[], Awaitable[None]]] = []
        self.outages = 0  # breaker openings since start (tests and the log read it)

    @property
    def available(self) -> bool:
        return self._available

    def down_for_s(self) -> float:
        """Seconds since the breaker opened; 0 while the store is available."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    def failed(self, op: str) -> None:
        """A store call of ``op`` failed or timed out: answer degraded until the probe gets through."""
        if not self._available:
            return
        self._available = False
        self._down_since = time.monotonic()
        self.outages += 1
        self._metrics.degraded.set(1)
        self._down.set()
        log.warning("store unavailable (%s): answering in degraded mode until it is back", op)

    def on_recovery(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Run ``callback`` each time the store is back (after the breaker closed)."""
        self._recovery.append(callback)

    @contextlib.asynccontextmanager
    async def probing(self) -> AsyncIterator[None]:
        """Probe while the context is open (the app's core context)."""
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._run(stop))
        try:
            yield
        finally:
            stop.set()
            self._down.set()  # wake the loop so it sees the stop
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._down.wait()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._every_s)
            if stop.is_set():
                return
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._probe()
            except (StoreUnavailableError, TimeoutError):
                continue
            await self._recovered()

    async def _recovered(self) -> None:
        outage_s = self.down_for_s()
        self._available = True
        self._down_since = None
        self._down.clear()
        self._metrics.degraded.set(0)
        log.warning("store is back after %.1f s: answering normally", outage_s)
        for callback in self._recovery:
            try:
                await callback()
            except Exception as exc:  # one failed catch-up must not keep the others from running
                log.warning("catch-up after the outage failed (%s)", exc.__class__.__name__)
