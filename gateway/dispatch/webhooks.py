"""Department webhooks: a department is told when a case is dispatched to it, escalated or flagged overdue.

The table (``PLACEGATE_DISPATCH_WEBHOOKS_FILE``, TOML) names per department a URL and where its HMAC key is::

    [departments.roads]
    url = "https://roads.example.org/placegate"
    key_env = "ROADS_WEBHOOK_KEY"        # or key_file = "/run/secrets/roads-webhook"

It is validated at start-up like the routing table: a bad table, or a key that is missing or shorter than 16
bytes, stops the gateway. No table: nobody is notified and nothing is staged.

Outbox, at-least-once, staged *before* the case write: ``Outbox.stage`` runs inside ``CaseStore.write`` and
``write_unacknowledged`` (the store's ``before_write`` hook) and adds one member per notifying history entry the
write appends (``case id|history index|event|department``) to ``pg:dispatch:notify`` with ``ZADD NX``. The case
script runs in the case's slot and the outbox is another key, so they cannot be one atomic write (Redis
Cluster); staging first means a crash between the two leaves an outbox entry for a write that may not have
happened, never a written event without an entry. The delivery loop checks each entry against the stored
history: the entry at that index must be the staged action, else the entry is dropped (the write lost a race:
the winner staged its own, or never happened). The delivery id is ``case id:history index``, the same for every
copy, so a receiver deduplicates a repeated delivery by ``X-Placegate-Delivery``.

Delivery (one process at a time, a lease like the sweeper's): a JSON POST ``{event, case_id, department, at,
level, state}`` with ``X-Placegate-Signature: sha256=<hex HMAC-SHA256(key, body)>``; 2xx is delivered, anything
else (another status, a timeout, a refused connection) is retried after ``webhook_backoff_s`` doubled per
failure (capped), and after ``webhook_max_attempts`` marked failed. Each case's statuses live in
``pg:case:{id}:notify`` (no URL, no key): ``GET /v1/cases/{id}`` shows them as ``notifications``.
The outbox carries case ids, event kinds and departments only: no holder, no note.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
import tomllib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from redis.asyncio import Redis

from gateway import keyspace
from gateway.redisio import redis_errors
from policy.casework import Action, Case

__all__ = [
    "EVENTS",
    "Outbox",
    "Webhook",
    "WebhookDelivery",
    "WebhookTableError",
    "load_webhooks",
    "notifications_of",
    "parse_webhooks",
    "signature",
]

log = logging.getLogger("placegate.dispatch")

# The history actions that notify, by the event name the receiver sees.
EVENTS: Mapping[Action, str] = {Action.DISPATCH: "dispatched", Action.ESCALATE: "escalated",
                                Action.FLAG_OVERDUE: "overdue"}  # fmt: skip
_ACTIONS = {name: action for action, name in EVENTS.items()}
_MIN_KEY_BYTES = 16


class WebhookTableError(ValueError):
    """The webhook table does not parse or names a key that is not there."""


@dataclass(frozen=True, slots=True)
class Webhook:
    department: str
    url: str
    key: bytes = field(repr=False)


def signature(key: bytes, body: bytes) -> str:
    """The ``X-Placegate-Signature`` value of ``body``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def parse_webhooks(text: str, *, environ: Mapping[str, str], base: Path) -> dict[str, Webhook]:
    """Department -> webhook. :raises WebhookTableError: naming the department and the fault."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise WebhookTableError(f"not TOML: {exc}") from None
    departments = doc.get("departments")
    if set(doc) - {"departments"} or not isinstance(departments, dict):
        raise WebhookTableError("expected one [departments.<name>] table per department and nothing else")
    table: dict[str, Webhook] = {}
    for name, entry in departments.items():
        if not isinstance(entry, dict) or set(entry) - {"url", "key_env", "key_file"}:
            raise WebhookTableError(f"{name}: expected url and one of key_env, key_file")
        url = entry.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookTableError(f"{name}: url must be an http(s) URL")
        if ("key_env" in entry) == ("key_file" in entry):
            raise WebhookTableError(f"{name}: exactly one of key_env, key_file")
        if "key_env" in entry:
            raw = environ.get(str(entry["key_env"]), "")
        else:
            path = base / str(entry["key_file"])
            try:
                raw = path.read_text("utf-8")
            except OSError as exc:
                raise WebhookTableError(f"{name}: cannot read key_file ({exc.strerror})") from None
        key = raw.strip().encode()
        if len(key) < _MIN_KEY_BYTES:
            raise WebhookTableError(f"{name}: the HMAC key is missing or shorter than {_MIN_KEY_BYTES} bytes")
        table[name] = Webhook(name, url, key)  # type: ignore[arg-type]  # url checked above
    return table


def load_webhooks(path: Path | None, environ: Mapping[str, str] = os.environ) -> dict[str, Webhook]:
    """The table of ``path`` (relative key files are relative to it); none: ``{}``."""
    if path is None:
        return {}
    return parse_webhooks(path.read_text("utf-8"), environ=environ, base=path.parent)


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One staged notification: a history entry of a case, for the department it names."""

    case_id: str
    index: int
    event: str
    department: str

    @property
    def member(self) -> str:
        return f"{self.case_id}|{self.index}|{self.event}|{self.department}"

    @property
    def delivery_id(self) -> str:
        return f"{self.case_id}:{self.index}"

    @classmethod
    def parse(cls, member: str) -> WebhookDelivery | None:
        parts = member.split("|")
        if len(parts) != 4 or not parts[1].isdigit() or parts[2] not in _ACTIONS:
            return None
        return cls(parts[0], int(parts[1]), parts[2], parts[3])


def staged(old: Case | None, new: Case, departments: Mapping[str, Webhook]) -> list[WebhookDelivery]:
    """The deliveries a write from ``old`` to ``new`` causes: one per appended notifying entry whose department
    has a webhook."""
    done = len(old.history) if old is not None else 0
    return [
        WebhookDelivery(new.case_id, done + i, EVENTS[e.action], e.department)
        for i, e in enumerate(new.history[done:])
        if e.action in EVENTS and e.department in departments
    ]


async def notifications_of(redis: Redis, case_id: str) -> list[dict[str, Any]]:
    """The case's delivery statuses, oldest event first (``GET /v1/cases/{id}``)."""
    with redis_errors("webhook statuses"):
        raw = await redis.hgetall(keyspace.case_notify_key(case_id))
    items = sorted(((int(k), orjson.loads(v)) for k, v in raw.items()), key=lambda kv: kv[0])
    return [v for _, v in items]


Post = Callable[[Webhook, bytes, str], Awaitable[str | None]]


class Outbox:
    """Stages deliveries beside case writes and delivers them; every redis error becomes
    ``StoreUnavailableError``."""

    def __init__(
        self,
        redis: Redis,
        webhooks: Mapping[str, Webhook],
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 8,
        backoff_s: float = 2.0,
        backoff_max_s: float = 3600.0,
        retention_ms: int = keyspace.CASE_RETENTION_S * 1000,
        batch: int = 32,
    ) -> None:
        self.redis = redis
        self.webhooks = dict(webhooks)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.retention_ms = retention_ms
        self.batch = batch
        self._unwritten: dict[str, int] = {}  # staged entries not (yet) in the history: tries, this process

    # --- staging (the store's before_write hook) -----------------------------------------------------------
    async def stage(self, changes: Sequence[tuple[Case | None, Case]]) -> None:
        deliveries = [d for old, new in changes for d in staged(old, new, self.webhooks)]
        if not deliveries:
            return
        now_ms = int(time.time() * 1000)
        with redis_errors("webhook outbox"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zadd(keyspace.NOTIFY_OUTBOX, {d.member: now_ms for d in deliveries}, nx=True)
                pipe.pexpire(keyspace.NOTIFY_OUTBOX, self.retention_ms)
                await pipe.execute()

    # --- delivery ------------------------------------------------------------------------------------------
    def backoff_ms(self, attempts: int) -> int:
        """The wait after the ``attempts``-th failure."""
        return int(min(self.backoff_max_s, self.backoff_s * 2 ** (attempts - 1)) * 1000)

    async def deliver_due(
        self, read_case: Callable[[str], Awaitable[Case | None]], *, keep: Callable[[], Awaitable[bool]] | None = None
    ) -> int:
        """Attempt every delivery whose time has come (at most ``batch``); how many were attempted."""
        now_ms = int(time.time() * 1000)
        with redis_errors("webhook outbox"):
            members = await self.redis.zrangebyscore(keyspace.NOTIFY_OUTBOX, "-inf", now_ms, start=0, num=self.batch)
        attempted = 0
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as session:
            for raw in members:
                if keep is not None and not await keep():
                    break
                member = raw.decode() if isinstance(raw, bytes) else str(raw)
                attempted += await self._deliver(session, member, read_case)
        return attempted

    async def _drop(self, member: str) -> None:
        self._unwritten.pop(member, None)
        with redis_errors("webhook outbox"):
            await self.redis.zrem(keyspace.NOTIFY_OUTBOX, member)

    async def _deliver(
        self, session: aiohttp.ClientSession, member: str, read_case: Callable[[str], Awaitable[Case | None]]
    ) -> int:
        delivery = WebhookDelivery.parse(member)
        hook = self.webhooks.get(delivery.department) if delivery else None
        if delivery is None or hook is None:  # malformed, or the department's webhook was removed
            await self._drop(member)
            return 0
        case = await read_case(delivery.case_id)
        if case is None or len(case.history) <= delivery.index:
            # Staged before a write that has not landed (yet): give it the backoff, then drop it.
            tries = self._unwritten[member] = self._unwritten.get(member, 0) + 1
            if (case is None and tries >= 2) or tries >= self.max_attempts:
                await self._drop(member)
            else:
                with redis_errors("webhook outbox"):
                    await self.redis.zadd(keyspace.NOTIFY_OUTBOX, {member: time.time() * 1000 + self.backoff_ms(tries)})
            return 0
        entry = case.history[delivery.index]
        if EVENTS.get(entry.action) != delivery.event:  # the write lost a race: the winner staged its own
            await self._drop(member)
            return 0
        self._unwritten.pop(member, None)
        status_key = keyspace.case_notify_key(delivery.case_id)
        with redis_errors("webhook statuses"):
            prior = await self.redis.hget(status_key, str(delivery.index))
        record = orjson.loads(prior) if prior else {}
        if record.get("status") in ("delivered", "failed"):  # a repeated copy of a finished delivery
            await self._drop(member)
            return 0
        body = orjson.dumps({
            "event": delivery.event, "case_id": delivery.case_id, "department": delivery.department,
            "at": entry.at.isoformat(), "level": str(entry.level), "state": str(entry.to_state),
        })  # fmt: skip
        error = await self._post(session, hook, body, delivery.delivery_id)
        attempts = int(record.get("attempts", 0)) + 1
        status = "delivered" if error is None else "failed" if attempts >= self.max_attempts else "retrying"
        record = {"event": delivery.event, "department": delivery.department, "status": status,
                  "attempts": attempts, "last_error_code": error}  # fmt: skip
        with redis_errors("webhook statuses"):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(status_key, str(delivery.index), orjson.dumps(record))
                pipe.pexpire(status_key, self.retention_ms)
                if status == "retrying":
                    pipe.zadd(keyspace.NOTIFY_OUTBOX, {member: time.time() * 1000 + self.backoff_ms(attempts)})
                else:
                    pipe.zrem(keyspace.NOTIFY_OUTBOX, member)
                await pipe.execute()
        if error is not None:
            log.warning("webhook %s for %s: attempt %d failed (%s)", delivery.delivery_id, delivery.department,
                        attempts, error)  # fmt: skip
        return 1

    async def _post(self, session: aiohttp.ClientSession, hook: Webhook, body: bytes, delivery_id: str) -> str | None:
        """POST one delivery; ``None`` on a 2xx answer, else a stable error code (never the URL)."""
        headers = {"Content-Type": "application/json", "X-Placegate-Signature": signature(hook.key, body),
                   "X-Placegate-Delivery": delivery_id}  # fmt: skip
        try:
            async with session.post(hook.url, data=body, headers=headers, allow_redirects=False) as response:
                await response.read()
                return None if 200 <= response.status < 300 else f"http_{response.status}"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError:
            return "unreachable"
