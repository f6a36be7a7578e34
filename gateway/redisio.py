"""Redis connections and the command batcher that coalesces one event-loop turn's commands into one pipeline.

One awaited redis-py command costs about 50 µs of client CPU (docs/performance.md); sending every
command queued during a loop turn as one pipeline pays that cost once per turn instead of once per command.
Every redis exception is translated into ``StoreUnavailableError`` by the one translator, ``redis_errors``, at
the store boundary; no other module sees one.

The hot path speaks RESP itself: callers submit plain command tuples, hiredis packs them and parses the replies
on one pipelined connection per batcher (``_RespConnection``), and the flush is written from the loop-turn
callback itself, with one deadline timer per flush instead of one per command group. redis-py's generic
pipeline costs about 10 µs of client CPU per command and tens per execute even with hiredis (measured:
bench/RESULTS.md, docs/performance.md). TLS and cluster clients, which that connection does not speak, fall
back to a redis-py pipeline with its reply callbacks switched off, so both paths return the same raw replies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast
from urllib.parse import unquote

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode, _ClusterNodePoolAdapter
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.client import CaseInsensitiveDict
from redis.exceptions import (
    ClusterDownError,
    ConnectionError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    TimeoutError,
    TryAgainError,
)

from gateway.errors import StoreUnavailableError

__all__ = [
    "BATCHER_OP",
    "CLUSTER_SCHEMES",
    "SENTINEL_SCHEMES",
    "Command",
    "CommandBatcher",
    "MultiHostUrl",
    "StoreErrorSink",
    "connect_redis",
    "count_store_errors",
    "execute_in_order",
    "is_cluster",
    "is_noscript",
    "one_connection",
    "redis_errors",
    "slot_client",
    "store_op",
]

# One Redis command: name then arguments, each bytes, str, int or float (what hiredis.pack_command encodes).
Command = tuple[bytes | str | int | float, ...]
# Flushes awaiting replies on one connection before it is declared hung and closed (replies are matched by
# order, so a server that stopped answering would otherwise grow this queue for as long as it stays silent).
MAX_OUTSTANDING_FLUSHES = 4096


def connect_redis(
    url: str, *, max_connections: int = 64, connect_timeout_s: float = 1.0, socket_timeout_s: float = 5.0
) -> Redis:
    """A client for ``redis://``, ``rediss://`` or ``unix://`` URLs, a Redis Cluster for
    ``redis+cluster://h1:p1,h2:p2`` (``rediss+cluster://`` with TLS), or the current primary named by Sentinels for
    ``redis+sentinel://h1:p1,h2:p2/service`` (``rediss+sentinel://``); bytes in, bytes out.

    Every connect and every reply is bounded (redis-py waits for ever by default: a stopped server would hold a
    caller until the kernel gives up); the scan path's own deadlines are shorter (``CommandBatcher``).
    """
    scheme = url.partition("://")[0]
    if scheme in CLUSTER_SCHEMES:
        return _cluster(url, max_connections, connect_timeout_s, socket_timeout_s)
    if scheme in SENTINEL_SCHEMES:
        return _sentinel(url, max_connections, connect_timeout_s, socket_timeout_s)
    # A blocking pool: a burst beyond max_connections waits (bounded) for a free connection instead of failing
    # the request with "too many connections".
    pool = BlockingConnectionPool.from_url(
        url, decode_responses=False, max_connections=max_connections, timeout=5, health_check_interval=30,
        socket_connect_timeout=connect_timeout_s, socket_timeout=socket_timeout_s,
    )  # fmt: skip
    return Redis.from_pool(pool)


CLUSTER_SCHEMES: Final = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES: Final = ("redis+sentinel", "rediss+sentinel")
# Marks a command the batcher sends through a cluster pipeline: its reply comes back raw, as hiredis parses it
# (redis-py's reply callbacks would turn ``SET ... GET`` into a bool).
_RAW: Final = "_placegate_raw"
_KEYLESS: Final = frozenset({"PING"})
# Replies of a cluster flush that mean the slot map may be stale (a primary died, its replica took over).
_TOPOLOGY_ERRORS: Final = (ConnectionError, TimeoutError, ClusterDownError, MovedError, TryAgainError)
_REFRESH_EVERY_S: Final = 0.5


@dataclass(frozen=True, slots=True)
class MultiHostUrl:
    """A ``redis+cluster://`` or ``redis+sentinel://`` URL: several ``host:port`` and optional credentials."""

    tls: bool
    hosts: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    path: str  # the Sentinel service name; unused for a cluster

    @classmethod
    def parse(cls, url: str) -> MultiHostUrl:
        """:raises ValueError: no host, or a host without a numeric port (the message never echoes a password)."""
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise ValueError("no scheme")
        netloc, _, path = rest.partition("/")
        userinfo, at, hostpart = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        hosts: list[tuple[str, int]] = []
        for item in hostpart.split(","):
            host, colon, port = item.strip().rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("expected host:port[,host:port...]")
            hosts.append((host.strip("[]"), int(port)))
        return cls(scheme.startswith("rediss"), tuple(hosts), username, password, unquote(path.partition("?")[0]))


def _cluster(url: str, max_connections: int, connect_timeout_s: float, socket_timeout_s: float) -> Redis:
    parsed = MultiHostUrl.parse(url)
    client = RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parsed.hosts], username=parsed.username,
        password=parsed.password, ssl=parsed.tls, decode_responses=False, max_connections=max_connections,
        socket_connect_timeout=connect_timeout_s, socket_timeout=socket_timeout_s,
        # A failover moves slots: redirections and a refreshed slot map are followed a few times, each bounded.
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3),
    )  # fmt: skip
    # One dict shared by every node of this client: wrapped in place, so a command the batcher marks keeps its raw
    # reply while every other caller gets redis-py's parsed one.
    callbacks = client.response_callbacks
    for name, callback in list(callbacks.items()):
        callbacks[name] = _raw_aware(callback)
    # Typed as the single-node client: the callers use the command surface both share (RedisCluster has no
    # ``client()``; the few sites that need one connection ask ``is_cluster`` first).
    return cast(Redis, client)


def _raw_aware(callback: Callable[..., Any]) -> Callable[..., Any]:
    def parse(response: Any, **options: Any) -> Any:
        if options.pop(_RAW, False):
            return response
        return callback(response, **options)

    return parse


def _sentinel(url: str, max_connections: int, connect_timeout_s: float, socket_timeout_s: float) -> Redis:
    parsed = MultiHostUrl.parse(url)
    if not parsed.path:
        raise ValueError("a redis+sentinel:// URL names its service: redis+sentinel://h1:p1,h2:p2/service")
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.hosts), sentinel_kwargs={"socket_connect_timeout": connect_timeout_s,
                                             "socket_timeout": socket_timeout_s, "ssl": parsed.tls},
        username=parsed.username, password=parsed.password, ssl=parsed.tls, decode_responses=False,
        socket_connect_timeout=connect_timeout_s, socket_timeout=socket_timeout_s, health_check_interval=30,
    )  # fmt: skip
    # Each new connection asks the sentinels for the current primary: after a failover the next connect finds
    # the promoted replica (a connection to a demoted primary fails with READONLY and is dropped).
    return cast(Redis, sentinel.master_for(parsed.path, redis_class=Redis, max_connections=max_connections))


async def execute_in_order(redis: Redis, groups: Sequence[Sequence[Command]]) -> list[Any]:
    """Run command groups whose commands each share one slot: on one server all in one MULTI; on a cluster one
    MULTI per group (keys of different slots cannot share one), one after the other, so a later group (a version
    counter workers poll) never lands before an earlier one (the data it announces), and a reader that reads the
    groups in the same order never sees a counter ahead of its data. Replies flat, in order, parsed by redis-py."""
    if not is_cluster(redis):
        pipe = redis.pipeline(transaction=True)
        for group in groups:
            for command in group:
                pipe.execute_command(*command)
        return list(await pipe.execute())
    replies: list[Any] = []
    for group in groups:
        if len(group) == 1:
            replies.append(await redis.execute_command(*group[0]))  # type: ignore[no-untyped-call]
            continue
        # Not redis-py's cluster transaction (it resolves slots in a thread with a loop of its own): a MULTI on a
        # plain connection to the group's primary.
        async with slot_client(redis, str(group[0][1])) as client:
            pipe = client.pipeline(transaction=True)
            for command in group:
                pipe.execute_command(*command)
            replies += await pipe.execute()
    return replies


@contextlib.asynccontextmanager
async def slot_client(redis: Redis, key: str) -> AsyncIterator[Redis]:
    """The client to WATCH ``key`` with: ``redis`` itself on one server; on a cluster, a plain client of the
    primary serving ``key``'s slot, closed afterwards (redis-py's cluster transactions run a WATCH-time read in
    a thread with a loop of its own, which an asyncio gateway cannot use). Every key of the transaction must
    share ``key``'s slot (a hash tag); a slot that moved meanwhile answers MOVED, a store error the caller retries.
    """
    if not is_cluster(redis):
        yield redis
        return
    cluster = cast(RedisCluster, redis)
    await cluster.initialize()
    # The node's own connections (no connect per transaction): redis-py's adapter lends one from the node's
    # free list and takes it back; closing this client leaves the node's pool alone.
    client = Redis(connection_pool=_ClusterNodePoolAdapter(cluster.get_node_from_key(key)))  # type: ignore[arg-type]
    try:
        yield client
    finally:
        await client.aclose(close_connection_pool=False)


def is_cluster(redis: Redis) -> bool:
    """Whether ``redis`` is a Redis Cluster client (``connect_redis`` of a ``redis+cluster://`` URL)."""
    return isinstance(redis, RedisCluster)


# Who counts failed store calls (placegate_store_errors_total{op}): the running app's Metrics.count_store_error.
# A module-level hook because the stores, registries and the batcher are built far from the app and outlive no
# process; a stack because a test process runs many apps: the newest running one counts, and an app that stops
# removes only its own sink (gateway/observe.py installs it for the app's whole life).
StoreErrorSink = Callable[[str], None]
_sinks: list[StoreErrorSink] = []
# The op of a command group that failed in the batcher (it does not know which call site submitted the group).
BATCHER_OP = "batcher"


def count_store_errors(sink: StoreErrorSink) -> Callable[[], None]:
    """Send every failed store call's op to ``sink`` until the returned function is called."""
    _sinks.append(sink)

    def remove() -> None:
        for i in range(len(_sinks) - 1, -1, -1):
            if _sinks[i] is sink:
                del _sinks[i]
                return

    return remove


def store_op(what: str) -> str:
    """The metric label of a translator's ``what``: ``"principal registry"`` -> ``principal_registry``."""
    return "_".join(what.lower().split())


def _store_error(op: str) -> None:
    if _sinks:
        _sinks[-1](op)


def redis_errors(what: str) -> contextlib.AbstractContextManager[None]:
    """``with redis_errors("cases"): ...``: the ONE place a redis or socket error becomes the store's error.

    ``RedisError`` and ``OSError`` (a refused or reset connection, a missing socket, and ``TimeoutError``, which
    is an ``OSError``) raise ``StoreUnavailableError(f"{what} unavailable")`` from the original, counted under
    ``store_op(what)``; anything else passes unchanged. ``what`` is a literal at every call site
    (tests/gateway/test_observe.py holds it so): it becomes a metric label. A site that treats one redis error
    differently (``WatchError``, a ``BUSYGROUP`` reply) catches it inside the ``with``: a redis error it
    re-raises is translated here.
    """
    return _translated(what, counted=True)


@contextlib.contextmanager
def _translated(what: str, *, counted: bool) -> Iterator[None]:
    try:
        yield
    # The translator itself (httpx's map_httpcore_exceptions). RedisClusterException: a cluster's own refusals (no
    # node serves a slot during a failover) are no RedisError.
    except (RedisError, RedisClusterException, OSError) as exc:
        if counted:
            _store_error(store_op(what))
        raise StoreUnavailableError(f"{what} unavailable") from exc


@contextlib.asynccontextmanager
async def one_connection(redis: Redis, key: str | None = None) -> AsyncIterator[Redis]:
    """A client bound to one pooled connection (WAITAOF counts that connection's writes), given back however the
    block ends. Not ``async with redis.client()``: redis-py's ``__aexit__`` awaits a shielded step before it
    closes, so a cancellation landing there (a consumer stopped at shutdown) skips the close and leaks the
    connection ("Unclosed client session" at collection). Here the close runs as a task of its own that the
    caller's cancellation cannot stop.

    On a cluster the connection is one of the primary serving ``key``'s slot (required there: every key used on
    the connection must share that slot, a hash tag); on one server ``key`` changes nothing.
    """
    if is_cluster(redis) and key is None:
        raise ValueError("one_connection on a cluster needs the key whose slot the connection serves")
    async with slot_client(redis, key or "") as client:
        conn = client.client()
        try:
            yield conn
        finally:
            await asyncio.shield(asyncio.ensure_future(conn.aclose()))


def is_noscript(reply: object) -> bool:
    """A reply saying the server does not know the script (it restarted, or SCRIPT FLUSH ran)."""
    return isinstance(reply, NoScriptError) or (isinstance(reply, Exception) and str(reply).startswith("NOSCRIPT"))


class _Group:
    """The commands one caller submitted, the future that gets their replies, and the caller's deadline."""

    __slots__ = ("commands", "future", "timeout_s")

    def __init__(self, commands: Sequence[Command], future: asyncio.Future[list[Any]], timeout_s: float | None):
        self.commands = commands
        self.future = future
        self.timeout_s = timeout_s


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
        task = asyncio.get_running_loop().create_task(self._send_slow(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, conn: _RespConnection, batch: list[_Group]) -> None:
        commands = [command for group in batch for command in group.commands]
        self.flushes += 1
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


def _settle(flight: asyncio.Future[Any]) -> None:
    """A shielded pipeline ended: forget it; its error, if nobody awaits it any more, is not worth a warning."""
    if not flight.cancelled():
        flight.exception()


def _distribute(batch: Sequence[_Group], replies: Sequence[Any]) -> None:
    at = 0
    for group in batch:
        size = len(group.commands)
        if not group.future.done():
            group.future.set_result([_reply(r) for r in replies[at : at + size]])
        at += size


def _reply(raw: Any) -> Any:
    # hiredis hands server errors back as ReplyError values; callers see exception objects, never raw errors.
    return StoreUnavailableError(str(raw)) if isinstance(raw, hiredis.ReplyError) else raw


def _fail(batch: Sequence[_Group], error: BaseException) -> None:
    for group in batch:
        if not group.future.done():
            group.future.set_exception(error)
            if isinstance(error, StoreUnavailableError):  # not a programming error (an unencodable argument)
                _store_error(BATCHER_OP)


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


class _Flight:
    """One flush on the wire: its groups, the replies so far, and the deadline timer."""

    __slots__ = ("batch", "count", "replies", "timer")

    def __init__(self, batch: list[_Group], count: int) -> None:
        self.batch = batch
        self.count = count
        self.replies: list[Any] = []
        self.timer: asyncio.TimerHandle | None = None


class _RespConnection(asyncio.Protocol):
    """One RESP2 connection with unlimited pipelining: requests go out in order and replies come back in
    order, so each flush takes the next ``count`` replies."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: deque[_Flight] = deque()
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
                hello: list[Command] = []
                if password is not None:
                    hello.append(("AUTH", user, password) if user else ("AUTH", password))
                if db:
                    hello.append(("SELECT", db))
                if hello:
                    future: asyncio.Future[list[Any]] = loop.create_future()
                    conn.send(b"".join(hiredis.pack_command(c) for c in hello),  # type: ignore[arg-type]
                              [_Group(hello, future, None)], len(hello))
                    if any(isinstance(r, Exception) for r in await future):
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
                flight = waiting[0]
                flight.replies.append(reply)
                if len(flight.replies) == flight.count:
                    waiting.popleft()
                    if flight.timer is not None:
                        flight.timer.cancel()
                    _distribute(flight.batch, flight.replies)
        except (hiredis.ProtocolError, IndexError):  # garbage or an unsolicited reply: this stream is lost
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = StoreUnavailableError("redis connection lost")
        while self.waiting:
            flight = self.waiting.popleft()
            if flight.timer is not None:
                flight.timer.cancel()
            _fail(flight.batch, error)

    def send(self, payload: bytes, batch: list[_Group], count: int) -> None:
        if self.closed or self.transport is None:
            _fail(batch, StoreUnavailableError("redis connection closed"))
            return
        if len(self.waiting) >= MAX_OUTSTANDING_FLUSHES:
            _fail(batch, StoreUnavailableError("redis is not answering"))
            self.close()
            return
        flight = _Flight(batch, count)
        timeouts = [g.timeout_s for g in batch if g.timeout_s is not None]
        if timeouts:
            first = min(timeouts)
            flight.timer = asyncio.get_running_loop().call_later(first, _expire, flight, first)
        self.waiting.append(flight)
        self.transport.write(payload)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()
        with contextlib.suppress(Exception):
            self.connection_lost(None)


def _expire(flight: _Flight, elapsed_s: float) -> None:
    """A deadline in the flush passed: the callers whose time is up get an error now, the others keep waiting
    (the next deadline is re-armed). The flight stays queued, so its replies, when they come, are still matched
    in order; those for failed callers are dropped (their futures are done)."""
    flight.timer = None
    expired = StoreUnavailableError("redis timed out")
    later: list[float] = []
    for group in flight.batch:
        if group.timeout_s is None or group.future.done():
            continue
        if group.timeout_s <= elapsed_s:
            group.future.set_exception(expired)
            _store_error(BATCHER_OP)
        else:
            later.append(group.timeout_s)
    if later:
        nxt = min(later)
        flight.timer = asyncio.get_running_loop().call_later(nxt - elapsed_s, _expire, flight, nxt)
