"""The dispatch core's background jobs: the intake consumer (events become routed cases) and the sweeper.

Intake is a consumer group on ``pg:dispatch:intake``: at-least-once delivery, idempotent because the case id is
derived from the event id and the case write only succeeds on an empty history (a redelivered event finds its
case and is acknowledged again). An event is acknowledged (XACK) only after its case is confirmed on disk.
Pending events of a crashed consumer are taken over with XAUTOCLAIM once idle for ``claim_idle_ms``; an event
that fails ``max_deliveries`` times, or can never succeed (malformed, unknown class, place outside the routing
table), is copied to ``pg:dispatch:deadletter`` with a reason code and acknowledged. Dead letters keep the
intake stream's retention; the sweep trims both streams by time. The event format is ``gateway.intake``.

Logs name event ids, case ids, event classes and error codes only, never a holder or a note.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway import keyspace
from gateway.dispatch.store import CaseStore, case_id_for_event
from gateway.errors import GatewayError, StoreUnavailableError
from gateway.intake import IntakeEvent, MalformedEventError, decode_fields, parse_event
from gateway.redisio import redis_errors
from policy.case_errors import CaseError
from policy.casework import TERMINAL_STATES, Action, Actor, Case, Role, apply_transition, new_case
from policy.deadlines import DeadlineTable, sweep
from policy.routing import RoutingTable, parse_jurisdiction

__all__ = [
    "GROUP",
    "SYSTEM_ACTOR",
    "IntakeWorker",
    "SweepReport",
    "open_case",
    "sweep_open_cases",
    "trim_to_retention",
]

log = logging.getLogger("placegate.dispatch")
GROUP = "dispatch"
SYSTEM_ACTOR = Actor("dispatch-worker", Role.SYSTEM)
Clock = Callable[[], datetime]


def open_case(
    event: IntakeEvent, *, routing: RoutingTable, deadlines: DeadlineTable, now: datetime, auto_intake: bool
) -> Case:
    """The case an event becomes: routed, reported by its source, and (``auto_intake``) accepted, filed and
    dispatched by the system. :raises CaseError: unknown class, bad path, no route (permanent)."""
    jurisdiction = parse_jurisdiction(event.jurisdiction)
    route = routing.route(event.event_class, jurisdiction)
    reported_at = min(event.occurred_at, now)
    case = new_case(
        case_id=case_id_for_event(event.event_id), event_class=event.event_class, place_id=event.place_id,
        jurisdiction=jurisdiction, department=route.department, actor=Actor(event.actor_id, Role.SOURCE),
        now=reported_at, urgent=route.urgent, note=event.note,
    )  # fmt: skip
    if auto_intake:
        for action in (Action.ACCEPT, Action.FILE, Action.DISPATCH):
            case = apply_transition(case, action, actor=SYSTEM_ACTOR, now=now, deadlines=deadlines)
    return case


class IntakeWorker:
    """One consumer of the intake group; run many (processes, machines) to scale out."""

    def __init__(
        self,
        redis: Redis,
        store: CaseStore,
        *,
        routing: RoutingTable,
        deadlines: DeadlineTable,
        consumer: str,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = 5,
        batch: int = 32,
        auto_intake_reports: bool = False,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self.redis = redis
        self.store = store
        self.routing = routing
        self.deadlines = deadlines
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.batch = batch
        self.auto_intake_reports = auto_intake_reports
        self.clock = clock
        self._claim_cursor = "0-0"

    async def ensure_group(self) -> None:
        with redis_errors("intake group"):
            try:
                await self.redis.xgroup_create(keyspace.DISPATCH_INTAKE, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # BUSYGROUP: the group exists already, as wanted
                    raise

    async def run_once(self, *, block_ms: int | None = None) -> dict[str, int]:
        """Reclaim idle pending events, then read new ones; returns counts per outcome."""
        counts: dict[str, int] = {}
        with redis_errors("intake stream"):
            claimed = await self._reclaim()
            read = await self.redis.xreadgroup(
                GROUP, self.consumer, {keyspace.DISPATCH_INTAKE: ">"}, count=self.batch, block=block_ms
            )
        messages = list(claimed)
        stream_replies: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] = list(read or [])  # type: ignore[arg-type]
        for _, entries in stream_replies:
            messages += [(mid, fields, 1) for mid, fields in entries]
        for mid, fields, deliveries in messages:
            outcome = await self._handle(mid, fields, deliveries)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    async def _reclaim(self) -> list[tuple[bytes, dict[bytes, bytes] | None, int]]:
        reply = await self.redis.xautoclaim(
            keyspace.DISPATCH_INTAKE, GROUP, self.consumer, self.claim_idle_ms, self._claim_cursor, count=self.batch
        )
        self._claim_cursor = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
        entries: list[tuple[bytes, dict[bytes, bytes] | None]] = list(reply[1])
        if not entries:
            return []
        ids = [mid for mid, _ in entries]
        pending = await self.redis.xpending_range(
            keyspace.DISPATCH_INTAKE, GROUP, min=ids[0], max=ids[-1], count=len(ids) + 64, consumername=self.consumer
        )
        times = {p["message_id"]: int(p["times_delivered"]) for p in pending}
        return [(mid, fields, times.get(mid, 1)) for mid, fields in entries]

    async def _handle(self, mid: bytes, raw: dict[bytes, bytes] | None, deliveries: int) -> str:
        if raw is None:  # trimmed away while pending
            await self._ack(mid)
            return "gone"
        try:
            fields = decode_fields(raw)
        except MalformedEventError as exc:
            # Copied with replacement characters: the dead letter shows what arrived, and the consumer lives on.
            fields = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}
            await self._dead_letter(mid, fields, exc.code, deliveries)
            return "deadlettered"
        try:
            event = parse_event(fields)
            auto = event.source == "scan" or self.auto_intake_reports
            case = open_case(event, routing=self.routing, deadlines=self.deadlines, now=self.clock(), auto_intake=auto)
        except (MalformedEventError, CaseError) as exc:
            await self._dead_letter(mid, fields, exc.code, deliveries)
            return "deadlettered"
        try:
            created = await self.store.write(None, case, holder=event.holder)
            if not created:
                existing = await self.store.get(case.case_id, history=False)
                if existing is not None:
                    await self.store.ensure_durable(existing)
        except GatewayError as exc:
            log.warning("intake event %s failed (%s), delivery %d", mid.decode(), exc.instance_code, deliveries)
            if deliveries >= self.max_deliveries:
                await self._dead_letter(mid, fields, exc.instance_code, deliveries)
                return "deadlettered"
            return "failed"
        await self._ack(mid)
        log.info(
            "intake event %s -> case %s (%s, %s)",
            mid.decode(),
            case.case_id,
            case.event_class,
            "new" if created else "duplicate",
        )
        return "created" if created else "duplicate"

    async def _ack(self, mid: bytes) -> None:
        try:
            with redis_errors("intake stream"):
                await self.redis.xack(keyspace.DISPATCH_INTAKE, GROUP, mid)
        except StoreUnavailableError:
            log.warning("ack of %s failed; it will be redelivered (idempotent)", mid.decode())

    async def _dead_letter(self, mid: bytes, fields: Mapping[str, str], reason: str, deliveries: int) -> None:
        # Two keys in two slots: a crash between the XADD and the XACK can copy an event twice to the dead
        # letters, never lose it. Dead letters keep the event's pseudonym and sealed holder reference, so they
        # keep the intake stream's retention (the scan log's): the sweep trims them by time every pass; this
        # trim and the TTL are the backstop where no sweep runs (stream ids are the server's clock: wall clock).
        entry = {**fields, "dl_event_id": mid.decode(), "dl_reason": reason, "dl_deliveries": str(deliveries)}
        retention_ms = self.store.holder_retention_ms
        min_id = max(0, int(time.time() * 1000) - retention_ms)
        try:
            with redis_errors("dead letters"):
                async with self.redis.pipeline(transaction=True) as pipe:
                    pipe.xadd(keyspace.DISPATCH_DEADLETTER, entry, minid=min_id)  # type: ignore[arg-type]
                    pipe.pexpire(keyspace.DISPATCH_DEADLETTER, retention_ms)
                    await pipe.execute()
        except StoreUnavailableError:
            log.warning("dead-lettering %s failed; it stays pending", mid.decode())
            return
        await self._ack(mid)
        log.warning("intake event %s dead-lettered: %s after %d deliveries", mid.decode(), reason, deliveries)

    async def run(self, stop: asyncio.Event, *, block_ms: int = 1000, idle_s: float = 1.0) -> None:
        """Consume until ``stop`` is set; a Redis outage is waited out, never fatal."""
        grouped = False
        while not stop.is_set():
            try:
                if not grouped:
                    await self.ensure_group()
                    grouped = True
                await self.run_once(block_ms=block_ms)
            except StoreUnavailableError:
                log.warning("intake stream unavailable; retrying")
                await asyncio.sleep(idle_s)


@dataclass(frozen=True, slots=True)
class SweepReport:
    checked: int = 0
    flagged: int = 0
    escalated: int = 0
    trimmed: int = 0  # dead letters and intake events past retention


async def trim_to_retention(store: CaseStore, *, now: datetime) -> int:
    """Drop dead letters and intake events older than the retention (the scan log's); returns how many.

    By time, not by the next arrival: the sweep runs this every pass. A dead-letter stream without an expiry
    (written before it carried one) gets it here. The intake stream keeps no TTL, since its consumer group
    lives on the key, and XTRIM never touches the group; an event trimmed while pending is acknowledged as gone.
    """
    retention_ms = store.holder_retention_ms
    min_id = max(0, int(now.timestamp() * 1000) - retention_ms)
    with redis_errors("dispatch streams"):
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.xtrim(keyspace.DISPATCH_DEADLETTER, minid=min_id, approximate=False)
            pipe.execute_command("PEXPIRE", keyspace.DISPATCH_DEADLETTER, retention_ms, "NX")
            pipe.xtrim(keyspace.DISPATCH_INTAKE, minid=min_id, approximate=False)
            dead, _, intake = await pipe.execute()
    return int(dead) + int(intake)


async def sweep_open_cases(store: CaseStore, *, now: datetime, scan_count: int = 200) -> SweepReport:
    """One pass: streams trimmed to retention, then every open case: overdue flags at 100 %, escalation at 2x
    (``policy.deadlines.sweep``)."""
    trimmed = await trim_to_retention(store, now=now)
    checked = flagged = escalated = 0
    cursor = 0
    while True:
        cursor, ids = await store.scan_open(cursor, scan_count)
        for case in await store.get_many(ids, history=True):
            checked += 1
            if case.state in TERMINAL_STATES:
                await store.drop_open(case.case_id)
                continue
            if sweep(case, now=now) is case:
                continue
            try:
                new = await store.update(case.case_id, lambda c: sweep(c, now=now))
            except GatewayError as exc:
                log.warning("sweep of case %s failed (%s)", case.case_id, exc.instance_code)
                continue
            added = new.history[len(case.history) :]
            flagged += sum(1 for e in added if e.action is Action.FLAG_OVERDUE)
            escalated += sum(1 for e in added if e.action is Action.ESCALATE)
        if cursor == 0:
            return SweepReport(checked, flagged, escalated, trimmed)
