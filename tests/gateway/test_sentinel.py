"""A gateway on ``redis+sentinel://`` follows a failover: a private primary, its replica and three sentinels
(gateway/localcluster.py ``LocalSentinel``) on 127.0.0.1; the primary is killed, the sentinels promote the
replica, and the same app, never restarted, answers scans degraded meanwhile and normally again afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from crypto.native import Colour
from gateway.localcluster import LocalSentinel
from gateway.privacy.audit import set_trail_secret
from gateway.redisio import connect_redis
from gateway.settings import Settings
from tests.gateway.conftest import World, WorldFactory

pytestmark = pytest.mark.single_node("starts its own primary, replica and sentinels; the cluster run has its own test")


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[LocalSentinel]:
    group = LocalSentinel(tmp_path / "sentinel").start()
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
async def redis(sentinel_group: LocalSentinel) -> AsyncIterator[Redis]:
    """The suite's ``redis`` fixture, through the sentinels: every fixture built on it (the world) uses them."""
    client = connect_redis(sentinel_group.url, connect_timeout_s=0.5, socket_timeout_s=1.0)
    await client.flushdb()
    set_trail_secret(bytes(range(32)))  # as the suite's own fixture: the app switches to its secret
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def settings(settings: Settings, sentinel_group: LocalSentinel) -> Settings:
    from dataclasses import replace

    return replace(settings, redis_url=sentinel_group.url, store_probe_s=0.1)


async def _scan(world: World, holder: str) -> tuple[int, dict[str, Any]]:
    return await world.scan(world.code(holder))


async def test_a_sentinel_failover_answers_degraded_then_normal_on_the_promoted_replica(
    sentinel_group: LocalSentinel, make_world: WorldFactory
) -> None:
    world = await make_world()
    await world.set_status("holder-1", Colour.GREEN)
    status, body = await _scan(world, "holder-1")
    assert (status, body["decision"], body["degraded"]) == (200, "admit", False)
    old_primary = sentinel_group.primary
    await asyncio.sleep(0.5)  # the replica has the registry and the status before its primary dies
    sentinel_group.kill(old_primary)

    answers: list[tuple[int, str, bool]] = []
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        status, body = await _scan(world, "holder-1")
        answers.append((status, body["decision"], body["degraded"]))
        if sentinel_group.current_primary() == sentinel_group.replica and not body["degraded"]:
            break
        await asyncio.sleep(0.2)
    assert sentinel_group.current_primary() == sentinel_group.replica, "the sentinels never promoted the replica"
    assert all(status == 200 for status, _, _ in answers)  # never an error: degraded or normal
    assert any(degraded for _, _, degraded in answers), "no scan saw the failover"
    assert answers[-1] == (200, "admit", False)
    # And stays normal on the new primary: the status written before the failover was replicated.
    status, body = await _scan(world, "holder-1")
    assert (status, body["decision"], body["reason"], body["degraded"]) == (200, "admit", "ok", False)
