"""Structured logs: one JSON object per line, for the application's log records and for the access log.

Operators ship stderr to a log pipeline (journald, Docker, Kubernetes); a JSON line per event is what those
pipelines index without a parser per program. What may appear in a line is fixed here: the record's message
(code in this repository formats it and never puts a holder reference, a code string or a token in it:
``tests/gateway/test_access_log.py``), its logger, level and time, and for the access log the request id,
method, route template, status, duration and principal id. Never the raw path (it carries case ids) and never
a query string or body.

The access log is written on the request path, so it bypasses ``logging`` (a record costs several µs of lock,
formatting and handler dispatch per request): each answer appends one ``orjson`` line to a buffer, written with a
single ``write`` at most ``FLUSH_AFTER_S`` after its first line or as soon as it holds ``FLUSH_LINES`` lines, and at
shutdown (the app's cleanup). Like nginx's ``access_log ... buffer= flush=``: when requests arrive one at a time,
a write per loop turn was one more system call and one more loop turn per request (bench/RESULTS.md, open loop).
A process killed with SIGKILL loses at most the last ``FLUSH_AFTER_S`` of lines.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import BinaryIO

import orjson

__all__ = ["FLUSH_AFTER_S", "FLUSH_LINES", "LOG_FORMATS", "AccessLog", "JsonFormatter", "configure_logging"]

FLUSH_AFTER_S = 0.05  # the longest a line waits in the buffer
FLUSH_LINES = 256  # a buffer this full is written at once

LOG_FORMATS = ("json", "text")
_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg"}`` (+ ``"exc"``, the exception's class name only: a traceback's frames
    hold local variables' reprs in some handlers and a message can carry request data)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _iso(record.created), "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }  # fmt: skip
        if record.exc_info and record.exc_info[0] is not None:
            line["exc"] = record.exc_info[0].__name__
        return orjson.dumps(line).decode()


def configure_logging(log_format: str, *, level: int = logging.INFO) -> None:
    """The process's root handler on stderr, JSON or text (``Settings.log_format``); replaces earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class AccessLog:
    """One JSON line per answer, written in batches (see the module docstring)."""

    __slots__ = ("_clock", "_lines", "_timer", "flush_after_s", "stream")

    def __init__(
        self, stream: BinaryIO | None = None, *, clock: Callable[[], float] = time.time,
        flush_after_s: float = FLUSH_AFTER_S,
    ) -> None:  # fmt: skip
        self.stream = stream
        self.flush_after_s = flush_after_s
        self._lines: list[bytes] = []
        self._timer: asyncio.TimerHandle | None = None
        self._clock = clock

    def record(
        self, *, request_id: str, method: str, route: str, status: int, duration_s: float, principal: str | None
    ) -> None:
        self._lines.append(orjson.dumps({
            "ts": _iso(self._clock()), "level": "info", "logger": "placegate.access", "request_id": request_id,
            "method": method, "route": route, "status": status, "duration_ms": int(duration_s * 1e6) / 1000,
            "principal": principal,
        }) + b"\n")  # fmt: skip
        if len(self._lines) >= FLUSH_LINES:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_after_s, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        stream = self.stream if self.stream is not None else sys.stderr.buffer
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not fail requests
            pass


_second: list[tuple[int, str]] = [(-1, "")]  # the last formatted second: one strftime per second, not per line


def _iso(epoch_s: float) -> str:
    # Milliseconds, UTC, "Z": what log pipelines parse without configuration.
    whole = int(epoch_s)
    cached = _second[0]
    if cached[0] != whole:
        cached = _second[0] = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((epoch_s - whole) * 1000):03d}Z"
