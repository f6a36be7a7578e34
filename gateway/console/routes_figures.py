"""The evaluation figures of a supervisor's (or dispatcher's) jurisdiction over a chosen window: a table per
department and an SVG chart, from ``operations.evaluate`` (the code of ``GET /v1/dispatch/metrics``)."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from gateway.console.charts import Series, bar_chart
from gateway.console.web import Ctx, page, render, small_int
from gateway.dispatch import operations
from gateway.dispatch.runtime import DISPATCH
from gateway.principals import Role
from policy.routing import JurisdictionLevel

__all__ = ["WINDOWS", "routes"]

routes = web.RouteTableDef()
WINDOWS = (1, 7, 14, 30, 90)  # days; the longest fits metrics_max_days' default
COLUMNS = ("on_time_handling_rate", "on_time_closure_rate", "rework_rate", "closure_rate", "mean_handling_time_s")


@routes.get("/console/figures")
@page(Role.SUPERVISOR, Role.DISPATCHER)
async def figures(ctx: Ctx) -> web.StreamResponse:
    runtime = ctx.request.app[DISPATCH]
    raw = ctx.request.query.get("days", "30")
    days = small_int(raw, 30) if small_int(raw, 30) in WINDOWS else 30
    days = min(days, runtime.settings.metrics_max_days)
    end = runtime.now()
    doc = await operations.evaluate(runtime, ctx.who, start=end - timedelta(days=days), end=end,
                                    level=JurisdictionLevel.DISTRICT)  # fmt: skip
    series = (Series("on_time_handling_rate", ctx.t("fig.on_time_handling_rate"), "s1"),
              Series("on_time_closure_rate", ctx.t("fig.on_time_closure_rate"), "s2"),
              Series("rework_rate", ctx.t("fig.rework_rate"), "s3"))  # fmt: skip
    chart = bar_chart(ctx.t("fig.chart_title", days=days), doc["by_department"], series)
    return render(ctx, "figures.html", doc=doc, days=days, windows=WINDOWS, columns=COLUMNS, chart=chart,
                  duration=duration)


def duration(seconds: float) -> str:
    """A handling time as people read it: minutes under two hours, else hours with one decimal."""
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
