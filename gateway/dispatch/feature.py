"""The dispatch core as an application feature: its routes, the intake consumer and the sweeper.

``install(app)`` adds the routes (``ROUTES``: the case API and the reports/evaluation API) and a cleanup context
that starts both background tasks once the core context has opened the Redis client. Dispatch settings come
from ``PLACEGATE_DISPATCH_*`` variables, read once with every other setting (``Settings.dispatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import keyspace
from gateway.appstate import METRICS, REDIS, SETTINGS
from gateway.background import refreshing
from gateway.dispatch import attachments, people, reports, routes
from gateway.dispatch.gauges import sample_backlog
from gateway.dispatch.lease import SweepLease
from gateway.dispatch.runtime import (
    DISPATCH,
    DISPATCH_SETTINGS,
    DispatchRuntime,
    consumer_name,
    load_tables,
    make_runtime,
)
from gateway.dispatch.webhooks import load_webhooks
from gateway.dispatch.worker import IntakeWorker, sweep_open_cases
from gateway.errors import GatewayError

__all__ = ["ROUTES", "install"]

log = logging.getLogger("placegate.dispatch")
ROUTES: tuple[web.AbstractRouteDef, ...] = (*routes.routes, *reports.routes, *people.routes, *attachments.routes)


def install(app: web.Application) -> None:
    """Add the dispatch routes and the background tasks to the gateway."""
    dispatch = app[SETTINGS].dispatch
    load_tables(dispatch)  # fail at start-up, not on the first event
    load_webhooks(dispatch.webhooks_file)  # likewise: a bad webhook table or a missing key stops the start
    app[DISPATCH_SETTINGS] = dispatch
    app.router.add_routes(ROUTES)
    app.cleanup_ctx.append(_background)


async def _background(app: web.Application) -> AsyncIterator[None]:
    dispatch = app[DISPATCH_SETTINGS]
    runtime = make_runtime(app[REDIS], app[SETTINGS], dispatch)
    app[DISPATCH] = runtime
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    if dispatch.worker:
        worker = IntakeWorker(
            runtime.store.redis, runtime.store, routing=runtime.routing, deadlines=runtime.deadlines,
            sealer=runtime.sealer, consumer=consumer_name(), claim_idle_ms=dispatch.claim_idle_ms,
            max_deliveries=dispatch.max_deliveries, auto_intake_reports=dispatch.auto_intake_reports,
            fold_window_s=dispatch.fold_window_s,
            clock=runtime.now,
        )  # fmt: skip
        tasks.append(loop.create_task(worker.run(stop, block_ms=500)))
    try:
        async with contextlib.AsyncExitStack() as background:
            redis, metrics = runtime.store.redis, app[METRICS]
            await background.enter_async_context(refreshing(
                lambda: sample_backlog(redis, metrics), every_s=app[SETTINGS].store_gauges_s, what="dispatch gauges"
            ))  # fmt: skip
            if dispatch.sweep_interval_s > 0:
                lease = SweepLease(runtime.store.redis, ttl_ms=keyspace.sweep_lease_ttl_ms(dispatch.sweep_interval_s))
                # Pushed first, so it runs after the loop has stopped: another process may take over at once.
                background.push_async_callback(_release, lease)
                await background.enter_async_context(
                    refreshing(lambda: _sweep(runtime, lease), every_s=dispatch.sweep_interval_s, what="dispatch sweep")
                )
            if runtime.outbox is not None and dispatch.webhook_interval_s > 0:
                ttl_ms = keyspace.sweep_lease_ttl_ms(max(dispatch.webhook_interval_s, dispatch.webhook_timeout_s))
                notify_lease = SweepLease(runtime.store.redis, key=keyspace.NOTIFY_LEASE, ttl_ms=ttl_ms)
                background.push_async_callback(_release, notify_lease)
                await background.enter_async_context(refreshing(
                    lambda: _notify(runtime, notify_lease), every_s=dispatch.webhook_interval_s, what="webhooks"
                ))  # fmt: skip
            yield
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _sweep(runtime: DispatchRuntime, lease: SweepLease) -> None:
    """One sweep pass if this process holds the sweep lease (one process sweeps at a time, whichever it is); a
    failure is logged by its code and the next period tries again."""
    try:
        if not await lease.hold():
            return
        report = await sweep_open_cases(runtime.store, now=runtime.now(), keep=lease.renew)
    except GatewayError as exc:
        log.warning("sweep failed (%s)", exc.instance_code)
        return
    if not report.complete:
        log.warning("sweep stopped: the sweep lease was lost")
    if report.flagged or report.escalated or report.expired:
        log.info(
            "sweep: %d due, %d flagged overdue, %d escalations, %d intake events expired unconsumed",
            report.checked, report.flagged, report.escalated, report.expired,
        )  # fmt: skip


async def _notify(runtime: DispatchRuntime, lease: SweepLease) -> None:
    """One delivery pass of the webhook outbox if this process holds its lease (one process delivers at a time)."""
    if runtime.outbox is None:
        return
    try:
        if await lease.hold():
            await runtime.outbox.deliver_due(runtime.store.get, keep=lease.renew)
    except GatewayError as exc:
        log.warning("webhook delivery failed (%s)", exc.instance_code)


async def _release(lease: SweepLease) -> None:
    with contextlib.suppress(GatewayError):  # unreachable store: the lease expires by itself
        await lease.release()
