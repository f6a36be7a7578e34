"""A multi-code scan's signature checks on threads beside the event loop (issue 19, point 3).

``cryptography`` releases the GIL while OpenSSL verifies a signature, so with a free core a second thread checks
one part of a turnstile bank's batch while the loop thread checks the rest: measured on the benchmark machine,
58 µs per ES256 verification on one thread, 34-36 µs on a 2-thread pool. A single code never goes to a thread:
the hand-off (a queue, a wake-up, a future resolved back on the loop) costs more than one verification saves.

``VerifyPool`` owns the threads (the scan feature's cleanup context opens and closes it); the scanner decides
what to hand over (``gateway/scan/scanner.py``, ``Scanner._verify_offloaded``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

__all__ = ["AUTO_MAX_THREADS", "THREAD_PREFIX", "VerifyPool", "verify_threads"]

# ``auto`` never sizes beyond this: past a few threads the parts of a verification that hold the GIL (base45,
# CBOR, the DER signature) are the limit, not OpenSSL.
AUTO_MAX_THREADS = 4
THREAD_PREFIX = "placegate-verify"
T = TypeVar("T")


def verify_threads(setting: int | Literal["auto"], *, workers: int, cores: int | None = None) -> int:
    """The pool size for ``PLACEGATE_VERIFY_THREADS``: the setting itself, or for ``auto`` the cores this process
    may run on shared among the served workers (``serve --workers N`` passes N in ``Settings.workers`` to every
    worker process), minus the loop thread's own, at least 0 and at most ``AUTO_MAX_THREADS``.

    :param cores: the cores this process may run on; ``None``: its CPU affinity.
    """
    if setting != "auto":
        return setting
    if cores is None:
        cores = usable_cores()
    return max(0, min(AUTO_MAX_THREADS, cores // max(1, workers) - 1))


def usable_cores() -> int:
    """The cores this process may run on: its affinity (a container's cpuset, a ``taskset``), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - no sched_getaffinity outside Linux
        return os.cpu_count() or 1


class VerifyPool:
    """Named threads for signature checks; ``ran_on`` keeps the names of the threads that did some (the tests read
    it: it is set from the name each thread reports, not from what was submitted)."""

    __slots__ = ("_executor", "ran_on", "threads")

    def __init__(self, threads: int) -> None:
        if threads < 1:
            raise ValueError("a verify pool needs at least one thread")
        self.threads = threads
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=THREAD_PREFIX)
        self.ran_on: set[str] = set()

    def submit(self, work: Callable[[], T]) -> asyncio.Future[tuple[T, str]]:
        """Run ``work`` on a pool thread; the future gets its result and the thread's name."""
        return asyncio.get_running_loop().run_in_executor(self._executor, _named, work)

    def close(self) -> None:
        """Wait for the checks still running, then end the threads (a clean shutdown leaves none behind)."""
        self._executor.shutdown(wait=True)


def _named(work: Callable[[], T]) -> tuple[T, str]:
    return work(), threading.current_thread().name
