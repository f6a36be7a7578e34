"""CPU cost of one dispatch sweeper pass with many open cases and few due ones (issue 13, point 8).

    python -m bench.sweep [--open 100000] [--due 100] [--passes 7]

Starts a private server (as the test suite does: the embedded binary, persistence off, a unix socket in a temp dir),
writes ``--open`` dispatched cases with the case store's own scripts (``CaseStore.write_unacknowledged``: the same
case script and due-index script as ``CaseStore.write``, batched, without WAITAOF on a server without AOF), of
which ``--due`` passed their 1 h dispatch deadline a minute ago, and measures ``time.process_time()`` around
``sweep_open_cases`` — this process's CPU, not the server's. Before every measured pass the due cases are written
anew (not measured), so each pass finds ``--due`` cases to flag. Also measured once: the daily check of the open
set against the due index (``DUE_RECONCILE_S``), which does read every open id.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway import keyspace
from gateway.dispatch.store import CaseStore
from gateway.dispatch.worker import SYSTEM_ACTOR, sweep_open_cases
from gateway.embedded import EmbeddedServer
from gateway.redisio import connect_redis
from policy.casework import Action, Actor, Case, Role, apply_transition, new_case
from policy.deadlines import load_default_deadline_table
from policy.routing import EventClass

DEADLINES = load_default_deadline_table()


def _dispatched(i: int, at: datetime) -> Case:
    case = new_case(case_id=f"c{i:020x}", event_class=EventClass.STATUS_RED, place_id="bench-place",
                    jurisdiction=("city", "d1", "s1", "g1", "c1"), department="s1-clinic",
                    actor=Actor("bench", Role.SOURCE), now=at, deadlines=DEADLINES)  # fmt: skip
    for action in (Action.ACCEPT, Action.FILE, Action.DISPATCH):
        case = apply_transition(case, action, actor=SYSTEM_ACTOR, now=at, deadlines=DEADLINES)
    return case


async def _fill(store: CaseStore, cases: Sequence[Case]) -> None:
    """Write ``cases`` new, with the store's own scripts and indexes (batched: ``write_unacknowledged``)."""
    for i in range(0, len(cases), 1000):
        batch = cases[i : i + 1000]
        await store.redis.delete(*(keyspace.case_key(c.case_id) for c in batch),
                                 *(keyspace.case_history_key(c.case_id) for c in batch))  # fmt: skip
        assert all(await store.write_unacknowledged([(None, c) for c in batch]))


async def run(open_cases: int, due: int, passes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pg-bench-sweep-") as tmp:
        server = EmbeddedServer(Path(tmp) / "redis", persistent=False).start()
        try:
            redis = connect_redis(server.url)
            store = CaseStore(redis)
            now = datetime.now(UTC).replace(microsecond=0)
            due_cases = [_dispatched(i, now - timedelta(hours=1, minutes=1)) for i in range(due)]
            started = time.perf_counter()
            await _fill(store, [_dispatched(i, now) for i in range(due, open_cases)] + due_cases)
            fill_s = time.perf_counter() - started
            cpu = time.process_time()
            first = await sweep_open_cases(store, now=now)  # includes the daily check of the open set
            check_ms = (time.process_time() - cpu) * 1000
            assert first.flagged == due, first
            samples: list[float] = []
            for _ in range(passes):
                await _fill(store, due_cases)
                cpu = time.process_time()
                report = await sweep_open_cases(store, now=now)
                samples.append((time.process_time() - cpu) * 1000)
                assert (report.checked, report.flagged) == (due, due), report
            await redis.aclose()
        finally:
            server.stop()
    return {
        "fill_s": fill_s,
        "first_pass_with_check_cpu_ms": check_ms,
        "pass_cpu_ms_median": statistics.median(samples),
        "pass_cpu_ms_min": min(samples),
        "pass_cpu_ms_max": max(samples),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--open", type=int, default=100_000, help="open cases (default 100000)")
    parser.add_argument("--due", type=int, default=100, help="of which due (default 100)")
    parser.add_argument("--passes", type=int, default=7, help="measured passes (default 7)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.open, args.due, args.passes))
    print(f"open={args.open} due={args.due} passes={args.passes} (filled in {result['fill_s']:.1f} s)")
    print(f"one pass: median {result['pass_cpu_ms_median']:.1f} ms CPU "
          f"(min {result['pass_cpu_ms_min']:.1f}, max {result['pass_cpu_ms_max']:.1f})")  # fmt: skip
    print(f"first pass, with the daily check of the open set: {result['first_pass_with_check_cpu_ms']:.1f} ms CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
