"""Redis connections and the command batcher that coalesces one event-loop turn's commands into one pipeline.

One awaited redis-py command costs about 50 µs of client CPU (DESIGN.md "Performance bar"); sending every
command queued during a loop turn as one pipeline pays that cost once per turn instead of once per command.
Every redis exception is translated here into ``StoreUnavailableError``; no other module sees one.

The batcher sends on its own pipelined connection (``_RespConnection``: hiredis packs and parses, replies are
matched to flushes in order), because redis-py's generic pipeline costs about 10 µs of client CPU per command
and tens per execute even with hiredis (measured: bench/RESULTS.md, docs/performance.md). The commands are
still built by redis-py's ``Pipeline`` methods and their replies pass through the same response callbacks, so
the results are those of ``pipe.execute(raise_on_error=False)``. TLS and cluster clients keep the redis-py
pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import RedisError, ResponseError

from gateway.errors import StoreUnavailableError

__all__ = ["CommandBatcher", "PipelineFiller", "connect_redis"]

PipelineFiller = Callable[[Pipeline], None]


def connect_redis(url: str, *, max_connections: int = 64) -> Redis:
    """A client for ``redis://``, ``rediss://`` or ``unix://`` URLs; bytes in, bytes out."""
    # A blocking pool: a burst beyond max_connections waits (bounded) for a free connection instead of failing
    # the request with "too many connections".
    pool = BlockingConnectionPool.from_url(
        url, decode_responses=False, max_connections=max_connections, timeout=5, health_check_interval=30
    )
    return Redis.from_pool(pool)


class CommandBatcher:
    """Collects command groups submitted during one loop turn and sends them as a single pipeline."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pending: list[tuple[PipelineFiller, asyncio.Future[list[Any]]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._endpoint = _endpoint_of(redis)
        self._conn: _RespConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self.flushes = 0
        self.commands = 0

    def submit(self, fill: PipelineFiller) -> asyncio.Future[list[Any]]:
        """Queue the commands ``fill`` adds; the future gets their replies (an exception object per failed one)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((fill, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[PipelineFiller, asyncio.Future[list[Any]]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        sizes: list[int] = []
        for fill, _ in batch:
            before = len(pipe.command_stack)
            fill(pipe)
            sizes.append(len(pipe.command_stack) - before)
        self.flushes += 1
        self.commands += len(pipe.command_stack)
        try:
            replies = await self._execute(pipe)
        except (RedisError, OSError, StoreUnavailableError) as exc:
            error = StoreUnavailableError(f"redis pipeline failed: {exc.__class__.__name__}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        at = 0
        for (_, future), size in zip(batch, sizes, strict=True):
            if not future.done():
                future.set_result(replies[at : at + size])
            at += size

    async def run(self, fill: PipelineFiller) -> list[Any]:
        """Submit and await; a command that failed inside the pipeline raises ``StoreUnavailableError``."""
        replies = await self.submit(fill)
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreUnavailableError(f"redis command failed: {reply.__class__.__name__}")
        return replies

    async def _execute(self, pipe: Pipeline) -> list[Any]:
        if self._endpoint is None or not pipe.command_stack:
            return list(await pipe.execute(raise_on_error=False))
        try:
            payload = b"".join([hiredis.pack_command(tuple(args)) for args, _ in pipe.command_stack])  # type: ignore[arg-type]
        except TypeError:  # an argument type hiredis does not pack: let redis-py encode this batch
            return list(await pipe.execute(raise_on_error=False))
        conn = await self._connection()
        raw = await conn.request(payload, len(pipe.command_stack))
        return [_finish(pipe, args, options, reply) for (args, options), reply in zip(pipe.command_stack, raw,
                                                                                       strict=True)]

    async def _connection(self) -> _RespConnection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None or self._conn.closed:
                assert self._endpoint is not None
                self._conn = await _RespConnection.open(self._endpoint)
            return self._conn

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _finish(pipe: Pipeline, args: Sequence[Any], options: Mapping[str, Any], reply: Any) -> Any:
    """What redis-py's ``parse_response`` makes of one raw reply (errors become exception objects)."""
    if isinstance(reply, hiredis.ReplyError):
        return options.get(EMPTY_RESPONSE, ResponseError(str(reply)))
    options = {k: v for k, v in options.items() if k not in (EMPTY_RESPONSE, NEVER_DECODE, "keys")}
    callback = pipe.response_callbacks.get(args[0])
    return callback(reply, **options) if callback is not None else reply


_Endpoint = tuple[str, str | None, int, str | None, str | None, int]  # kind, host/path, port, user, password, db


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


class _RespConnection(asyncio.Protocol):
    """One RESP2 connection with unlimited pipelining: requests go out in order and replies come back in
    order, so each flush's future takes the next ``count`` replies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = deque()
        self.closed = False

    @classmethod
    async def open(cls, endpoint: _Endpoint, *, timeout_s: float = 5.0) -> _RespConnection:
        kind, where, port, user, password, db = endpoint
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                if kind == "unix":
                    _, conn = await loop.create_unix_connection(cls, str(where))
                else:
                    _, conn = await loop.create_connection(cls, str(where), port)
                hello: list[tuple[Any, ...]] = []
                if password is not None:
                    hello.append(("AUTH", user, password) if user else ("AUTH", password))
                if db:
                    hello.append(("SELECT", db))
                if hello:
                    replies = await conn.request(b"".join(hiredis.pack_command(c) for c in hello), len(hello))
                    if any(isinstance(r, hiredis.ReplyError) for r in replies):
                        conn.close()
                        raise StoreUnavailableError("redis refused AUTH/SELECT")
        except TimeoutError as exc:
            raise StoreUnavailableError("redis connect timed out") from exc
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        try:
            while (reply := self.reader.gets()) is not False:
                count, replies, future = waiting[0]
                replies.append(reply)
                if len(replies) == count:
                    waiting.popleft()
                    if not future.done():
                        future.set_result(replies)
        except (hiredis.ProtocolError, IndexError):  # garbage or an unsolicited reply: this stream is lost
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = StoreUnavailableError("redis connection lost")
        while self.waiting:
            _, _, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def request(self, payload: bytes, count: int) -> asyncio.Future[list[Any]]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if self.closed or self.transport is None:
            future.set_exception(StoreUnavailableError("redis connection closed"))
            return future
        self.waiting.append((count, [], future))
        self.transport.write(payload)
        return future

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        with contextlib.suppress(Exception):
            self.connection_lost(None)
