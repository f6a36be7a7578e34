"""The command batcher's RESP fast path on a Redis Cluster: a flush split by primary, each part packed by hiredis
and written on a plain connection of that primary, as the batcher does on one server.

Why: through redis-py's cluster pipeline (a task per flush, slot lookup and packing per command in Python) a scan
cost the gateway 1.8x the CPU it costs on one server, with 28 % of the profile's samples in redis-py
(docs/performance.md, "Redis Cluster vs a single node"). Only a flush made entirely of commands whose key position
is known (``_KEY_AT``, the commands the batcher's callers submit) or of a keyless PING takes this path, and only
when every primary it needs has an open connection; anything else, TLS included, keeps redis-py's path (and a
missing connection is opened in the background), so no flush is worse off than before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Final

import hiredis
from redis.asyncio import RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import RedisClusterException

from gateway.redisio import BATCHER_OP, Command, _store_error
from gateway.respconn import _expire, _fail, _Flight, _Group, _RespConnection

__all__ = ["ClusterFlusher"]

# Commands whose one key is argv[1] (those the batcher's callers submit: gateway/scan/store.py, the status writer,
# the identity-card index, and a few of the same shape). Multi-key commands (DEL, EXISTS, MGET) are not here: their
# keys may span slots, which redis-py reports before sending.
_KEY_AT_1: Final = frozenset({
    "GET", "SET", "HGET", "HSET", "HDEL", "HINCRBY", "HMGET", "HGETALL", "INCR", "INCRBY", "EXPIRE", "PEXPIRE",
    "EXPIREAT", "PEXPIREAT", "TTL", "PTTL", "XADD", "ZADD", "ZREM", "SADD", "SREM",
})  # fmt: skip
_SCRIPTS: Final = frozenset({"EVALSHA", "EVAL"})  # script, numkeys, key...: the first key at argv[3]
# Error replies that mean the slot map is stale (a failover moved a slot): handed over as errors, the map re-read.
_TOPOLOGY: Final = ("MOVED", "ASK", "CLUSTERDOWN", "TRYAGAIN")
_KEYLESS: Final = object()  # the route of PING: every primary


def _name(command: Command) -> str:
    head = command[0]
    return (head.decode() if isinstance(head, bytes) else str(head)).upper()


class ClusterFlusher:
    """One plain RESP connection per primary of ``cluster``; ``send`` writes a flush on them when it can."""

    def __init__(self, cluster: RedisCluster, refresh_slots: Callable[[], None]) -> None:
        kw = cluster.connection_kwargs
        self._cluster = cluster
        self._refresh_slots = refresh_slots
        self._user: str | None = kw.get("username")
        self._password: str | None = kw.get("password")
        self._connect_timeout_s = float(kw.get("socket_connect_timeout") or 5.0)
        self._conns: dict[str, _RespConnection] = {}
        self._opening: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def usable(cluster: RedisCluster) -> bool:
        """Plain TCP with fixed credentials: what ``_RespConnection`` speaks (TLS stays with redis-py)."""
        kw = cluster.connection_kwargs
        return kw.get("connection_class") is Connection and kw.get("credential_provider") is None

    def send(self, batch: list[_Group]) -> bool:
        """Write ``batch`` as one payload per primary; False (nothing sent): the caller takes redis-py's path."""
        cluster = self._cluster
        if cluster._initialize:  # no slot map yet: redis-py's path reads it
            return False
        nodes = cluster.nodes_manager
        routes: list[object] = []  # per command: its primary's name, or _KEYLESS
        try:
            for group in batch:
                for command in group.commands:
                    name = _name(command)
                    if name in _KEY_AT_1 and len(command) > 1:
                        key = command[1]
                    elif name in _SCRIPTS and len(command) > 3 and int(command[2]) >= 1:
                        key = command[3]
                    elif name == "PING" and len(command) <= 2:  # PING [message]
                        routes.append(_KEYLESS)
                        continue
                    else:
                        return False
                    routes.append(nodes.get_node_from_slot(cluster.keyslot(key)).name)
            primaries = [node.name for node in cluster.get_primaries()]
        except (RedisClusterException, ValueError, TypeError):  # a slot no node serves (mid-failover), a bad numkeys
            return False
        needed = primaries if _KEYLESS in routes else sorted({r for r in routes if isinstance(r, str)})
        conns = {name: self._conns.get(name) for name in needed}
        missing = [name for name, conn in conns.items() if conn is None or conn.closed]
        if missing:
            for name in missing:
                self._open(name)
            return False
        payloads: dict[str, list[bytes]] = {name: [] for name in needed}
        # Per command: (primary, position in that primary's part) for each primary it went to.
        places: list[list[tuple[str, int]]] = []
        try:
            for command, route in zip((c for g in batch for c in g.commands), routes, strict=True):
                packed = hiredis.pack_command(command)  # type: ignore[arg-type]
                targets = primaries if route is _KEYLESS else [route]
                place = []
                for target in targets:
                    assert isinstance(target, str)
                    place.append((target, len(payloads[target])))
                    payloads[target].append(packed)
                places.append(place)
        except TypeError as exc:  # an argument hiredis cannot encode: a programming error, never a wire error
            _fail(batch, exc)
            return True
        join = _Join(batch, places, len(payloads), self._refresh_slots)
        for name, parts in payloads.items():
            if join.dead:  # a part already failed (its connection closed under it): send no more of this flush
                break
            conn = conns[name]
            assert conn is not None
            conn.send(b"".join(parts), [_Group(parts, _Part(join, name), None)], len(parts))  # type: ignore[arg-type]
        join.arm()
        return True

    def _open(self, name: str) -> None:
        if name in self._opening:
            return
        self._opening.add(name)
        task = asyncio.get_running_loop().create_task(self._connect(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, name: str) -> None:
        host, _, port = name.rpartition(":")
        try:
            conn = await _RespConnection.open(("tcp", host, int(port), self._user, self._password, 0),
                                              timeout_s=self._connect_timeout_s)  # fmt: skip
        except Exception:  # refused, timed out, AUTH refused: the flushes keep redis-py's path
            return
        finally:
            self._opening.discard(name)
        old = self._conns.get(name)
        if old is not None:
            old.close()
        self._conns[name] = conn

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


class _Join:
    """One flush's parts on their primaries: when every part is in, the replies go back in submission order; when
    one fails, the whole flush fails (no part that may have executed is sent again: writes are not idempotent)."""

    __slots__ = ("batch", "dead", "left", "parts", "places", "refresh", "whole")

    def __init__(
        self, batch: list[_Group], places: list[list[tuple[str, int]]], parts: int, refresh: Callable[[], None]
    ) -> None:
        self.batch = batch
        self.places = places
        self.left = parts
        self.parts: dict[str, list[Any]] = {}
        self.refresh = refresh
        self.dead = False
        # The deadlines run on the flush as a whole, exactly as one flight on one server (``_expire``).
        self.whole = _Flight(batch, len(places))

    def arm(self) -> None:
        if self.dead:
            return
        timeouts = [g.timeout_s for g in self.batch if g.timeout_s is not None]
        if timeouts:
            first = min(timeouts)
            if first <= 0:
                _expire(self.whole, 0.0)
            else:
                self.whole.timer = asyncio.get_running_loop().call_later(first, _expire, self.whole, first)

    def arrived(self, name: str, replies: list[Any]) -> None:
        if self.dead:
            return
        self.parts[name] = replies
        self.left -= 1
        if self.left:
            return
        self._stop()
        out: list[Any] = []
        stale = False
        for place in self.places:
            got = [self.parts[name][at] for name, at in place]
            # PING went to every primary: the store is up only when each answered (the worst reply stands).
            reply = next((r for r in got if isinstance(r, Exception)), got[0])
            if isinstance(reply, Exception) and str(reply).startswith(_TOPOLOGY):
                stale = True
            out.append(reply)
        for group, replies in _split(self.batch, out):
            if not group.future.done():
                group.future.set_result(replies)
        if stale:
            self.refresh()

    def failed(self, error: BaseException) -> None:
        if self.dead:
            return
        self._stop()
        counted = True  # the part's own failure was counted once (``_fail``): that stands for the first caller
        for group in self.batch:
            if not group.future.done():
                group.future.set_exception(error)
                if not counted:
                    _store_error(BATCHER_OP)
                counted = False
        self.refresh()  # a lost primary: its replica may have taken over

    def _stop(self) -> None:
        self.dead = True
        if self.whole.timer is not None:
            self.whole.timer.cancel()
            self.whole.timer = None


def _split(batch: Sequence[_Group], replies: list[Any]) -> list[tuple[_Group, list[Any]]]:
    out = []
    at = 0
    for group in batch:
        out.append((group, replies[at : at + len(group.commands)]))
        at += len(group.commands)
    return out


class _Part:
    """Stands for a future in the part's one ``_Group``: the connection hands it the part's replies (server errors
    already made exception values) or its failure, and it passes them to the join synchronously, in the same
    callback (an asyncio future's callbacks would cost one more loop turn)."""

    __slots__ = ("_done", "join", "name")

    def __init__(self, join: _Join, name: str) -> None:
        self.join = join
        self.name = name
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, replies: list[Any]) -> None:
        self._done = True
        self.join.arrived(self.name, replies)

    def set_exception(self, error: BaseException) -> None:
        self._done = True
        self.join.failed(error)
