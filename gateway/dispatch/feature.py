"""The dispatch core as an application feature: its settings, its routes, the intake consumer and the sweeper.

``install(app)`` (listed in ``gateway.features.FEATURES``) adds the routes and a cleanup context that starts
both background tasks after the core context, so the app's Redis client exists. Dispatch settings come from
``PLACEGATE_DISPATCH_*`` variables, read once with every other setting (``Settings.dispatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiohttp import web
from redis.asyncio import Redis

from crypto.sealing import Sealer
from gateway.dispatch.store import CaseStore
from gateway.dispatch.worker import IntakeWorker, sweep_open_cases
from gateway.errors import GatewayError
from gateway.settings import DispatchSettings, Settings
from gateway.state import SETTINGS, STORE
from policy.deadlines import DeadlineTable, load_default_deadline_table, parse_deadline_table
from policy.routing import RoutingTable, load_default_routing_table, parse_routing_table

__all__ = ["DISPATCH", "DISPATCH_SETTINGS", "DispatchRuntime", "DispatchSettings", "install", "make_runtime"]

log = logging.getLogger("placegate.dispatch")


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
    return routing, deadlines


@dataclass
class DispatchRuntime:
    """What the dispatch routes share; ``clock`` is replaceable so tests control time."""

    settings: DispatchSettings
    store: CaseStore
    routing: RoutingTable
    deadlines: DeadlineTable
    sealer: Sealer
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

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
        redis, waitaof_timeout_ms=dispatch.waitaof_timeout_ms, holder_retention_s=settings.retention_days * 24 * 3600
    )
    return DispatchRuntime(dispatch, store, routing, deadlines, Sealer(settings.secret.reveal()))


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


def install(app: web.Application) -> None:
    """Add the dispatch routes and the background tasks to the gateway."""
    from gateway.dispatch.reports import add_routes as add_report_routes
    from gateway.dispatch.routes import add_routes as add_case_routes

    dispatch = app[SETTINGS].dispatch
    load_tables(dispatch)  # fail at start-up, not on the first event
    app[DISPATCH_SETTINGS] = dispatch
    add_case_routes(app)
    add_report_routes(app)
    app.cleanup_ctx.append(_background)


async def _background(app: web.Application) -> AsyncIterator[None]:
    dispatch = app[DISPATCH_SETTINGS]
    runtime = make_runtime(app[STORE].redis, app[SETTINGS], dispatch)
    app[DISPATCH] = runtime
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    if dispatch.worker:
        worker = IntakeWorker(
            runtime.store.redis, runtime.store, routing=runtime.routing, deadlines=runtime.deadlines,
            consumer=consumer_name(), claim_idle_ms=dispatch.claim_idle_ms,
            max_deliveries=dispatch.max_deliveries, auto_intake_reports=dispatch.auto_intake_reports,
            clock=runtime.now,
        )  # fmt: skip
        tasks.append(loop.create_task(worker.run(stop, block_ms=500)))
    if dispatch.sweep_interval_s > 0:
        tasks.append(loop.create_task(_sweeper(runtime, stop, dispatch.sweep_interval_s)))
    try:
        yield
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _sweeper(runtime: DispatchRuntime, stop: asyncio.Event, interval_s: float) -> None:
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
        if stop.is_set():
            return
        try:
            report = await sweep_open_cases(runtime.store, now=runtime.now())
        except GatewayError as exc:
            log.warning("sweep failed (%s)", exc.instance_code)
            continue
        if report.flagged or report.escalated:
            log.info(
                "sweep: %d open, %d flagged overdue, %d escalations", report.checked, report.flagged, report.escalated
            )
