"""The batcher's RESP fast path on a Redis Cluster (gateway/clusterflush.py), on a real local cluster (the shared
``aof_cluster``, in both suites): the same raw replies as redis-py's cluster pipeline, actually used, and left
for redis-py's path when a flush holds a command it does not route."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

import pytest
from redis.asyncio import Redis, RedisCluster

from gateway.batcher import CommandBatcher
from gateway.errors import StoreUnavailableError
from gateway.localcluster import LocalCluster
from gateway.redisio import Command, connect_redis


@pytest.fixture
async def cluster_redis(aof_cluster: LocalCluster) -> AsyncIterator[Redis]:
    client = connect_redis(aof_cluster.url, connect_timeout_s=2.0, socket_timeout_s=10.0)
    try:
        yield client
    finally:
        await client.aclose()


async def _warm(batcher: CommandBatcher) -> None:
    """The first flushes go redis-py's way while the primaries' connections open in the background."""
    for _ in range(200):
        before = batcher.resp_flushes
        assert await batcher.run((("PING",),)) == [b"PONG"]
        if batcher.resp_flushes > before:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the fast path never opened its connections")


def _comparable(replies: Sequence[Any]) -> list[Any]:
    # redis-py's path returns a server error as its ResponseError, the fast path as StoreUnavailableError: both are
    # exception values to the callers, with the server's message.
    return [("error", str(r)) if isinstance(r, Exception) else r for r in replies]


def _groups(prefix: str) -> list[list[Command]]:
    """Commands the scan path and the status writer submit, on keys of many slots, with a server error inside."""
    keys = [f"{prefix}:{i}" for i in range(12)]  # 12 keys: spread over the 3 primaries
    return [
        [("SET", keys[0], "place-a", "NX", "GET", "EX", 60), ("SET", keys[0], "place-b", "NX", "GET", "EX", 60)],
        [("HSET", keys[1], "f", "v"), ("HGET", keys[1], "f"), ("HINCRBY", keys[2], "r", 2), ("HGET", keys[3], "x")],
        [("HGET", keys[0], "f")],  # WRONGTYPE: keys[0] holds a string
        [("PING",), ("XADD", keys[4], "1-1", "a", "b"), ("EXPIREAT", keys[4], 4_000_000_000), ("GET", keys[5])],
        [("EVAL", "return {KEYS[1], ARGV[1]}", 1, keys[6], "arg"), ("INCR", keys[7]), ("EXPIRE", keys[7], 60)],
        [("SET", keys[8], b"\x00\xff", "EX", 60), ("GET", keys[8]), ("HDEL", keys[1], "f"), ("HGET", keys[1], "f")],
    ]


async def test_the_fast_path_returns_the_raw_replies_of_redis_pys_path(cluster_redis: Redis) -> None:
    fast, slow = CommandBatcher(cluster_redis), CommandBatcher(cluster_redis)
    slow._fast = None  # this batcher keeps redis-py's cluster pipeline: the reference
    try:
        await _warm(fast)
        got: dict[str, list[list[Any]]] = {}
        for name, batcher in (("fast", fast), ("slow", slow)):
            groups = _groups("pg:test:clfast")  # the same keys, emptied before each path runs
            for i in range(12):
                await cluster_redis.delete(f"pg:test:clfast:{i}")
            before = (batcher.flushes, batcher.resp_flushes)
            # Submitted in one loop turn: one flush of six groups, whose replies go back to each group in order.
            got[name] = list(await asyncio.gather(*(batcher.submit(g, timeout_s=5.0) for g in groups)))
            assert batcher.flushes == before[0] + 1
            assert batcher.resp_flushes == before[1] + (1 if name == "fast" else 0)
        assert [_comparable(r) for r in got["fast"]] == [_comparable(r) for r in got["slow"]]
        # The replies are the raw ones, not redis-py's parsed values, and the error is the server's.
        assert got["fast"][0] == [None, b"place-a"]
        assert str(got["fast"][2][0]).startswith("WRONGTYPE")
        assert got["fast"][3][0] == b"PONG" and got["fast"][3][1] == b"1-1"
        assert got["fast"][4][0] == [b"pg:test:clfast:6", b"arg"]
        assert got["fast"][5][:2] == [b"OK", b"\x00\xff"]
    finally:
        await fast.aclose()
        await slow.aclose()


async def test_a_flush_with_a_command_it_does_not_route_takes_redis_pys_path(cluster_redis: Redis) -> None:
    batcher = CommandBatcher(cluster_redis)
    try:
        await _warm(batcher)
        before = (batcher.flushes, batcher.resp_flushes)
        key = "pg:test:clfast:other"
        replies = await asyncio.gather(batcher.submit([("SET", key, "1", "EX", 60)]),
                                       batcher.submit([("STRLEN", key)]))  # fmt: skip
        assert replies == [[b"OK"], [1]]
        assert (batcher.flushes, batcher.resp_flushes) == (before[0] + 1, before[1])
        # A keyless PING alone still goes the fast way, to every primary.
        assert await batcher.run((("PING",),)) == [b"PONG"]
        assert batcher.resp_flushes == before[1] + 1
    finally:
        await batcher.aclose()


async def test_a_lost_primary_connection_fails_the_flush_once_and_the_fast_path_comes_back(
    cluster_redis: Redis,
) -> None:
    """A part whose connection is lost fails every group of its flush (as on one server), nothing of it is sent
    again (the INCR ran at most once), and the connection is opened again for later flushes."""
    batcher = CommandBatcher(cluster_redis)
    try:
        await _warm(batcher)
        keys = [f"pg:test:clfast:lost:{i}" for i in range(12)]
        for key in keys:
            await cluster_redis.delete(key)
        flusher = batcher._fast
        assert flusher is not None
        futures = [batcher.submit([("INCR", key)], timeout_s=5.0) for key in keys]
        await asyncio.sleep(0)  # the flush is written in this turn's callback
        victim = flusher._conns[cluster_redis.get_node_from_key(keys[0]).name]  # type: ignore[union-attr]
        assert victim.waiting, "the flush went out on the fast path"
        assert victim.transport is not None
        victim.transport.abort()
        results = await asyncio.gather(*futures, return_exceptions=True)
        assert all(isinstance(r, StoreUnavailableError) for r in results), results
        await _warm(batcher)  # the lost connection is replaced; flushes go the fast way again
        assert await batcher.run([("INCR", keys[0])]) in ([1], [2])
        assert await cluster_redis.get(keys[0]) in (b"1", b"2")  # never re-sent: one INCR of the lost flush at most
    finally:
        await batcher.aclose()


async def test_a_moved_reply_reaches_its_group_as_an_error_and_the_slot_map_is_read_again(cluster_redis: Redis) -> None:
    """A stale slot map (here this client's, pointed at the wrong primary; in production a failover) gets a MOVED
    reply: handed to its group as an error value, never followed (no re-send), and the map is re-read."""
    batcher = CommandBatcher(cluster_redis)
    cluster = cast(RedisCluster, cluster_redis)
    try:
        await _warm(batcher)
        key = "pg:test:clfast:moved"
        slot = cluster.keyslot(key)
        nodes = cluster.nodes_manager
        right = nodes.slots_cache[slot][0].name
        nodes.slots_cache[slot] = [next(n for n in cluster.get_primaries() if n.name != right)]
        before = batcher.resp_flushes
        (reply,) = await batcher.submit([("GET", key)], timeout_s=5.0)
        assert batcher.resp_flushes == before + 1
        assert isinstance(reply, Exception) and str(reply).startswith("MOVED"), reply
        for _ in range(500):
            if nodes.slots_cache[slot][0].name == right:
                break
            await asyncio.sleep(0.01)
        assert nodes.slots_cache[slot][0].name == right, "the slot map was not read again"
        assert await batcher.run([("GET", key)]) == [None]
    finally:
        await batcher.aclose()
