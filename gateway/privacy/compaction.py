"""Compaction: a deleted or expired day key leaves the server's disk, not only its memory.

DEL and expiry remove a key from the dataset, but an append-only file keeps every command it ever logged, the
``SET`` that created the day key included, until the AOF is rewritten (by default only after 64 MB of growth: weeks
for a gateway). So whenever a day key that existed at the last check is gone (expired at the end of its retention,
or shredded early), one process, under a lease, rewrites the AOF (``BGREWRITEAOF``) and, if the server also saves
RDB snapshots, saves a new one (``BGSAVE``); the server then deletes the old base and incremental AOF parts
(multi-part AOF "history" files). ``placegate privacy shred`` runs the same compaction at once (PRIVACY.md §4).

On a Redis Cluster every server keeps its own files, replicas included (a replica persists what it copies): the
compaction runs on every node the cluster lists, primaries and replicas, after each primary's replicas have
caught up with the deletions (tests/gateway/privacy/test_cluster_compaction.py). A Sentinel-managed store is
compacted on its primary only: its replicas' files are not reached (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from aiohttp import web
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, _ClusterNodePoolAdapter

from gateway import keyspace
from gateway.appstate import REDIS, SETTINGS
from gateway.dispatch.lease import SweepLease
from gateway.errors import StoreUnavailableError
from gateway.redisio import is_cluster, redis_errors

__all__ = ["Compaction", "compact_if_keys_gone", "compact_store", "install"]

log = logging.getLogger("placegate.compaction")
_POLL_S = 0.05
_HISTORY_WAIT_S = 10.0


@dataclass(frozen=True, slots=True)
class Compaction:
    """What one compaction did: whether the AOF and the RDB snapshot were rewritten, how many superseded
    AOF parts (history files) the manifest still listed when it ended (-1: the directory is not readable here),
    and on how many servers (a cluster's every node: rewritten where any had it on, history added up)."""

    aof_rewritten: bool
    rdb_saved: bool
    history_left: int
    nodes: int = 1

    def to_json(self) -> dict[str, object]:
        return {"aof_rewritten": self.aof_rewritten, "rdb_saved": self.rdb_saved, "history_left": self.history_left,
                "nodes": self.nodes}


async def _info(redis: Redis) -> dict[str, str]:
    with redis_errors("compaction"):
        info = await redis.info("persistence")
    return {str(name): str(value) for name, value in info.items()}


async def _wait(redis: Redis, done: str, counter: str, before: int, deadline: float) -> dict[str, str]:
    """Poll INFO until the background job has run (its counter moved) and none is in progress or scheduled."""
    loop = asyncio.get_running_loop()
    while True:
        info = await _info(redis)
        if int(info.get(counter, "0")) > before and info.get(done) == "0" and \
                info.get("aof_rewrite_scheduled", "0") == "0":
            return info
        if loop.time() > deadline:
            raise StoreUnavailableError(f"compaction did not finish ({counter})")
        await asyncio.sleep(_POLL_S)


async def _expire_gone_keys(redis: Redis) -> None:
    # An expired key the server has not reclaimed yet would be written into an RDB-format AOF base; touching it
    # (SCAN checks each key's expiry) reclaims it first.
    with redis_errors("compaction"):
        for pattern in (keyspace.day_key("*"), keyspace.scan_log_key("*")):  # "{" and "}" are literal in a match
            async for name in redis.scan_iter(match=pattern, count=1000):
                await redis.exists(name)


async def compact_store(redis: Redis, *, timeout_s: float = 300.0) -> Compaction:
    """Rewrite the AOF (when on) and the RDB snapshot (when save points are set) from the current dataset, and
    wait for both, and for the server to delete the superseded AOF parts when their directory is readable here.

    :raises StoreUnavailableError: Redis did not answer, or a rewrite failed or outlasted ``timeout_s``.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    if is_cluster(redis):
        return await _compact_cluster(cast(RedisCluster, redis), deadline)
    await _expire_gone_keys(redis)
    return await _compact_node(redis, deadline)


async def _compact_cluster(cluster: RedisCluster, deadline: float) -> Compaction:
    """Every primary reclaims its expired keys and waits for its replicas to copy the deletions; then every node,
    primaries and the replicas each primary lists (not the client's slot map: a replica still syncing, or not
    announced by gossip yet, is missing there), rewrites its own files, all at once."""
    with redis_errors("compaction"):
        await cluster.initialize()
        primaries = cluster.get_primaries()
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(_node_client(node)) for node in primaries]
        listed = await asyncio.gather(*(_expire_and_replicate(client, deadline) for client in clients))
        for primary, replicas in zip(primaries, listed, strict=True):
            for host, port in replicas:
                kwargs = {k: v for k, v in primary.connection_kwargs.items() if k not in ("host", "port")}
                node = ClusterNode(host, port, "replica", connection_class=primary.connection_class, **kwargs)
                stack.push_async_callback(node.disconnect)
                clients.append(await stack.enter_async_context(_node_client(node)))
        done = await asyncio.gather(*(_compact_node(client, deadline) for client in clients))
    history = -1 if any(c.history_left < 0 for c in done) else sum(c.history_left for c in done)
    return Compaction(any(c.aof_rewritten for c in done), any(c.rdb_saved for c in done), history, len(done))


@contextlib.asynccontextmanager
async def _node_client(node: ClusterNode) -> AsyncIterator[Redis]:
    """A plain client of one cluster node on that node's own connections (its credentials and TLS)."""
    client = Redis(connection_pool=_ClusterNodePoolAdapter(node))  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.aclose(close_connection_pool=False)


async def _expire_and_replicate(primary: Redis, deadline: float) -> list[tuple[str, int]]:
    """Reclaim the primary's expired day keys and log partitions, then wait until every replica it lists has
    acknowledged its stream up to here (the deletions included), so no replica's rewrite keeps a key its primary
    lost. :returns: the (host, port) of each of those replicas."""
    await _expire_gone_keys(primary)
    with redis_errors("compaction"):
        info = await primary.info("replication")
    target = int(info.get("master_repl_offset", 0))
    loop = asyncio.get_running_loop()
    while True:
        replicas = [v for k, v in info.items() if str(k).startswith("slave") and isinstance(v, dict)]
        if all(int(r.get("offset", 0)) >= target for r in replicas):  # a replica acknowledges every second
            return [(str(r["ip"]), int(r["port"])) for r in replicas]
        if loop.time() > deadline:
            raise StoreUnavailableError("compaction: a replica did not catch up")
        await asyncio.sleep(_POLL_S)
        with redis_errors("compaction"):
            info = await primary.info("replication")


async def _compact_node(redis: Redis, deadline: float) -> Compaction:
    info = await _info(redis)
    aof = info.get("aof_enabled") == "1"
    if aof:
        await _wait_idle(redis, deadline)
        before = int((await _info(redis)).get("aof_rewrites", "0"))
        with redis_errors("compaction"):
            await redis.bgrewriteaof()
        info = await _wait(redis, "aof_rewrite_in_progress", "aof_rewrites", before, deadline)
        if info.get("aof_last_bgrewrite_status") != "ok":
            raise StoreUnavailableError("compaction: the AOF rewrite failed")
    rdb = await _saves_rdb(redis)
    if rdb:
        before = int(info.get("rdb_saves", "0"))
        await _wait_idle(redis, deadline)
        with redis_errors("compaction"):
            await redis.bgsave()
        info = await _wait(redis, "rdb_bgsave_in_progress", "rdb_saves", before, deadline)
        if info.get("rdb_last_bgsave_status") != "ok":
            raise StoreUnavailableError("compaction: the RDB snapshot failed")
    history = await _history_left(redis, deadline) if aof else 0
    return Compaction(aof, rdb, history)


async def _wait_idle(redis: Redis, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        info = await _info(redis)
        if info.get("aof_rewrite_in_progress") == "0" and info.get("rdb_bgsave_in_progress") == "0" and \
                info.get("aof_rewrite_scheduled", "0") == "0":
            return
        if loop.time() > deadline:
            raise StoreUnavailableError("compaction: another rewrite did not finish")
        await asyncio.sleep(_POLL_S)


async def _config(redis: Redis, name: str) -> str | None:
    """A server setting, or None where CONFIG is not allowed (a managed Redis renames or forbids it)."""
    try:
        with redis_errors("compaction"):
            reply = cast(dict[bytes, bytes], await redis.config_get(name))
    except StoreUnavailableError:
        return None
    value = reply.get(name.encode(), reply.get(name))  # type: ignore[call-overload]
    return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))


async def _saves_rdb(redis: Redis) -> bool:
    save = await _config(redis, "save")
    return bool(save and save.strip())


async def _history_left(redis: Redis, deadline: float) -> int:
    """Superseded AOF parts the manifest still lists, once the server has deleted them (it does so in the
    background right after the rewrite); -1 when the AOF directory is not on this host."""
    directory, dirname, filename = [await _config(redis, n) for n in ("dir", "appenddirname", "appendfilename")]
    if not (directory and dirname and filename):
        return -1
    manifest = Path(directory) / dirname / f"{filename}.manifest"
    loop = asyncio.get_running_loop()
    # The server deletes them right after the rewrite; one that keeps them (aof-disable-auto-gc) is reported,
    # not waited for.
    deadline = min(deadline, loop.time() + _HISTORY_WAIT_S)
    while True:
        try:
            text = manifest.read_text()
        except OSError:
            return -1
        history = sum(1 for line in text.splitlines() if line.split()[-2:] == ["type", "h"])
        if history == 0 or loop.time() > deadline:
            return history
        await asyncio.sleep(_POLL_S)


async def _keyed_days(redis: Redis) -> set[str]:
    with redis_errors("compaction"):
        names = [name async for name in redis.scan_iter(match=keyspace.day_key("*"), count=1000)]
    return {(n.decode() if isinstance(n, bytes) else str(n)).rsplit(":", 1)[-1] for n in names}


async def compact_if_keys_gone(redis: Redis) -> Compaction | None:
    """Compact when a day key present at the last check is gone (expired or deleted); remember today's keys.

    The call needs the compaction lease (``install`` holds it), so one process compacts.
    """
    now = await _keyed_days(redis)
    with redis_errors("compaction"):
        raw = cast(bytes | None, await redis.get(keyspace.COMPACTION_DAYS))
    before = set(filter(None, (raw or b"").decode().split(",")))
    result = await compact_store(redis) if before - now else None
    if result is not None or now != before:
        with redis_errors("compaction"):
            await redis.set(keyspace.COMPACTION_DAYS, ",".join(sorted(now)), ex=keyspace.COMPACTION_DAYS_TTL_S)
    return result


def install(app: web.Application) -> None:
    """Run ``compact_if_keys_gone`` every ``settings.compaction_check_s`` in one process at a time."""
    app.cleanup_ctx.append(_compactions)


async def _compactions(app: web.Application) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(_loop(app[REDIS], app[SETTINGS].compaction_check_s, stop))
    yield
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _loop(redis: Redis, interval_s: float, stop: asyncio.Event) -> None:
    """Check now, then every ``interval_s``, until ``stop``. The loop ends on the event, not on cancellation alone
    (as ``gateway.background.refreshing``): a cancellation that lands inside a Redis command can come out as a
    redis-py timeout, a ``StoreUnavailableError`` caught below, and the loop then slept its whole interval (300 s)
    while the app's shutdown waited for it (a test's teardown hung; found by ``close_or_show_what_hangs``,
    tests/gateway/conftest.py)."""
    lease = SweepLease(redis, ttl_ms=keyspace.compaction_lease_ttl_ms(interval_s), key=keyspace.COMPACTION_LEASE)
    while not stop.is_set():
        try:
            if await lease.hold():
                result = await compact_if_keys_gone(redis)
                if result is not None:
                    log.info("compacted the store after a day key went: %s", result.to_json())
        except StoreUnavailableError as exc:
            log.warning("compaction check failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
