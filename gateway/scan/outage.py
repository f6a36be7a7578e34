"""What a worker remembers while the store cannot be asked (docs/operations.md "Degraded mode").

Replay memory: where each code this worker saw was first presented, until the code expires (before an outage
too: a code admitted just before it must not be new again during it), so its second presentation is ``replayed``
(or ``code_shared`` elsewhere) even while Redis cannot be asked. Pending writes:
the scans answered meanwhile, whose log records, intake events and replay marks are written once the store is
back, so a code admitted during the outage is ``replayed`` after it too. Both are bounded: the oldest codes are
forgotten first and the oldest pending scans dropped first, each drop counted.

Held in this process's memory only (never on disk, never logged): a pending scan carries the holder reference its
record will be pseudonymised from, as the scan path does for any scan until its record is written.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

from gateway.metrics import Metrics

__all__ = ["OutageMemory"]

T = TypeVar("T")


class OutageMemory(Generic[T]):
    """The in-process replay memory and the queue of scans waiting for the store."""

    def __init__(self, *, max_codes: int, max_pending: int, metrics: Metrics) -> None:
        self._max_codes = max_codes
        self._max_pending = max_pending
        self._metrics = metrics
        self._codes: dict[str, tuple[str, float]] = {}  # replay key -> (first place, forget at, monotonic)
        self._pending: deque[T] = deque()
        self.dropped = 0

    def first_place(self, key: str, place_id: str, ttl_s: int) -> str | None:
        """Where the code under ``key`` was first presented during the outage; remembers ``place_id`` when it is
        new. ``None``: first presentation."""
        now = time.monotonic()
        seen = self._codes.get(key)
        if seen is not None and seen[1] > now:
            return seen[0]
        if len(self._codes) >= self._max_codes:
            self._forget(now)
        self._codes[key] = (place_id, now + max(1, ttl_s))
        return None

    def _forget(self, now: float) -> None:
        """Drop the expired codes, then the oldest down to 90 % of the bound (insertion order is age order), so a
        memory full of live codes is not scanned again on every insert."""
        for key in [k for k, (_, until) in self._codes.items() if until <= now]:
            del self._codes[key]
        target = self._max_codes * 9 // 10
        while len(self._codes) > target:
            del self._codes[next(iter(self._codes))]

    def defer(self, items: Sequence[T]) -> None:
        """Keep scans whose writes could not be made; past the bound the oldest are dropped and counted."""
        self._pending.extend(items)
        overflow = len(self._pending) - self._max_pending
        if overflow > 0:
            for _ in range(overflow):
                self._pending.popleft()
            self.dropped += overflow
            self._metrics.degraded_dropped.inc(overflow)
        self._metrics.degraded_queue.set(len(self._pending))

    def take(self, count: int) -> list[T]:
        """Up to ``count`` waiting scans, oldest first."""
        taken = [self._pending.popleft() for _ in range(min(count, len(self._pending)))]
        self._metrics.degraded_queue.set(len(self._pending))
        return taken

    def __len__(self) -> int:
        return len(self._pending)
