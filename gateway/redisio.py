"""Redis connections (one server, TLS, Cluster, Sentinel) and the one translator of Redis errors.

Every redis exception is translated into ``StoreUnavailableError`` by the one translator, ``redis_errors``, at
the store boundary; no other module sees one. The scan path's command batcher, which coalesces one event-loop
turn's commands into one pipeline, is gateway/batcher.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast
from urllib.parse import unquote

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode, _ClusterNodePoolAdapter
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    NoScriptError,
    RedisClusterException,
    RedisError,
)

from gateway.errors import StoreUnavailableError

__all__ = [
    "BATCHER_OP",
    "CLUSTER_SCHEMES",
    "SENTINEL_SCHEMES",
    "Command",
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
