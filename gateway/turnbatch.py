"""CPU work submitted during one event-loop turn, run back to back at the end of that turn.

Why: the 64 scans in flight arrive together (one epoll wake-up reads many requests) and each used to verify its
signature in the middle of its own HTTP handling. OpenSSL's P-256 verification has a working set (its
precomputed multiples of the base point alone are about 150 KB) that the Python work between two verifications
evicts from the CPU caches; verifying every code of a turn in one run keeps it warmer. In the in-process wrk
run of the full scan path (docs/performance.md), the verification step (decode, key, signature, lifetime) took
62 µs per code inline and 57.5 µs through this batcher (about 13 requests per run), against 52 µs in a tight
loop; the whole scan went from about 139 to 133 µs of CPU per request.

The mechanism is the one ``gateway.redisio.CommandBatcher`` uses for Redis commands: the first submission of a
turn schedules one ``call_soon`` callback, which runs after every handler already woken in that turn has reached
its own submission.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TurnBatcher"]

G = TypeVar("G")
R = TypeVar("R")


class TurnBatcher(Generic[G, R]):
    """Runs ``work`` on each group submitted in one loop turn, every group of the turn in one callback."""

    __slots__ = ("_pending", "_work", "groups", "runs")

    def __init__(self, work: Callable[[G], R]) -> None:
        self._work = work
        self._pending: list[tuple[G, asyncio.Future[R]]] = []
        self.runs = 0  # callbacks that ran (tests and benchmarks read these)
        self.groups = 0

    def submit(self, group: G) -> asyncio.Future[R]:
        """The future gets ``work(group)``, or the exception it raised (which fails this group only)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._run)
        self._pending.append((group, future))
        return future

    def _run(self) -> None:
        batch, self._pending = self._pending, []
        self.runs += 1
        self.groups += len(batch)
        work = self._work
        for group, future in batch:
            if future.done():  # the caller went away (cancelled): nobody wants this group's result
                continue
            try:
                result = work(group)
            except Exception as exc:  # a defect in one group must not strand the others' callers
                future.set_exception(exc)
            else:
                future.set_result(result)
