"""A gateway on ``redis+cluster://`` follows a failover (issue 16.1): a private 3-primary, 3-replica cluster
(gateway/localcluster.py ``LocalCluster``, not the session's: a node is killed) on 127.0.0.1; the primary
serving the dispatch intake stream's slot (every exception event goes there) is SIGKILLed, the cluster promotes
its replica, and the same app, never restarted, answers scans degraded meanwhile and normally again afterwards,
and every exception it answered reaches the intake stream. bench/cluster_failover.py measures the same at a rate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis.asyncio import Redis

from crypto.native import Colour
from gateway import keyspace
from gateway.localcluster import LocalCluster, node_command
from gateway.privacy.audit import set_trail_secret
from gateway.redisio import connect_redis
from gateway.settings import Settings
from policy.admission import EXCEPTION_REASONS
from tests.gateway.conftest import WorldFactory


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    group = LocalCluster(tmp_path / "cluster").start()
    try:
        yield group
    finally:
        group.stop()


@pytest.fixture
async def redis(cluster: LocalCluster) -> AsyncIterator[Redis]:
    """The suite's ``redis`` fixture, on this cluster: every fixture built on it (the world) uses it."""
    client = connect_redis(cluster.url, connect_timeout_s=0.5, socket_timeout_s=1.0)
    set_trail_secret(bytes(range(32)))  # as the suite's own fixture: the app switches to its secret
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def settings(settings: Settings, cluster: LocalCluster) -> Settings:
    return replace(settings, redis_url=cluster.url, store_probe_s=0.1)


def _serving(cluster: LocalCluster, key: str) -> int:
    slot = int(node_command(cluster.ports[0], "CLUSTER", "KEYSLOT", key).strip())
    for port in cluster.primaries():
        line = next(x for x in node_command(port, "CLUSTER", "NODES").splitlines() if "myself" in x)
        for span in line.split()[8:]:
            low, _, high = span.partition("-")
            if not span.startswith("[") and int(low) <= slot <= int(high or low):
                return port
    raise AssertionError(f"no primary serves slot {slot}")


async def test_a_killed_primary_answers_degraded_then_normal_and_loses_no_exception_event(
    cluster: LocalCluster, make_world: WorldFactory, redis: Redis
) -> None:
    world = await make_world()
    await world.set_status("holder-1", Colour.GREEN)
    await world.set_status("holder-red", Colour.RED)
    exceptions = 0

    async def scan(holder: str, colour: Colour) -> tuple[int, str, bool]:
        nonlocal exceptions
        status, body = await world.scan(world.code(holder, colour=colour))
        if status == 200 and body["reason"] in EXCEPTION_REASONS:
            exceptions += 1
        return status, body["decision"], body["degraded"]

    assert await scan("holder-1", Colour.GREEN) == (200, "admit", False)
    assert (await scan("holder-red", Colour.RED))[:2] == (200, "deny")
    victim = _serving(cluster, keyspace.DISPATCH_INTAKE)
    replica = cluster.replica_of(victim)
    await asyncio.sleep(0.5)  # the replica has the registry, the statuses and the events before its primary dies
    cluster.kill(victim)

    answers: list[tuple[int, str, bool]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answers.append(await scan("holder-red", Colour.RED))
        answers.append(await scan("holder-1", Colour.GREEN))
        if replica in cluster.primaries() and not answers[-1][2] and not answers[-2][2]:
            break
        await asyncio.sleep(0.1)
    assert replica in cluster.primaries(), "the cluster never promoted the replica"
    assert all(status == 200 for status, _, _ in answers)  # never an error: degraded or normal
    assert any(degraded for _, _, degraded in answers), "no scan saw the failover"
    assert answers[-1] == (200, "admit", False)
    assert (await scan("holder-1", Colour.GREEN)) == (200, "admit", False)  # and stays normal

    # Every exception answered, before, during and after the failover, is an event on the promoted primary
    # (the degraded ones once the gateway's catch-up has written them).
    events = 0
    for _ in range(300):
        events = int(node_command(replica, "XLEN", keyspace.DISPATCH_INTAKE).strip() or 0)
        if events >= exceptions:
            break
        await asyncio.sleep(0.1)
    assert exceptions >= 3 and events >= exceptions, (events, exceptions)
