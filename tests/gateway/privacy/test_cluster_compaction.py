"""The compaction after a shred on a Redis Cluster (issue 16.1): every node keeps its own AOF, replicas included, so
a shredded day must leave the files of every primary and every replica, not only of the node redis-py picks.

On the suite's private AOF cluster (``aof_cluster``, tests/conftest.py: 3 primaries, 3 replicas, AOF on), in both
suites: the session's test cluster runs without persistence.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from gateway import keyspace
from gateway.localcluster import LocalCluster, node_command
from gateway.privacy.audit import set_trail_secret
from gateway.privacy.compaction import compact_store
from gateway.privacy.shred import shred_day
from gateway.redisio import connect_redis
from gateway.scan.scanlog import day_of, partition_expiry


@pytest.fixture
async def client(aof_cluster: LocalCluster) -> AsyncIterator[Redis]:
    # Generous bounds: six servers fork their rewrites at once on a loaded 2-core machine (a 1 s connect to a
    # replica timed out once there).
    redis = connect_redis(aof_cluster.url, connect_timeout_s=10.0, socket_timeout_s=30.0)
    await redis.flushdb()
    set_trail_secret(bytes(range(32)))
    try:
        yield redis
    finally:
        await redis.aclose()


def _disk(cluster: LocalCluster, port: int) -> bytes:
    files = [p for p in (cluster.directory / str(port)).rglob("*") if p.is_file() and not p.is_socket()]
    return b"\n".join(p.read_bytes() for p in files)


def _keys(cluster: LocalCluster) -> int:
    """Keys held by all the primaries, expired ones not reclaimed yet included."""
    return sum(int(node_command(port, "DBSIZE").strip() or 0) for port in cluster.primaries())


def _holding(cluster: LocalCluster, key: str) -> tuple[int, int]:
    """(the primary serving ``key``'s slot, its replica)."""
    slot = int(node_command(cluster.ports[0], "CLUSTER", "KEYSLOT", key).strip())
    for port in cluster.primaries():
        for line in node_command(port, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "myself" in parts[2]:
                for span in parts[8:]:
                    low, _, high = span.partition("-")
                    if not span.startswith("[") and int(low) <= slot <= int(high or low):
                        return port, cluster.replica_of(port)
    raise AssertionError(f"no primary serves slot {slot}")


async def _until_on_disk(cluster: LocalCluster, ports: tuple[int, ...], needle: bytes) -> None:
    """Positive control: wait (bounded) until every one of ``ports`` has ``needle`` in its files (the AOF is
    written every second; a replica copies asynchronously)."""
    for _ in range(200):
        if all(needle in _disk(cluster, p) for p in ports):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the value never reached the disk of every node holding it")


async def test_a_shred_leaves_no_byte_of_the_day_on_any_primary_or_replica(
    aof_cluster: LocalCluster, client: Redis
) -> None:
    day, other = day_of(datetime.now(UTC) - timedelta(days=1)), day_of(datetime.now(UTC) - timedelta(days=2))
    old_key, kept_key = os.urandom(32), os.urandom(32)
    await client.set(keyspace.day_key(day), old_key, exat=partition_expiry(day, 21))
    await client.set(keyspace.day_key(other), kept_key, exat=partition_expiry(other, 21))
    for i in range(3):
        await client.xadd(keyspace.scan_log_key(day), {"pseudonym": f"pseudonym-of-{i}"})
    holders = _holding(aof_cluster, keyspace.day_key(day))
    await _until_on_disk(aof_cluster, holders, old_key)
    await _until_on_disk(aof_cluster, _holding(aof_cluster, keyspace.day_key(other)), kept_key)

    report = await shred_day(client, day, actor="cli:test", grace_s=0.05)

    assert (report.day_key_present, report.log_records) == (True, 3)
    assert report.compaction.nodes == 6  # every primary and every replica
    assert report.compaction.aof_rewritten and report.compaction.history_left == 0
    for port in aof_cluster.ports:
        data = _disk(aof_cluster, port)
        assert old_key not in data and old_key.hex().encode() not in data, port
        assert b"pseudonym-of-1" not in data, port
    for port in _holding(aof_cluster, keyspace.day_key(other)):  # the other day stays where it lives
        assert kept_key in _disk(aof_cluster, port), port


async def test_an_expired_day_key_not_yet_reclaimed_leaves_every_node_s_files(
    aof_cluster: LocalCluster, client: Redis
) -> None:
    for port in aof_cluster.ports:  # only an access reclaims an expired key (a replica waits for its primary)
        node_command(port, "DEBUG", "SET-ACTIVE-EXPIRE", "0")
    try:
        value = os.urandom(32)
        key = keyspace.day_key("20200101")
        await client.set(key, value, px=1500)
        holders = _holding(aof_cluster, key)
        await _until_on_disk(aof_cluster, holders, value)
        await asyncio.sleep(1.6)
        assert _keys(aof_cluster) == 1  # expired, still held by its primary (and copied by its replica)

        result = await compact_store(client)

        assert result.nodes == 6 and result.aof_rewritten and result.history_left == 0
        assert _keys(aof_cluster) == 0
        for port in aof_cluster.ports:
            assert value not in _disk(aof_cluster, port), port
    finally:
        for port in aof_cluster.ports:
            node_command(port, "DEBUG", "SET-ACTIVE-EXPIRE", "1")
