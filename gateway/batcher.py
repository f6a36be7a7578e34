"""The command batcher: one event-loop turn's Redis commands go out as one pipeline.

One awaited redis-py command costs about 50 µs of client CPU (docs/performance.md); sending every
command queued during a loop turn as one pipeline pays that cost once per turn instead of once per command.

The hot path speaks RESP itself: callers submit plain command tuples, hiredis packs them and parses the replies
on one pipelined connection per batcher (``_RespConnection``), and the flush is written from the loop-turn
callback itself, with one deadline timer per flush instead of one per command group. redis-py's generic
pipeline costs about 10 µs of client CPU per command and tens per execute even with hiredis (measured:
bench/RESULTS.md, docs/performance.md). TLS and cluster clients, which that connection does not speak, fall
back to a redis-py pipeline with its reply callbacks switched off, so both paths return the same raw replies.
Errors are translated by gateway/redisio.py's translator and counted under ``BATCHER_OP``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, cast

import hiredis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.client import CaseInsensitiveDict
from redis.exceptions import ClusterDownError, ConnectionError, MovedError, TimeoutError, TryAgainError

from gateway.clusterflush import ClusterFlusher
from gateway.errors import StoreUnavailableError
from gateway.redisio import _RAW, BATCHER_OP, Command, _store_error, _translated, is_cluster
from gateway.respconn import MAX_OUTSTANDING_FLUSHES, _distribute, _Endpoint, _fail, _Group, _RespConnection

__all__ = ["MAX_OUTSTANDING_FLUSHES", "CommandBatcher"]

_KEYLESS: Final = frozenset({"PING"})  # commands a cluster flush sends to any node
# Replies of a cluster flush that mean the slot map may be stale (a primary died, its replica took over).
_TOPOLOGY_ERRORS: Final = (ConnectionError, TimeoutError, ClusterDownError, MovedError, TryAgainError)
_REFRESH_EVERY_S: Final = 0.5


class CommandBatcher:
    """Collects command groups submitted during one loop turn and sends them as a single pipeline."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[_Group] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._flights: set[asyncio.Future[list[Any]]] = set()
        self._refreshing: asyncio.Future[None] | None = None
        self._refreshed_at = float("-inf")
        self._endpoint = _endpoint_of(redis)
        self._conn: _RespConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self.flushes = 0
        self.commands = 0
        self.resp_flushes = 0  # flushes written on the batcher's own RESP connections (one server or cluster)
        self._fast = _cluster_flusher(redis, self)

    def submit(self, commands: Sequence[Command], timeout_s: float | None = None) -> asyncio.Future[list[Any]]:
        """Queue ``commands``; the future gets their replies (an exception object per failed command).

        With ``timeout_s``, the future fails with ``StoreUnavailableError`` when the replies have not arrived
        that many seconds after the flush went out.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        if not commands:  # nothing to send: a flight of zero replies would never complete
            future.set_result([])
            return future
        self._pending.append(_Group(commands, future, timeout_s))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    async def run(self, commands: Sequence[Command], timeout_s: float | None = None) -> list[Any]:
        """Submit and await; a command that failed inside the pipeline raises ``StoreUnavailableError``."""
        replies = await self.submit(commands, timeout_s)
        for reply in replies:
            if isinstance(reply, Exception):
                _store_error(BATCHER_OP)
                raise StoreUnavailableError(f"redis command failed: {reply.__class__.__name__}")
        return replies

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        conn = self._conn
        if conn is not None and not conn.closed:
            self._write(conn, batch)  # the common case: no task, no await, straight onto the socket
            return
        if self._fast is not None and self._fast.send(batch):  # a cluster: one RESP payload per primary
            self.flushes += 1
            self.resp_flushes += 1
            self.commands += sum(len(g.commands) for g in batch)
            return
        task = asyncio.get_running_loop().create_task(self._send_slow(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, conn: _RespConnection, batch: list[_Group]) -> None:
        commands = [command for group in batch for command in group.commands]
        self.flushes += 1
        self.resp_flushes += 1
        self.commands += len(commands)
        try:
            payload = b"".join([hiredis.pack_command(command) for command in commands])  # type: ignore[arg-type]
        except TypeError as exc:  # an argument hiredis cannot encode: a programming error, never a wire error
            _fail(batch, exc)
            return
        conn.send(payload, batch, len(commands))

    async def _send_slow(self, batch: list[_Group]) -> None:
        """No open connection yet (or not a plain one): connect, or let redis-py carry the pipeline."""
        timeouts = [g.timeout_s for g in batch if g.timeout_s is not None]
        try:
            # The deadline's TimeoutError is an OSError: translated too. Not counted here: _fail counts each
            # group that gets the error, as for every other failure of a flush.
            with _translated("redis pipeline", counted=False):
                async with asyncio.timeout(min(timeouts) if timeouts else None):
                    if self._endpoint is None:
                        # Shielded: the deadline fails this flush's callers but never cuts redis-py's pipeline
                        # mid-reply (a cluster node's connection would go back to its pool out of step with its
                        # replies); the pipeline finishes on its own, bounded by the socket timeout.
                        flight = asyncio.ensure_future(self._redis_py_pipeline([c for g in batch for c in g.commands]))
                        self._flights.add(flight)
                        flight.add_done_callback(self._flights.discard)
                        flight.add_done_callback(_settle)
                        replies = await asyncio.shield(flight)
                        self.flushes += 1
                        self.commands += len(replies)
                        _distribute(batch, replies)
                        return
                    conn = await self._connection()
        except StoreUnavailableError as exc:  # not raised to anyone: every caller of this flush gets it
            _fail(batch, exc)
            return
        self._write(conn, batch)

    async def _redis_py_pipeline(self, commands: list[Command]) -> list[Any]:
        if is_cluster(self._redis):
            return await self._cluster_pipeline(cast(RedisCluster, self._redis), commands)
        pipe = self._redis.pipeline(transaction=False)
        pipe.response_callbacks = CaseInsensitiveDict({})  # raw replies, as the RESP connection returns them
        for command in commands:
            pipe.execute_command(*command)
        return list(await pipe.execute(raise_on_error=False))

    async def _cluster_pipeline(self, cluster: RedisCluster, commands: list[Command]) -> list[Any]:
        """One pipeline per flush still: redis-py splits it by node and sends each node its part at once. A
        keyless command (the store probe's PING) goes to every primary and answers as the worst of them: the
        store is up only when every slot's primary is."""
        await cluster.initialize()
        primaries = cluster.get_primaries()
        pipe = cluster.pipeline(transaction=False)
        spans: list[int] = []
        for command in commands:
            if str(command[0]).upper() in _KEYLESS:
                for node in primaries:
                    pipe.execute_command(*command, target_nodes=node, **{_RAW: True})
                spans.append(len(primaries))
            else:
                pipe.execute_command(*command, **{_RAW: True})
                spans.append(1)
        try:
            replies = list(await pipe.execute(raise_on_error=False))
        except _TOPOLOGY_ERRORS:  # a node refused after redis-py's own retries: the flush fails, the map is re-read
            self._refresh_slots(cluster)
            raise
        if any(isinstance(r, _TOPOLOGY_ERRORS) for r in replies):
            self._refresh_slots(cluster)
        out: list[Any] = []
        at = 0
        for span in spans:
            part = replies[at : at + span]
            out.append(next((r for r in part if isinstance(r, Exception)), part[0] if part else None))
            at += span
        return out

    def _refresh_slots(self, cluster: RedisCluster) -> None:
        """Re-read the slot map in the background, at most every ``_REFRESH_EVERY_S``: redis-py's pipeline returns
        a dead primary's connection errors as replies without learning that its replica took over, so without
        this a failover would leave this client degraded for good."""
        now = asyncio.get_running_loop().time()
        busy = self._refreshing is not None and not self._refreshing.done()
        if busy or now - self._refreshed_at < _REFRESH_EVERY_S:
            return
        self._refreshed_at = now
        self._refreshing = asyncio.ensure_future(cluster.nodes_manager.initialize())
        self._refreshing.add_done_callback(_settle)

    async def _connection(self) -> _RespConnection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None or self._conn.closed:
                assert self._endpoint is not None
                self._conn = await _RespConnection.open(self._endpoint)
            return self._conn

    async def aclose(self) -> None:
        if self._tasks or self._flights:
            await asyncio.gather(*self._tasks, *self._flights, return_exceptions=True)
        if self._refreshing is not None:
            await asyncio.gather(self._refreshing, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._fast is not None:
            await self._fast.aclose()


def _cluster_flusher(redis: Redis, batcher: CommandBatcher) -> ClusterFlusher | None:
    """The RESP fast path of a plain-TCP cluster client (gateway/clusterflush.py); None: not a cluster, or TLS."""
    if not is_cluster(redis) or not ClusterFlusher.usable(cast(RedisCluster, redis)):
        return None
    cluster = cast(RedisCluster, redis)
    return ClusterFlusher(cluster, lambda: batcher._refresh_slots(cluster))


def _settle(flight: asyncio.Future[Any]) -> None:
    """A shielded pipeline ended: forget it; its error, if nobody awaits it any more, is not worth a warning."""
    if not flight.cancelled():
        flight.exception()


def _endpoint_of(redis: Redis) -> _Endpoint | None:
    """Where the client connects, when it is a plain TCP or unix-socket connection (else: keep redis-py)."""
    pool = getattr(redis, "connection_pool", None)
    if pool is None:
        return None
    kw = pool.connection_kwargs
    user, password, db = kw.get("username"), kw.get("password"), int(kw.get("db") or 0)
    if pool.connection_class is UnixDomainSocketConnection:
        return ("unix", kw.get("path"), 0, user, password, db)
    if pool.connection_class is Connection:
        return ("tcp", kw.get("host", "localhost"), int(kw.get("port", 6379)), user, password, db)
    return None
