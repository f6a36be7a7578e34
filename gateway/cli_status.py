"""`placegate status load FILE`: bulk-load health-authority statuses (JSON lines), pipelined, with progress."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from gateway.cli_common import add_common_args, admin_redis, run, settings_from
from gateway.status_feed import RecordError, parse_status_packed
from gateway.store import Store

__all__ = ["load_file", "register"]

BATCH = 20_000


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


async def load_file(store: Store, path: Path, *, progress: bool = True) -> dict[str, int]:
    """Parse and upsert every line; bad lines are counted and reported by line number, never fatal.

    Parsing the next batch overlaps with Redis applying the previous one (one batch in flight), so the
    server's script time is hidden behind the client's parsing.
    """
    counts = {"applied": 0, "stale": 0, "rejected": 0}
    bar = _Progress(path.stat().st_size, progress)
    now_s = int(datetime.now(UTC).timestamp())
    batch: list[tuple[str, bytes]] = []
    in_flight: asyncio.Task[list[bool]] | None = None
    done = 0

    async def settle() -> None:
        if in_flight is not None:
            for ok in await in_flight:
                counts["applied" if ok else "stale"] += 1

    with path.open("rb") as handle:
        for lineno, line in enumerate(handle, 1):
            done += len(line)
            if lineno % 1000 == 0:
                await asyncio.sleep(0)  # lets the in-flight batch be packed, sent and answered meanwhile
            if not line.strip():
                continue
            try:
                batch.append(parse_status_packed(orjson.loads(line), now_s=now_s))
            except (orjson.JSONDecodeError, RecordError) as exc:
                counts["rejected"] += 1
                code = exc.code if isinstance(exc, RecordError) else "invalid_json"
                if counts["rejected"] <= 20:
                    sys.stderr.write(f"\nline {lineno}: {code}")
            if len(batch) >= BATCH:
                await settle()
                in_flight = asyncio.create_task(store.upsert_packed(batch))
                batch = []
                bar.show(done, counts["applied"] + counts["stale"])
    await settle()
    if batch:
        for ok in await store.upsert_packed(batch):
            counts["applied" if ok else "stale"] += 1
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
