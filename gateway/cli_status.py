"""`placegate status load FILE`: bulk-load health-authority statuses (JSON lines), pipelined, with progress."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.status_feed import parse_status_lines
from gateway.store import Store

__all__ = ["READ_BYTES", "WINDOW", "load_file", "register"]

READ_BYTES = 1 << 17  # one parse window: about 14,000 lines of a typical feed
# Records grouped by bucket per write. Larger windows touch each bucket fewer times (65,536 buckets: about 4
# records per bucket per window at 250,000) but hold more memory (~150 B a record) and delay the first write.
WINDOW = 250_000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser("status", help="health-authority status cache")
    ssub = status.add_subparsers(dest="status_cmd", required=True)
    load = ssub.add_parser("load", help="load statuses from a JSON-lines file (one record per line)")
    load.add_argument("file", type=Path)
    load.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common_args(load)
    load.set_defaults(func=_load)


class _Progress:
    """A one-line progress bar on stderr (by bytes read, so the file need not be counted first)."""

    def __init__(self, total_bytes: int, enabled: bool) -> None:
        self.total = max(1, total_bytes)
        self.enabled = enabled
        self.started = time.perf_counter()
        self.last = 0.0

    def show(self, done_bytes: int, records: int, *, final: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not final and now - self.last < 0.2):
            return
        self.last = now
        frac = min(1.0, done_bytes / self.total)
        bar = "#" * int(frac * 30)
        rate = records / max(1e-9, now - self.started)
        sys.stderr.write(f"\r[{bar:<30}] {frac:6.1%} {records:>10,} records {rate:>10,.0f}/s")
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def load_file(store: Store, path: Path, *, progress: bool = True, window: int = WINDOW) -> dict[str, int]:
    """Parse and upsert every line; bad lines are counted and reported by line number, never fatal.

    Records are grouped by bucket over a window of ``window`` records, so the server touches each bucket once
    per window (gateway/status_writer.py). A holder twice in one window is written once (the newest
    ``updated_at``, on a tie the earlier line); the other line counts as stale. Parsing the next window overlaps
    with Redis applying the previous one (one window in flight).
    """
    counts = {"applied": 0, "stale": 0, "rejected": 0}
    bar = _Progress(path.stat().st_size, progress)
    now_s = int(datetime.now(UTC).timestamp())
    writer = store.status_writer()
    batch = writer.batch()
    in_flight: asyncio.Task[tuple[int, int]] | None = None

    async def settle() -> None:
        nonlocal in_flight
        if in_flight is not None:
            applied, stale = await in_flight
            counts["applied"] += applied
            counts["stale"] += stale
            in_flight = None

    lineno = 1  # of the first line in ``lines``
    done = 0
    rest = b""
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(READ_BYTES)
            done += len(chunk)
            if chunk:
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()  # the line the next read completes
            else:
                lines, rest = ([rest] if rest else []), b""
            holders, values, errors = parse_status_lines(lines, now_s=now_s)
            for i, code in errors:
                counts["rejected"] += 1
                if counts["rejected"] <= 20:
                    sys.stderr.write(f"\nline {lineno + i}: {code}")
            lineno += len(lines)
            batch.add(holders, values)
            if len(batch) >= window or (not chunk and len(batch)):
                await settle()
                in_flight = asyncio.create_task(writer.apply(batch))
                batch = writer.batch()
            bar.show(done, counts["applied"] + counts["stale"])
            if not chunk:
                break
            await asyncio.sleep(0)  # lets the in-flight window be sent and answered meanwhile
    await settle()
    bar.show(done, counts["applied"] + counts["stale"], final=True)
    return counts


def _load(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args).with_secret()
        assert settings.secret is not None
        started = time.perf_counter()
        async with admin_redis(settings) as redis:
            store = Store(redis, secret=settings.secret.reveal(), status_buckets=settings.status_buckets,
                          status_ttl_s=settings.status_ttl_s)
            try:
                counts = await load_file(store, args.file, progress=not args.quiet)
            finally:
                await store.aclose()
        elapsed = time.perf_counter() - started
        total = counts["applied"] + counts["stale"]
        print(f"applied={counts['applied']} stale={counts['stale']} rejected={counts['rejected']} "
              f"seconds={elapsed:.2f} rate={total / max(elapsed, 1e-9):,.0f}/s")
        return 0 if counts["rejected"] == 0 else 1

    return run(go())
