"""A registered world on the real Redis: issuer keys, places, devices and tokens, plus a client on a real
aiohttp server running ``create_app``."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from crypto.keys import Alg, SigningKey
from crypto.native import Colour, issue_health_code, issue_place_code
from crypto.trust import TrustedKey, Usage
from gateway.app import create_app
from gateway.embedded import EmbeddedServer
from gateway.principals import Principal, Role
from gateway.settings import Secret, Settings
from gateway.status.cache import StatusRecord
from gateway.status.writer import StatusWriter
from gateway.trust.cli_registry import create_principal
from gateway.trust.refresh import refresh_trust
from gateway.trust.registry import Place, Registry
from policy.status import HolderStatus, TestResult

SECRET = Secret(bytes(range(32)))
JURISDICTION = "city/d1/s1/g1/c1"


@dataclass
class World:
    client: TestClient  # type: ignore[type-arg]
    redis: Redis
    settings: Settings
    health_key: SigningKey
    place_key: SigningKey
    tokens: dict[str, str] = field(default_factory=dict)
    place_codes: dict[str, str] = field(default_factory=dict)

    def code(self, holder: str = "holder-1", *, colour: Colour = Colour.GREEN, now: datetime | None = None,
             lifetime_s: int = 300, key: SigningKey | None = None) -> str:
        return issue_health_code(key or self.health_key, holder_ref=holder, colour=colour,
                                 now=now or datetime.now(UTC), nonce=os.urandom(12), lifetime_s=lifetime_s)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def scan(self, code: str, *, who: str = "dev-a", **extra: Any) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post("/v1/scan", json={"code": code, **extra}, headers=self.auth(who))
        return resp.status, await resp.json()

    async def set_status(self, holder: str, colour: Colour = Colour.GREEN, *, tested_h_ago: float | None = 1.0,
                         result: TestResult = TestResult.NEGATIVE, updated_at: datetime | None = None) -> None:
        now = datetime.now(UTC)
        tested = None if tested_h_ago is None else now - timedelta(hours=tested_h_ago)
        status = HolderStatus(colour, updated_at or now, tested, result if tested else TestResult.NONE, False)
        store = StatusWriter.standalone(self.redis, secret=SECRET.reveal(), status_buckets=self.settings.status_buckets,
                                        status_ttl_s=self.settings.status_ttl_s)
        try:
            await store.upsert_statuses([StatusRecord(holder, status)])
        finally:
            await store.aclose()


PLACES = [
    Place("place-a", "Hospital A", "A", JURISDICTION),
    Place("place-b", "Mall B", "B", JURISDICTION),
    Place("place-c", "Office C", "C", JURISDICTION),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The world issues native codes and imports no EU DCC signer list, so readiness asks for the native list only
    # (the DSC list's part of readiness: tests/gateway/test_observability.py).
    # No retry window: a test's second presentation at the same device is a replay, as the tests of the replay
    # memory expect; the retry window has its own tests (tests/gateway/scan/test_scan_retries.py).
    # A store deadline of 2 s, not the 250 ms default: on a loaded 2-core machine (the suite on a cluster beside
    # another run) a healthy store's answer once took longer, and the scan answered degraded where the test expects
    # the store's status. Tests of the deadline itself set theirs (redis_timeout_ms=0 or 250).
    return Settings(data_dir=tmp_path, secret=SECRET, status_buckets=1024, retention_days=21,
                    ready_trust_lists="native", scan_retry_window_s=0, redis_timeout_ms=2000)


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(redis: Redis, settings: Settings) -> AsyncIterator[WorldFactory]:
    clients: list[TestClient] = []  # type: ignore[type-arg]

    async def factory(**overrides: Any) -> World:
        s = replace(settings, **overrides)
        registry = Registry(redis)
        now = datetime.now(UTC)
        health, place = SigningKey.generate(Alg.ES256), SigningKey.generate(Alg.ES256)
        for key, usage in ((health, Usage.HEALTH), (place, Usage.PLACE)):
            await registry.put_trusted_key(TrustedKey.create(
                key.public_key(), usage=usage, not_before=now - timedelta(days=60), not_after=now + timedelta(days=30)))
        tokens: dict[str, str] = {}
        codes: dict[str, str] = {}
        for p in PLACES:
            await registry.add_place(p)
            codes[p.place_id] = issue_place_code(place, place_id=p.place_id, venue_class=p.venue_class,
                                                 jurisdiction=p.jurisdiction, not_before=now - timedelta(hours=1),
                                                 not_after=now + timedelta(days=1))
            suffix = p.place_id[-1]
            tokens[f"dev-{suffix}"] = await create_principal(
                registry, Principal(f"dev-{suffix}", Role.DEVICE, frozenset({p.place_id})))
        tokens["app"] = await create_principal(registry, Principal("app-1", Role.APP))
        tokens["feeder"] = await create_principal(registry, Principal("feeder-1", Role.FEEDER))
        tokens["dispatcher"] = await create_principal(registry, Principal("disp-1", Role.DISPATCHER,
                                                                          jurisdiction="city/d1"))
        client = TestClient(TestServer(create_app(s, redis=redis)))
        await client.start_server()
        clients.append(client)
        await refresh_trust(client.app, force=True)
        return World(client, redis, s, health, place, tokens, codes)

    yield factory
    for client in clients:
        await close_or_show_what_hangs(client)


async def close_or_show_what_hangs(client: TestClient, limit_s: float = 60.0) -> None:  # type: ignore[type-arg]
    """Close an app's test client; one that has not closed after ``limit_s`` fails the test naming every task still
    running and where each waits (pytest-timeout would end the whole session at 120 s and name only threads: a
    stuck shutdown, three seen on a loaded cluster run, could not be found that way)."""
    close = asyncio.ensure_future(client.close())
    done, _ = await asyncio.wait({close}, timeout=limit_s)
    if close in done:
        close.result()
        return
    stacks = io.StringIO()
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.print_stack(limit=30, file=stacks)
    close.cancel()
    pytest.fail(f"the app did not close in {limit_s:g} s; tasks still running:\n{stacks.getvalue()}")


@pytest.fixture
async def world(make_world: WorldFactory) -> World:
    return await make_world()


PrivateServerFactory = Callable[..., EmbeddedServer]


@pytest.fixture
def make_private_server() -> Iterator[PrivateServerFactory]:
    """Servers of this test's own, which it may kill or stop (never the session's); each is stopped and its
    directory removed afterwards, a stopped one continued first."""
    made: list[EmbeddedServer] = []

    def factory(*, persistent: bool = False, extra_args: Sequence[str] = ()) -> EmbeddedServer:
        directory = Path(tempfile.mkdtemp(prefix="pg-srv-"))  # short: unix socket paths are limited to ~100 bytes
        server = EmbeddedServer(directory, persistent=persistent, extra_args=extra_args)
        made.append(server)
        return server.start()

    yield factory
    for server in made:
        if server.process is not None and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        server.stop(kill=True)
        shutil.rmtree(server.directory, ignore_errors=True)
