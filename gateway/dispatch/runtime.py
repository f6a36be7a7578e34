"""What the dispatch routes, the intake consumer, the sweeper and the CLI share: settings, the case store, the
routing and deadline tables, the sealer, the holder-read rules and the clock; and who may see a case."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from aiohttp import web
from redis.asyncio import Redis

from crypto.sealing import ATTACHMENT_LABEL, NOTE_LABEL, Sealer
from crypto.subject import SubjectHasher
from gateway.dispatch.holder_reads import HolderReadLimit
from gateway.dispatch.store import CaseStore
from gateway.dispatch.webhooks import Outbox, load_webhooks
from gateway.principals import Principal, Role
from gateway.settings import DispatchSettings, Settings
from policy.authority import covers
from policy.calendar import parse_calendar
from policy.casework import Case
from policy.deadlines import DeadlineTable, load_default_deadline_table, parse_deadline_table
from policy.routing import RoutingTable, load_default_routing_table, parse_routing_table

__all__ = [
    "DISPATCH",
    "DISPATCH_SETTINGS",
    "DispatchRuntime",
    "consumer_name",
    "in_scope",
    "load_tables",
    "make_runtime",
]


def load_tables(dispatch: DispatchSettings) -> tuple[RoutingTable, DeadlineTable]:
    """Load and validate both tables (a bad table is a start-up failure)."""
    routing = (
        parse_routing_table(dispatch.routing_file.read_text("utf-8"))
        if dispatch.routing_file
        else load_default_routing_table()
    )
    deadlines = (
        parse_deadline_table(dispatch.deadlines_file.read_text("utf-8"))
        if dispatch.deadlines_file
        else load_default_deadline_table()
    )
    if dispatch.calendar_file:  # the working hours of the stages the deadline table marks working_time
        deadlines = replace(deadlines, calendar=parse_calendar(dispatch.calendar_file.read_text("utf-8")))
    return routing, deadlines


@dataclass
class DispatchRuntime:
    """What the dispatch routes share; ``clock`` is replaceable so tests control time."""

    settings: DispatchSettings
    store: CaseStore
    routing: RoutingTable
    deadlines: DeadlineTable
    sealer: Sealer
    subjects: SubjectHasher  # names the holder in a holder read's audit entry
    holder_reads: HolderReadLimit
    holder_read_classes: frozenset[str]  # event classes whose follow-up may read the holder
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    outbox: Outbox | None = None  # department webhooks (gateway/dispatch/webhooks.py); None: no table
    attachment_sealer: Sealer | None = None  # seals case attachments at rest (gateway/dispatch/attachments.py)

    def now(self) -> datetime:
        return self.clock()


DISPATCH_SETTINGS: web.AppKey[DispatchSettings] = web.AppKey("dispatch_settings", DispatchSettings)
DISPATCH: web.AppKey[DispatchRuntime] = web.AppKey("dispatch", DispatchRuntime)


def make_runtime(redis: Redis, settings: Settings, dispatch: DispatchSettings) -> DispatchRuntime:
    """Build the shared runtime on a Redis client (the app's, or the CLI's)."""
    if settings.secret is None:
        raise ValueError("settings.secret is required to seal and open holder references")
    routing, deadlines = load_tables(dispatch)
    store = CaseStore(
        redis, waitaof_timeout_ms=dispatch.waitaof_timeout_ms, holder_retention_s=settings.retention_days * 24 * 3600,
        note_retention_days=settings.retention_days,
        note_sealer=Sealer(settings.secret.reveal(), label=NOTE_LABEL),
    )
    secret = settings.secret.reveal()
    limit = HolderReadLimit(redis, per_hour=settings.holder_reads_per_hour)
    runtime = DispatchRuntime(
        dispatch, store, routing, deadlines, Sealer(secret), SubjectHasher(secret), limit, settings.holder_read_classes
    )
    runtime.attachment_sealer = Sealer(secret, label=ATTACHMENT_LABEL)
    store.clock = runtime.now  # note TTLs count from the runtime's (replaceable) clock
    if webhooks := load_webhooks(dispatch.webhooks_file):
        runtime.outbox = Outbox(
            redis, webhooks, timeout_s=dispatch.webhook_timeout_s, max_attempts=dispatch.webhook_max_attempts,
            backoff_s=dispatch.webhook_backoff_s, backoff_max_s=dispatch.webhook_backoff_max_s,
        )  # fmt: skip
        store.before_write = runtime.outbox.stage
    return runtime


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


def in_scope(principal: Principal, case: Case) -> bool:
    """Whether ``principal`` may see ``case`` at all."""
    if principal.role is Role.HANDLER:
        return bool(principal.department) and case.department == principal.department
    if principal.role in (Role.DISPATCHER, Role.SUPERVISOR) and principal.jurisdiction:
        # Seeing only: deciding also needs the case held at or below the principal's centre (policy.authority).
        return covers(principal.jurisdiction.split("/"), case)
    return False
