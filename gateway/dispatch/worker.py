"""The dispatch core's background jobs: the intake consumer (events become routed cases) and the sweeper.

Intake is a consumer group on ``pg:dispatch:intake``: at-least-once delivery, idempotent because the case id is
derived from the event id and the case write only succeeds on an empty history (a redelivered event finds its
case and is acknowledged again). An event is acknowledged (XACK) only after its case is confirmed on disk.
Pending events of a crashed consumer are taken over with XAUTOCLAIM once idle for ``claim_idle_ms``; an event
that fails ``max_deliveries`` times, or can never succeed (malformed, unknown class, place outside the routing
table), is copied to ``pg:dispatch:deadletter`` with a reason code and acknowledged. Dead letters keep the
intake stream's retention; the sweep trims both streams by time, never the intake past an event the group has not
finished (``trim_to_retention``). The event format is ``gateway.intake``.

The sweeper pass (``sweep_open_cases``) reads only the cases the due index names (``CaseStore.due``); whoever
runs it holds the sweep lease (``gateway.dispatch.lease``).

Logs name event ids, case ids, event classes and error codes only, never a holder or a note.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from crypto.sealing import Sealer, SealError, case_binding, event_binding, reading_binding
from gateway import keyspace
from gateway.dispatch.store import CaseStore, case_id_for_event
from gateway.errors import GatewayError, StoreUnavailableError
from gateway.intake import LINKING_FIELDS, IntakeEvent, MalformedEventError, decode_fields, parse_event
from gateway.redisio import redis_errors
from policy.case_errors import CaseError, InvalidJurisdictionError, NoRouteError
from policy.casework import Action, Actor, Case, Role, apply_transition, new_case
from policy.deadlines import DeadlineTable, assess, sweep
from policy.purpose import PURPOSE
from policy.routing import UNROUTED, CentreLevel, Route, RoutingTable, is_urgent, parse_jurisdiction

__all__ = [
    "EXPIRED_DROPPED_FIELDS",
    "GROUP",
    "SYSTEM_ACTOR",
    "IntakeWorker",
    "PlannedChange",
    "SweepReport",
    "open_case",
    "plan_sweep",
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
    dispatched by the system. An event the table cannot route (a place outside its city, or a path that does not
    parse) becomes a case in the city's unrouted queue (``policy.unrouted``), never a dead letter: its 202's case
    id must exist. :raises CaseError: on a note the case refuses (permanent)."""
    try:
        jurisdiction = parse_jurisdiction(event.jurisdiction)
        route = routing.route(event.event_class, jurisdiction)
    except (InvalidJurisdictionError, NoRouteError) as exc:
        log.warning("intake event %s is unroutable (%s): city unrouted queue", event.event_id, exc.code)
        jurisdiction, auto_intake = (routing.city,), False
        route = Route(UNROUTED, jurisdiction, is_urgent(event.event_class), routing.version)
    # The case dates from the intake (when the gateway learnt of it), never from the time a source claims: a
    # backdated report must not land in a closed evaluation window nor start its clock in the past. A worker
    # that was down still dates it from the intake, so its wait counts against the ``reported`` clock.
    reported_at = min(event.received_at or event.occurred_at, now)
    case = new_case(
        case_id=case_id_for_event(event.event_id), event_class=event.event_class, place_id=event.place_id,
        jurisdiction=jurisdiction, department=route.department, actor=Actor(event.actor_id, Role.SOURCE),
        now=reported_at, deadlines=deadlines, urgent=route.urgent, note=event.note,
        occurred_at=event.occurred_at if event.source == "report" else None,
    )  # fmt: skip
    if auto_intake:
        for action in (Action.ACCEPT, Action.FILE, Action.DISPATCH):
            case = apply_transition(case, action, actor=SYSTEM_ACTOR, now=now, deadlines=deadlines)
    return case


def _millis(event: IntakeEvent) -> int:
    return int(event.occurred_at.timestamp() * 1000)


class IntakeWorker:
    """One consumer of the intake group; run many (processes, machines) to scale out."""

    def __init__(
        self,
        redis: Redis,
        store: CaseStore,
        *,
        routing: RoutingTable,
        deadlines: DeadlineTable,
        sealer: Sealer,
        consumer: str,
        claim_idle_ms: int = 60_000,
        max_deliveries: int = 5,
        batch: int = 32,
        auto_intake_reports: bool = False,
        clock: Clock = lambda: datetime.now(UTC),
        fold_window_s: int = 0,
    ) -> None:
        self.redis = redis
        self.store = store
        self.routing = routing
        self.deadlines = deadlines
        self.sealer = sealer
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.batch = batch
        self.auto_intake_reports = auto_intake_reports
        self.clock = clock
        self.fold_window_s = fold_window_s  # 0: a case per event (DispatchSettings.fold_window_s)
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
        folded = await self._fold_batch(messages) if self.fold_window_s > 0 else {}
        for mid, fields, deliveries in messages:
            outcome = folded.get(mid) or await self._handle(mid, fields, deliveries)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    async def _fold_batch(self, messages: list[tuple[bytes, dict[bytes, bytes] | None, int]]) -> dict[bytes, str]:
        """Fold the batch's events that join an open case, in a few round trips for the whole batch, acknowledged
        together; the outcome of each. Every other event (a new case, one that cannot be read or routed, one
        whose case is closed or full) is left to ``_handle``. A store outage leaves them all to ``_handle``."""
        found: list[tuple[bytes, IntakeEvent, str]] = []
        for mid, raw, _ in messages:
            if raw is None:
                continue
            try:
                event = parse_event(decode_fields(raw))
                fold = self._fold_key(event)
                if fold is None:
                    continue
                self.routing.route(event.event_class, parse_jurisdiction(event.jurisdiction))  # routable, or not ours
            except (MalformedEventError, CaseError):
                continue
            found.append((mid, event, fold))
        if not found:
            return {}
        try:
            results = await self.store.fold_many(
                [(fold, case_id_for_event(e.event_id), e.event_id, _millis(e)) for _, e, fold in found],
                self.fold_window_s * 1000,
            )
            for (_, event, _), (target, outcome) in zip(found, results, strict=True):
                if outcome in ("folded", "duplicate") and event.source == "report":
                    await self.store.alias(case_id_for_event(event.event_id), target)
        except GatewayError as exc:
            log.warning("folding a batch of %d events failed (%s); one at a time", len(found), exc.instance_code)
            return {}
        done = {mid: outcome for (mid, _, _), (_, outcome) in zip(found, results, strict=True)
                if outcome in ("folded", "duplicate")}  # fmt: skip
        if done:
            await self._ack(*done)
        return done

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
            event = replace(event, note=self.store.open_intake_note(event.event_id, event.note))
            case = open_case(event, routing=self.routing, deadlines=self.deadlines, now=self.clock(), auto_intake=auto)
            holder = self._case_holder(event, case.case_id)
        except (MalformedEventError, CaseError, SealError) as exc:
            await self._dead_letter(mid, fields, exc.code, deliveries)
            return "deadlettered"
        fold = self._fold_key(event)
        try:
            if fold is not None:
                at_ms = _millis(event)
                target, outcome = await self.store.fold(
                    fold, case.case_id, event.event_id, at_ms, self.fold_window_s * 1000
                )
                if outcome != "open":
                    if event.source == "report":  # the site manager was answered with the event's own case id
                        await self.store.alias(case.case_id, target)
                    await self._ack(mid)
                    # Debug only: a storm of folded events must not cost a log record each (issue 15).
                    log.debug("intake event %s folded into case %s (%s)", mid.decode(), target, outcome)
                    return outcome
            created = await self.store.write(None, case, holder=holder)
            if not created:
                existing = await self.store.get(case.case_id)
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

    def _fold_key(self, event: IntakeEvent) -> str | None:
        """The fold an event belongs to (docs/dispatch.md, "Merging"), ``None`` for one that opens its own case:
        folding is off, a scan exception without a holder (nothing says two are one person's), a report with a
        note (its text is new information, and only a case's history holds a note)."""
        if self.fold_window_s <= 0:
            return None
        if event.source == "scan":
            who = event.subject
            return None if who is None else keyspace.fold_key(event.event_class, who, event.place_id)
        if event.note:
            return None
        return keyspace.fold_key(event.event_class, "report", event.place_id)

    def _case_holder(self, event: IntakeEvent, case_id: str) -> dict[str, str] | None:
        """The case's holder fields: the reference re-sealed from the event's binding to the case's, so a blob
        copied into another case's holder key does not open there. :raises SealError: the event's does not open."""
        holder: dict[str, str] | None = None
        if event.holder is not None:
            sealed = self.sealer.reseal(
                event.holder["holder_sealed"], bound_to=event_binding(event.event_id), rebind_to=case_binding(case_id)
            )
            holder = {"holder_sealed": sealed, "purpose": event.holder["purpose"]}
        if event.reading is not None and self.store.note_sealer is not None:
            # A fever case's reading (issue 18): kept here only, beside the holder, with the scan log's retention;
            # sealed like a note (the note sub-key), not like the holder reference.
            reading = self.store.note_sealer.reseal(
                event.reading, bound_to=reading_binding(event_binding(event.event_id)),
                rebind_to=reading_binding(case_binding(case_id)))
            holder = {"purpose": PURPOSE, **(holder or {}), "reading_sealed": reading}
        return holder

    async def _ack(self, *mids: bytes) -> None:
        try:
            with redis_errors("intake stream"):
                await self.redis.xack(keyspace.DISPATCH_INTAKE, GROUP, *mids)
        except StoreUnavailableError:
            log.warning("ack of %s failed; redelivered (idempotent)", ",".join(m.decode() for m in mids))

    async def _dead_letter(self, mid: bytes, fields: Mapping[str, str], reason: str, deliveries: int) -> None:
        # Two keys in two slots: a crash between the XADD and the XACK can copy an event twice to the dead
        # letters, never lose it. Dead letters keep the event's sealed holder reference and subject hash (never an
        # old event's day pseudonym or day: LINKING_FIELDS), so they keep the intake stream's retention (the scan
        # log's): the sweep trims them by time every pass; this trim and the TTL are the backstop where no sweep
        # runs (stream ids are the server's clock: wall clock).
        entry = {k: v for k, v in fields.items() if k not in LINKING_FIELDS}
        entry.update(dl_event_id=mid.decode(), dl_reason=reason, dl_deliveries=str(deliveries))
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
    checked: int = 0  # due cases read (the due index), not every open case
    flagged: int = 0
    escalated: int = 0
    trimmed: int = 0  # dead letters and consumed intake events past retention
    expired: int = 0  # intake events past retention never consumed: dead-lettered as ``expired_unconsumed``
    complete: bool = True  # False: the lease was lost mid-pass and the pass stopped


# What an ``expired_unconsumed`` dead letter leaves out: it is written at the end of the retention, and the dead
# letters live another retention, so it keeps only what names no one (event id, class, place, time, reason).
EXPIRED_DROPPED_FIELDS = ("holder_sealed", "subject", "note", "reading_sealed")
_TRIM_LIMIT = 1000
StreamId = tuple[int, int]


def _sid(raw: bytes | str) -> StreamId:
    ms, _, seq = (raw.decode() if isinstance(raw, bytes) else raw).partition("-")
    return int(ms), int(seq or 0)


def _after(sid: StreamId) -> StreamId:
    return sid[0], sid[1] + 1


async def _group_state(redis: Redis) -> tuple[bool, StreamId | None]:
    """Whether the intake stream exists, and the group's last-delivered id (``None``: no group, so nothing was
    delivered and every event is still to be consumed)."""
    if not await redis.exists(keyspace.DISPATCH_INTAKE):
        return False, None
    for group in await redis.xinfo_groups(keyspace.DISPATCH_INTAKE):
        name = group["name"]
        if (name.decode() if isinstance(name, bytes) else name) == GROUP:
            return True, _sid(group["last-delivered-id"])
    return True, None


async def trim_to_retention(store: CaseStore, *, now: datetime, limit: int = _TRIM_LIMIT) -> SweepReport:
    """Trim the dead letters and the intake stream to the retention (the scan log's) by time; ``trimmed`` and
    ``expired`` of the report say how many.

    By time, not by the next arrival: the sweep runs this every pass. The intake stream is never trimmed past an
    event the consumer group has not finished (pending, or not yet delivered): an event that reaches the
    retention unconsumed is first dead-lettered with reason ``expired_unconsumed`` (without its sealed holder
    reference, subject hash or note: ``EXPIRED_DROPPED_FIELDS``; nor an old event's day pseudonym or day) and
    acknowledged, so it is never deleted unseen and no personal data outlives the retention. At most ``limit``
    such events per pass; the trim stops before the rest.
    A dead-letter stream without an expiry (written before it carried one) gets it here. The intake stream keeps
    no TTL: its consumer group lives on the key.
    """
    retention_ms = store.holder_retention_ms
    cutoff: StreamId = (max(0, int(now.timestamp() * 1000) - retention_ms), 0)
    redis = store.redis
    expired: list[tuple[bytes, dict[bytes, bytes], int]] = []
    pending: list[Any] = []
    fresh: list[tuple[bytes, dict[bytes, bytes]]] = []
    minid = cutoff
    with redis_errors("dispatch streams"):
        exists, delivered = await _group_state(redis)
        if exists and cutoff > (0, 0):
            below = f"({cutoff[0]}-{cutoff[1]}"
            if delivered is not None:
                pending = await redis.xpending_range(keyspace.DISPATCH_INTAKE, GROUP, min="-", max=below, count=limit)
            after = "-" if delivered is None else f"({delivered[0]}-{delivered[1]}"
            fresh = await redis.xrange(keyspace.DISPATCH_INTAKE, min=after, max=below, count=limit)  # type: ignore[assignment]
            if pending:
                async with redis.pipeline(transaction=False) as pipe:
                    for p in pending:
                        pipe.xrange(keyspace.DISPATCH_INTAKE, min=p["message_id"], max=p["message_id"])
                    bodies = await pipe.execute()
                for p, found in zip(pending, bodies, strict=True):
                    # Empty: deleted while pending (by older code); acknowledged below like the rest.
                    mid = cast(bytes, p["message_id"])
                    expired.append((mid, found[0][1] if found else {}, int(p["times_delivered"])))
                if len(pending) == limit:
                    minid = min(minid, _after(_sid(cast(bytes, pending[-1]["message_id"]))))
            expired += [(mid, fields, 0) for mid, fields in fresh]
            if len(fresh) == limit:
                minid = min(minid, _after(_sid(fresh[-1][0])))
        if expired:
            # Copied before the trim; a consumer that takes one of them meanwhile makes its case as well: a copy
            # too many in the dead letters, never an event lost (the same trade as ``IntakeWorker._dead_letter``).
            async with redis.pipeline(transaction=False) as pipe:
                for mid, fields, deliveries in expired:
                    if fields:
                        entry: dict[bytes | str, bytes | str] = {
                            k: v for k, v in fields.items() if k.decode(errors="replace") not in LINKING_FIELDS
                        }
                        for name in EXPIRED_DROPPED_FIELDS:
                            if name.encode() in entry:
                                entry[name.encode()] = b""
                        entry.update(dl_event_id=mid, dl_reason="expired_unconsumed", dl_deliveries=str(deliveries))
                        pipe.xadd(keyspace.DISPATCH_DEADLETTER, entry)  # type: ignore[arg-type]
                pipe.pexpire(keyspace.DISPATCH_DEADLETTER, retention_ms)
                if acked := [mid for mid, _, deliveries in expired if deliveries]:
                    pipe.xack(keyspace.DISPATCH_INTAKE, GROUP, *acked)
                await pipe.execute()
            log.warning("%d intake events reached the retention unconsumed: dead-lettered", len(expired))
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xtrim(keyspace.DISPATCH_DEADLETTER, minid=f"{cutoff[0]}-{cutoff[1]}", approximate=False)
            pipe.execute_command("PEXPIRE", keyspace.DISPATCH_DEADLETTER, retention_ms, "NX")
            if exists:
                pipe.xtrim(keyspace.DISPATCH_INTAKE, minid=f"{minid[0]}-{minid[1]}", approximate=False)
            replies = await pipe.execute()
    return SweepReport(trimmed=sum(int(r) for r in replies[::2]), expired=len(expired))


Keep = Callable[[], Awaitable[bool]]


async def _always() -> bool:
    return True


async def _check_due_index(store: CaseStore, keep: Keep, *, batch: int) -> int | None:
    """File every open case that has no entry in the due index (written by code that kept none); how many, or
    ``None`` if the lease was lost. Runs when ``CaseStore.due_check_needed`` says so (daily, or no index)."""
    filed, cursor = 0, 0
    while True:
        if not await keep():
            return None
        cursor, ids = await store.scan_open(cursor, batch)
        missing = await store.missing_from_due(ids)
        if missing:
            cases = await store.get_many(missing, history=True)
            await store.file_due(cases)
            filed += len(cases)
        if cursor == 0:
            await store.mark_due_checked()
            if filed:
                log.info("due index: filed %d open cases that had no entry", filed)
            return filed


async def sweep_open_cases(store: CaseStore, *, now: datetime, batch: int = 200, keep: Keep = _always) -> SweepReport:
    """One pass: streams trimmed to retention, then the cases that are due (the due index): overdue flags at
    100 %, escalation at 2x (``policy.deadlines.sweep``). The cost follows the due cases, not the open ones.

    :param keep: called before every batch; False (the sweep lease was lost) stops the pass. The caller holds
        the lease (``gateway.dispatch.lease``): this function does not take it, so tests can call it directly.
    """
    trim = await trim_to_retention(store, now=now)
    if await store.due_check_needed() and await _check_due_index(store, keep, batch=1000) is None:
        return replace(trim, complete=False)
    checked = flagged = escalated = stuck = 0
    seen: set[str] = set()
    while True:
        if not await keep():
            return SweepReport(checked, flagged, escalated, trim.trimmed, trim.expired, complete=False)
        # Entries that stay due (a failed write) sort before the unread ones: skip past them, and stop when a
        # batch holds nothing new, so a pass always ends.
        ids = [i for i in await store.due(now, offset=stuck, count=batch) if i not in seen]
        if not ids:
            return SweepReport(checked, flagged, escalated, trim.trimmed, trim.expired)
        seen.update(ids)
        cases = await store.get_many(ids, history=True)
        found = {c.case_id for c in cases}
        await store.drop_due([i for i in ids if i not in found])
        unchanged: list[Case] = []
        changed: list[tuple[Case, Case]] = []
        for case in cases:
            checked += 1
            new = sweep(case, now=now)
            if new is case:  # closed, or re-filed since: the index learns its true instant
                unchanged.append(case)
            else:
                changed.append((case, new))
        # Not waited on the disk: nobody is told of a flag or an escalation, and one lost in a crash is found again
        # by the next pass (``sweep`` is a function of the stored case and ``now``).
        written = await store.write_unacknowledged(changed)
        for (case, new), ok in zip(changed, written, strict=True):
            if not ok:  # changed since it was read: re-read and re-apply
                try:
                    new = await store.update(case.case_id, lambda c: sweep(c, now=now))
                except GatewayError as exc:
                    log.warning("sweep of case %s failed (%s)", case.case_id, exc.instance_code)
                    stuck += 1
                    continue
            added = new.history[len(case.history) :] if new.history[: len(case.history)] == case.history else ()
            flagged += sum(1 for e in added if e.action is Action.FLAG_OVERDUE)
            escalated += sum(1 for e in added if e.action is Action.ESCALATE)
        await store.file_due(unchanged)


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """What a sweep at some instant would do to one case (``plan_sweep``)."""

    case_id: str
    flag_overdue: bool
    escalate_to: tuple[CentreLevel, ...]


async def plan_sweep(store: CaseStore, *, now: datetime, batch: int = 200) -> tuple[int, list[PlannedChange]]:
    """The dry run of ``sweep_open_cases`` at ``now``: the due cases read and what a sweep would do to each, with
    nothing written (issue 15: a sweep at a future instant must not write future-dated history into live cases).
    Reads the due index only, so no trim and no check of the open set. Returns (due cases read, changes)."""
    due, offset = 0, 0
    planned: list[PlannedChange] = []
    while True:
        ids = await store.due(now, offset=offset, count=batch)
        if not ids:
            return due, planned
        offset += len(ids)
        for case in await store.get_many(ids, history=True):
            due += 1
            found = assess(case, now=now)
            if found.flag_overdue or found.escalate_to:
                planned.append(PlannedChange(case.case_id, found.flag_overdue, found.escalate_to))
