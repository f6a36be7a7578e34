"""Work submitted during one event-loop turn, carried out together by one task for the whole turn.

Why one task: a request handler runs about ten coroutine frames deep (aiohttp's protocol, the middleware, the
auth guard, the route, the scanner), and every suspension and resumption of that task walks the whole chain. On
this machine one more await on a future costs about 1.4 µs in a bare task and 4.9 µs nine frames down
(docs/performance.md). A scan waits three times (the turn's verifications, the Redis lookup group, the Redis
record group); when each handler did its own waiting, the scan cost about 130 µs of CPU, and with one shallow
task per turn going through the phases for every request of the turn, while each handler waits once on its own
future, about 120 µs.

Why per turn: the 64 scans in flight arrive together (one epoll wake-up reads many requests). Checking all their
signatures back to back keeps OpenSSL's P-256 working set (its precomputed multiples of the base point alone are
about 150 KB) warm in the CPU caches: 62 µs per code inline against 57.5 µs per code in a run of about 13.

The first submission of a turn creates the task; its first step runs after every handler already woken in that
turn has made its own submission (the same ``call_soon`` ordering ``gateway.redisio.CommandBatcher`` uses).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["TurnTask"]

G = TypeVar("G")
R = TypeVar("R")


class TurnTask(Generic[G, R]):
    """Runs ``work`` once per loop turn on every group submitted in that turn.

    ``work`` answers one result per group, in order; an ``Exception`` in place of a result fails that group's
    caller only. An exception raised by ``work`` itself fails every caller of the turn.
    """

    __slots__ = ("_pending", "_starter", "_tasks", "_work", "groups", "runs")

    def __init__(self, work: Callable[[list[G]], Awaitable[Sequence[R | Exception]]]) -> None:
        self._work = work
        self._pending: list[tuple[G, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks
        self._starter: asyncio.Task[None] | None = None  # the task that will take the pending submissions
        self.runs = 0  # turns that ran (tests and benchmarks read these)
        self.groups = 0

    def submit(self, group: G) -> asyncio.Future[R]:
        """The future gets this group's result, or its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        # A starter that ended without running (its loop was closed first) must not strand later submissions.
        if self._starter is None or self._starter.done():
            task = self._starter = loop.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._pending.append((group, future))
        return future

    async def _run(self) -> None:
        # The task's first step runs after this turn's submissions: take them all, and let the next turn's
        # first submission start the next task.
        batch, self._pending, self._starter = self._pending, [], None
        # Skipped: cancelled callers, and submissions stranded by a loop that closed before its turn ran.
        loop = asyncio.get_running_loop()
        live = [(group, future) for group, future in batch if not future.done() and future.get_loop() is loop]
        if not live:
            return
        self.runs += 1
        self.groups += len(live)
        try:
            results = await self._work([group for group, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"{len(results)} results for {len(live)} groups")
        except asyncio.CancelledError:
            for _, future in live:
                future.cancel()
            raise
        except Exception as exc:  # a defect must not strand the turn's callers: each gets the error
            for _, future in live:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(live, results, strict=True):  # lengths checked above
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def aclose(self) -> None:
        """Wait for the turns still running (a clean shutdown answers every request it accepted)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
