"""The command batcher on a real server: raw replies on both transports, errors as values, per-caller deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool

from gateway.batcher import CommandBatcher
from gateway.embedded import EmbeddedServer
from gateway.errors import StoreUnavailableError
from gateway.redisio import MultiHostUrl, connect_redis, is_cluster, one_connection

COMMANDS = (
    ("SET", "k", b"v\x00\xff", "NX", "GET", "EX", 30),
    ("SET", "k", "other", "NX", "GET", "EX", 30),
    ("HSET", "h", b"f", 7),
    ("HGET", "h", b"f"),
    ("HGET", "h", b"missing"),
    ("XADD", "s", "*", "a", "1"),
    ("EXPIREAT", "s", 4_000_000_000),
    ("INCR", "h"),  # WRONGTYPE: an error value, not an exception for the whole pipeline
)


async def _replies(batcher: CommandBatcher) -> list[object]:
    try:
        return await batcher.submit(COMMANDS)
    finally:
        await batcher.aclose()


async def test_resp_connection_and_redis_py_fallback_return_the_same_raw_replies(redis: Redis) -> None:
    direct = await _replies(CommandBatcher(redis))
    await redis.flushdb()
    fallback_batcher = CommandBatcher(redis)
    fallback_batcher._endpoint = None  # what a TLS or cluster client gets: redis-py carries the pipeline
    fallback = await _replies(fallback_batcher)
    for replies in (direct, fallback):
        assert replies[:5] == [None, b"v\x00\xff", 1, b"7", None]
        assert isinstance(replies[5], bytes) and b"-" in replies[5]
        assert replies[6] == 1
        assert isinstance(replies[7], Exception) and "WRONGTYPE" in str(replies[7])


async def test_run_raises_store_unavailable_for_an_error_reply(redis: Redis) -> None:
    batcher = CommandBatcher(redis)
    try:
        await redis.set("str", "x")
        with pytest.raises(StoreUnavailableError):
            await batcher.run((("HGET", "str", "f"),))
        assert await batcher.run((("GET", "str"),)) == [b"x"]
    finally:
        await batcher.aclose()


@pytest.mark.single_node("the batcher's own RESP connection; a cluster flush goes through redis-py's cluster pipeline")
async def test_a_deadline_fails_only_its_caller_and_the_connection_stays_in_order(redis: Redis) -> None:
    batcher = CommandBatcher(redis)
    try:
        await batcher.run((("PING",),))  # opens the connection
        started = time.monotonic()
        # One flush: a command the server blocks on for 0.4 s, then a patient caller behind it.
        blocked = batcher.submit((("BLPOP", "empty-list", 0.4),), timeout_s=0.05)
        patient = batcher.submit((("SET", "after", "1"), ("GET", "after")), timeout_s=None)
        with pytest.raises(StoreUnavailableError):
            await blocked
        assert time.monotonic() - started < 0.3
        assert await patient == [b"OK", b"1"]
        # The late BLPOP reply was matched to its own (failed) caller, not handed to the next one.
        assert await batcher.run((("GET", "after"),), timeout_s=1.0) == [b"1"]
    finally:
        await batcher.aclose()


@pytest.mark.single_node("kills the batcher's own RESP connection by name; a cluster flush has no such connection")
async def test_a_closed_server_connection_fails_pending_callers_then_reconnects(redis: Redis) -> None:
    batcher = CommandBatcher(redis)
    try:
        await batcher.run((("CLIENT", "SETNAME", "pg-batcher"),))
        waiting = batcher.submit((("BLPOP", "never", 5),))
        await asyncio.sleep(0.05)
        await redis.execute_command("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal")
        with pytest.raises(StoreUnavailableError):
            await waiting
        assert await batcher.run((("PING",),)) == [b"PONG"]
    finally:
        await batcher.aclose()


async def test_the_resp_connection_authenticates_and_a_wrong_password_is_store_unavailable() -> None:
    directory = Path(tempfile.mkdtemp(prefix="pg-auth-"))  # short: unix socket paths are limited to ~100 bytes
    server = EmbeddedServer(directory, persistent=False).start()
    try:
        path = server.socket_path
        opener = connect_redis(server.url)
        await opener.config_set("requirepass", "s3cret")  # after start: the start-up probe PINGs without AUTH
        await opener.aclose()
        good = connect_redis(f"unix://:s3cret@{path}?db=2")
        bad = connect_redis(f"unix://:wrong@{path}")
        try:
            batcher = CommandBatcher(good)
            await batcher.run((("SET", "k", "v"),))
            assert await good.get("k") == b"v"  # same database (2) as the batcher's SELECT
            await batcher.aclose()
            refused = CommandBatcher(bad)
            with pytest.raises(StoreUnavailableError):
                await refused.run((("PING",),))
            await refused.aclose()
        finally:
            await good.aclose()
            await bad.aclose()
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def test_an_empty_group_is_answered_at_once(redis: Redis) -> None:
    batcher = CommandBatcher(redis)
    try:
        assert await asyncio.wait_for(batcher.submit(()), 1.0) == []
        assert await asyncio.wait_for(batcher.run((), timeout_s=0.5), 1.0) == []
        assert batcher.flushes == 0
    finally:
        await batcher.aclose()


def test_a_multi_host_url_gives_its_hosts_credentials_tls_and_service() -> None:
    url = MultiHostUrl.parse("rediss+sentinel://ops:p%40ss@s1:26379,[::1]:26380/placegate")
    assert url == MultiHostUrl(True, (("s1", 26379), ("::1", 26380)), "ops", "p@ss", "placegate")
    assert MultiHostUrl.parse("redis+cluster://h1:7000").hosts == (("h1", 7000),)
    with pytest.raises(ValueError):
        MultiHostUrl.parse("redis+cluster://h1")


async def test_cluster_and_sentinel_urls_build_their_clients_without_connecting() -> None:
    cluster = connect_redis("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    assert is_cluster(cluster)
    sentinel = connect_redis("redis+sentinel://127.0.0.1:1/placegate")
    assert not is_cluster(sentinel)
    assert isinstance(sentinel.connection_pool, SentinelConnectionPool)
    assert sentinel.connection_pool.service_name == "placegate"
    await cluster.aclose()
    await sentinel.aclose()


async def test_a_cluster_batcher_returns_the_raw_replies_of_the_one_server_path(redis: Redis) -> None:
    """``SET … NX GET`` keeps its raw reply (redis-py's callback would make it a bool) on either store."""
    batcher = CommandBatcher(redis)
    try:
        replies = await batcher.run((("SET", "k", "a", "NX", "GET", "EX", 10), ("SET", "k", "b", "NX", "GET", "EX", 10),
                                     ("EXPIREAT", "k", 4_000_000_000), ("PING",)))  # fmt: skip
        assert replies == [None, b"a", 1, b"PONG"]
    finally:
        await batcher.aclose()


async def test_one_connection_is_closed_however_its_block_is_cancelled(redis: Redis) -> None:
    """A consumer stopped at shutdown is cancelled wherever it waits: in a command, or in the close itself. Each
    time the block's client is closed (no 'Unclosed client session' when collected), on one server and on a
    cluster (a connection of the key's primary there), and the store still answers on the next connection."""
    key = "pg:test:{one}"
    inside = asyncio.Event()

    async def hold(block: bool) -> None:
        async with one_connection(redis, key) as conn:
            await conn.set(key, "1")
            inside.set()
            if block:
                await conn.blpop([key + ":list"], timeout=1)  # parked in a command when the cancellation lands
        # not blocked: the set made, the block ends and the cancellation lands in the close

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for block, delay in [(True, 0.0), (True, 0.005), (True, 0.02)] + [(False, 0.0)] * 20:
            inside.clear()
            task = asyncio.create_task(hold(block))
            await inside.wait()
            await asyncio.sleep(delay)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.05)  # the shielded closes finish on their own
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    async with one_connection(redis, key) as conn:
        assert await conn.get(key) == b"1"


async def test_one_connection_on_a_cluster_needs_the_key_it_serves(redis: Redis) -> None:
    if not is_cluster(redis):
        async with one_connection(redis) as conn:  # one server: any key, or none
            assert await conn.ping()
        return
    with pytest.raises(ValueError, match="needs the key"):
        async with one_connection(redis):
            pass


async def test_a_deadline_of_zero_fails_even_when_the_reply_is_already_in(redis: Redis) -> None:
    # uvloop runs a call_later under 1 ms as call_soon, after the next poll for I/O: on a loaded machine the reply
    # was read first and the caller of a 0 s deadline got it (the degraded-mode tests failed that way).
    batcher = CommandBatcher(redis)
    try:
        await batcher.run((("PING",),))  # opens the connection
        future = batcher.submit((("PING",),), timeout_s=0.0)
        asyncio.get_running_loop().call_soon(time.sleep, 0.05)  # runs after the flush: the reply is in by the poll
        with pytest.raises(StoreUnavailableError):
            await future
        # replies still in order (PING, not ECHO: a cluster sends a keyless ECHO nowhere)
        assert await batcher.run((("PING", "next"),), timeout_s=1.0) == [b"next"]
    finally:
        await batcher.aclose()
