"""The site manager's page: file a report for one of their places (``operations.file_report``, the code of
``POST /v1/reports``: the same scope, classes, time window and masking of the note), follow the progress of their
own reports (``people.reports_page``, the code of ``GET /v1/reports``) and read today's and the last 14 days'
exception counts per place and reason (``people.exception_counts``, the code of ``GET
/v1/places/{id}/exceptions``). Nothing personal: states and counts only.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from aiohttp import web

from gateway.console.web import Ctx, page, render, small_int
from gateway.dispatch import operations, people
from gateway.dispatch.runtime import DISPATCH
from gateway.errors import NotFoundError
from gateway.intake import REPORT_EVENT_CLASSES
from gateway.principals import Role
from gateway.trust.state import PLACES

__all__ = ["routes"]

routes = web.RouteTableDef()
# "How long ago" instead of a clock time: a phone's form has no reliable time zone without script, and the
# report window is the last day anyway (operations.REPORT_MAX_AGE).
AGO_MINUTES = (0, 15, 30, 60, 120, 240, 480, 720, 1380)
REPORTS_SHOWN = 20


async def _form(ctx: Ctx, status: int = 200, filed: operations.Filed | None = None) -> web.Response:
    runtime = ctx.request.app[DISPATCH]
    raw = ctx.request.query.get("cursor", "")
    cursor = small_int(raw, 0)
    reports, more = await people.reports_page(runtime, ctx.who, limit=REPORTS_SHOWN, cursor=cursor)
    today = runtime.now().astimezone(UTC).date()
    counts = []
    for place_id in sorted(ctx.who.places):
        try:
            doc = await people.exception_counts(runtime, ctx.request.app[PLACES], ctx.who, place_id,
                                                start=today - timedelta(days=people.EXCEPTION_DAYS), end=today)
        except NotFoundError:
            continue  # a place of the token's scope that is no longer registered
        todays = doc["days"][-1]["reasons"]
        counts.append({"place": place_id, "total": doc["total"], "today": doc["days"][-1]["total"],
                       "reasons": [(r, todays.get(r, 0), n) for r, n in doc["reasons"].items()]})  # fmt: skip
    return render(ctx, "site.html", status=status, places=sorted(ctx.who.places),
                  classes=sorted(c.value for c in REPORT_EVENT_CLASSES), ago=AGO_MINUTES, filed=filed,
                  reports=reports, next_cursor=more, counts=counts, days=people.EXCEPTION_DAYS)  # fmt: skip


@routes.get("/console/site")
@page(Role.SITE_MANAGER)
async def site(ctx: Ctx) -> web.StreamResponse:
    return await _form(ctx)


@routes.post("/console/site/report")
@page(Role.SITE_MANAGER)
async def site_report(ctx: Ctx) -> web.StreamResponse:
    runtime = ctx.request.app[DISPATCH]
    ago = ctx.field("ago")
    minutes = small_int(ago, 0) if small_int(ago, 0) in AGO_MINUTES else 0
    filed = await operations.file_report(
        runtime, ctx.request.app[PLACES], ctx.who, place_id=ctx.field("place"), event_class=ctx.field("event_class"),
        at=runtime.now() - timedelta(minutes=minutes), note=ctx.field("note") or None,
    )  # fmt: skip
    return await _form(ctx, status=202, filed=filed)
