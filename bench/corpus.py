"""A signed corpus for load tests: a seeded world (keys, place, device, statuses) and freshly minted codes.

Codes are single-use (replay protection) and live at most 300 s, so each benchmark run mints its own batch
just before it starts; minting runs in a process pool so it does not eat into the measured window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from redis.asyncio import Redis

from crypto.keys import Alg, SigningKey
from crypto.native import Colour, issue_health_code, issue_place_code
from crypto.trust import TrustedKey, Usage
from gateway.principals import Principal, Role
from gateway.status.cache import StatusRecord
from gateway.status.writer import StatusWriter
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Place, Registry
from policy.status import HolderStatus, TestResult

__all__ = [
    "BENCH_PLACE",
    "World",
    "holder_name",
    "mint_codes",
    "seed_world",
    "write_bodies",
    "write_status_file",
]

# In the shipped routing table's city (policy/default_routing.toml): an exception becomes a routed case, not a
# dead letter.
BENCH_PLACE = Place("bench-office", "Benchmark office tower", "C", "metro/east/s1/g1/c1")


def holder_name(i: int) -> str:
    return f"h{i:08d}"


@dataclass(frozen=True, slots=True)
class World:
    health_pem: bytes
    device_token: str
    holders: int
    app_token: str  # a citizen-app backend: self-scans present the venue's place code
    place_code: str  # BENCH_PLACE's signed place code, valid for a week


async def seed_world(redis: Redis, *, secret: bytes, status_buckets: int, holders: int) -> World:
    """Trust one ES256 health key and one place key, register the place, one device and one app backend, and
    give ``holders`` green statuses."""
    registry = Registry(redis)
    now = datetime.now(UTC)
    key, place_key = SigningKey.generate(Alg.ES256), SigningKey.generate(Alg.ES256)
    for trusted, usage in ((key, Usage.HEALTH), (place_key, Usage.PLACE)):
        await registry.put_trusted_key(
            TrustedKey.create(
                trusted.public_key(),
                usage=usage,
                not_before=now - timedelta(days=1),
                not_after=now + timedelta(days=7),
            )
        )
    await registry.add_place(BENCH_PLACE)
    token = await create_principal(
        registry, Principal("bench-device", Role.DEVICE, frozenset({BENCH_PLACE.place_id}))
    )
    app_token = await create_principal(registry, Principal("bench-app", Role.APP))
    place_code = issue_place_code(
        place_key,
        place_id=BENCH_PLACE.place_id,
        venue_class=BENCH_PLACE.venue_class,
        jurisdiction=BENCH_PLACE.jurisdiction,
        not_before=now - timedelta(hours=1),
        not_after=now + timedelta(days=7),
    )
    store = StatusWriter.standalone(redis, secret=secret, status_buckets=status_buckets, status_ttl_s=2 * 24 * 3600)
    tested = now - timedelta(hours=2)
    records = [
        StatusRecord(holder_name(i), HolderStatus(Colour.GREEN, now, tested, TestResult.NEGATIVE, True))
        for i in range(holders)
    ]
    for start in range(0, len(records), 20_000):
        await store.upsert_statuses(records[start : start + 20_000])
    await store.aclose()
    return World(key.to_pem(), token, holders, app_token, place_code)


def _mint_chunk(args: tuple[bytes, int, int, int]) -> list[str]:
    pem, start, count, holders = args
    key = SigningKey.from_pem(pem)
    now = datetime.now(UTC)
    return [
        issue_health_code(
            key,
            holder_ref=holder_name((start + i) % holders),
            colour=Colour.GREEN,
            now=now,
            nonce=os.urandom(12),
        )
        for i in range(count)
    ]


def mint_codes(pem: bytes, count: int, *, holders: int, offset: int = 0, processes: int = 2) -> list[str]:
    """``count`` distinct valid green codes (fresh nonces) for the seeded holders, minted in parallel."""
    chunk = max(1, -(-count // (processes * 4)))
    jobs = [(pem, offset + s, min(chunk, count - s), holders) for s in range(0, count, chunk)]
    with ProcessPoolExecutor(processes) as pool:
        return [c for part in pool.map(_mint_chunk, jobs) for c in part]


def write_bodies(path: Path, codes: Sequence[str], *, per_request: int = 1, place_code: str | None = None) -> int:
    """One JSON body per line (``{"code": ..}``, or ``{"codes": [..]}`` when batching), each with the venue's
    ``place_code`` when one is given (a self-scan); returns the count."""
    extra = {} if place_code is None else {"place_code": place_code}
    lines = []
    if per_request == 1:
        lines = [orjson.dumps({"code": c, **extra}) for c in codes]
    else:
        lines = [
            orjson.dumps({"codes": list(codes[i : i + per_request]), **extra})
            for i in range(0, len(codes) - per_request + 1, per_request)
        ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def write_status_file(path: Path, count: int, *, prefix: str = "s") -> None:
    """A health-authority feed of ``count`` JSON lines (mostly green, some yellow and red)."""
    now = int(datetime.now(UTC).timestamp())
    colours = ("green",) * 18 + ("yellow", "red")
    with path.open("wb") as out:
        for start in range(0, count, 100_000):
            out.write(
                b"".join(
                    orjson.dumps(
                        {
                            "holder": f"{prefix}{i:09d}",
                            "colour": colours[i % 20],
                            "tested_at": now - 7200,
                            "test_result": "negative",
                            "vaccinated": bool(i & 1),
                            "updated_at": now - 60,
                        }
                    )
                    + b"\n"
                    for i in range(start, min(count, start + 100_000))
                )
            )
