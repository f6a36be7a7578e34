"""The command batcher's own RESP connection (``_RespConnection``): flushes pipelined in order on one socket, the
replies parsed by hiredis and handed to each flush's command groups, each flush with its deadline timer.

Shared by gateway/batcher.py (one server) and gateway/clusterflush.py (one connection per cluster primary).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis

from gateway.errors import StoreUnavailableError
from gateway.redisio import BATCHER_OP, Command, _store_error

__all__ = ["MAX_OUTSTANDING_FLUSHES"]

# Flushes awaiting replies on one connection before it is declared hung and closed (replies are matched by
# order, so a server that stopped answering would otherwise grow this queue for as long as it stays silent).
MAX_OUTSTANDING_FLUSHES = 4096


class _Group:
    """The commands one caller submitted, the future that gets their replies, and the caller's deadline."""

    __slots__ = ("commands", "future", "timeout_s")

    def __init__(self, commands: Sequence[Command], future: asyncio.Future[list[Any]], timeout_s: float | None):
        self.commands = commands
        self.future = future
        self.timeout_s = timeout_s


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
        self.waiting.append(flight)
        self.transport.write(payload)
        if timeouts:
            first = min(timeouts)
            if first <= 0:
                # Already due: expired now. Armed as a timer, uvloop (which runs a delay under 1 ms as call_soon)
                # would run it only after the next poll, and a reply already in would be handed over first.
                _expire(flight, 0.0)
            else:
                flight.timer = asyncio.get_running_loop().call_later(first, _expire, flight, first)

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
