"""`placegate status load FILE`: bulk-load health-authority statuses (JSON lines), pipelined, with progress."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.status.feed import parse_status_lines
from gateway.status.writer import StatusWriter

__all__ = ["READ_BYTES", "WINDOW", "load_file", "register"]

READ_BYTES = 1 << 17  # one parse window (~1,000 lines): the event loop runs between two, so the write drains
# Records grouped by bucket per write. A larger window touches each bucket fewer times (65,536 buckets: about 4
# records a bucket at 250,000; the server pays ~3 µs a bucket touched, ~0.5 µs a record) but holds ~80 B a record
# on the client, and the first window's parse and the last one's write do not overlap anything. A whole city
# feed (25 M lines) in one window would hold ~2 GB. Measured at 1,000,000 lines: 125,000 loads ~10 % slower,
# 500,000 the same as 250,000 with less Redis CPU (docs/performance.md, "Status cache").
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


def _read_lines(handle: BinaryIO) -> Iterator[tuple[int, list[bytes]]]:
    """(bytes read so far, the complete lines of the next ``READ_BYTES``); the last line may lack its newline."""
    done = 0
    rest = b""
    while chunk := handle.read(READ_BYTES):
        done += len(chunk)
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()  # completed by the next read
        yield done, lines
    if rest:
        yield done, [rest]


async def load_file(writer: StatusWriter, path: Path, *, progress: bool = True, window: int = WINDOW) -> dict[str, int]:
    """Parse and upsert every line; bad lines are counted and reported by line number, never fatal.

    Records are grouped by bucket over a window of ``window`` records, so the server touches each bucket once
    per window (gateway/status/writer.py). The records of one holder are decided in file order: the newest
    ``updated_at`` wins whatever the order, an equal one keeps the earlier line, and a line that did not change
    the stored status counts as stale. Parsing the next window overlaps with Redis applying the previous one
    (one window in flight).
    """
    collecting = gc.isenabled()
    # Millions of short-lived, acyclic parsed records: the cycle collector would only scan them again and again.
    gc.disable()
    try:
        return await _load_lines(writer, path, progress=progress, window=window)
    finally:
        if collecting:
            gc.enable()


async def _load_lines(writer: StatusWriter, path: Path, *, progress: bool, window: int) -> dict[str, int]:
    counts = {"applied": 0, "stale": 0, "rejected": 0}
    bar = _Progress(path.stat().st_size, progress)
    now_s = int(datetime.now(UTC).timestamp())
    batch = writer.batch(dense=True)
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
    try:
        with path.open("rb") as handle:
            for done, lines in _read_lines(handle):
                id_cards: list[tuple[str, str]] = []
                holders, values, errors = parse_status_lines(lines, now_s=now_s, id_cards=id_cards)
                for i, code in errors:
                    counts["rejected"] += 1
                    if counts["rejected"] <= 20:
                        sys.stderr.write(f"\nline {lineno + i}: {code}")
                lineno += len(lines)
                batch.add(holders, values)
                await writer.index_id_cards(id_cards)  # issue 18: the sentries' residents, a few a window
                if len(batch) >= window:
                    await settle()
                    in_flight = asyncio.create_task(writer.apply(batch))
                    batch = writer.batch(dense=True)
                bar.show(done, counts["applied"] + counts["stale"])
                await asyncio.sleep(0)  # lets the in-flight window be sent and answered meanwhile
        await settle()
        if len(batch):
            applied, stale = await writer.apply(batch)
            counts["applied"] += applied
            counts["stale"] += stale
    finally:
        if in_flight is not None:
            in_flight.cancel()
    bar.show(done, counts["applied"] + counts["stale"], final=True)
    return counts


def _load(args: argparse.Namespace) -> int:
    async def go() -> int:
        settings = settings_from(args).with_secret()
        assert settings.secret is not None
        started = time.perf_counter()
        async with admin_redis(settings) as redis:
            writer = StatusWriter.standalone(redis, secret=settings.secret.reveal(),
                                             status_buckets=settings.status_buckets,
                                             status_ttl_s=settings.status_ttl_s)
            try:
                counts = await load_file(writer, args.file, progress=not args.quiet)
            finally:
                await writer.aclose()
        elapsed = time.perf_counter() - started
        total = counts["applied"] + counts["stale"]
        print(f"applied={counts['applied']} stale={counts['stale']} rejected={counts['rejected']} "
              f"seconds={elapsed:.2f} rate={total / max(elapsed, 1e-9):,.0f}/s")
        return 0 if counts["rejected"] == 0 else 1

    return run(go())
