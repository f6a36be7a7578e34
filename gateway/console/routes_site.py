"""The site manager's page: file a report for one of their places (``operations.file_report``, the code of
``POST /v1/reports``: the same scope, classes, time window and masking of the note).

Not here yet: following a report's progress and the per-place exception counts need API routes main does not
have (a site manager sees no case through the case API); the confirmation names the case id to quote instead.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from gateway.console.web import Ctx, page, render
from gateway.dispatch import operations
from gateway.dispatch.runtime import DISPATCH
from gateway.intake import REPORT_EVENT_CLASSES
from gateway.principals import Role
from gateway.trust.state import PLACES

__all__ = ["routes"]

routes = web.RouteTableDef()
# "How long ago" instead of a clock time: a phone's form has no reliable time zone without script, and the
# report window is the last day anyway (operations.REPORT_MAX_AGE).
AGO_MINUTES = (0, 15, 30, 60, 120, 240, 480, 720, 1380)


def _form(ctx: Ctx, status: int = 200, filed: operations.Filed | None = None) -> web.Response:
    return render(ctx, "site.html", status=status, places=sorted(ctx.who.places),
                  classes=sorted(c.value for c in REPORT_EVENT_CLASSES), ago=AGO_MINUTES, filed=filed)  # fmt: skip


@routes.get("/console/site")
@page(Role.SITE_MANAGER)
async def site(ctx: Ctx) -> web.StreamResponse:
    return _form(ctx)


@routes.post("/console/site/report")
@page(Role.SITE_MANAGER)
async def site_report(ctx: Ctx) -> web.StreamResponse:
    runtime = ctx.request.app[DISPATCH]
    ago = ctx.field("ago")
    minutes = int(ago) if ago.isdigit() and int(ago) in AGO_MINUTES else 0
    filed = await operations.file_report(
        runtime, ctx.request.app[PLACES], ctx.who, place_id=ctx.field("place"), event_class=ctx.field("event_class"),
        at=runtime.now() - timedelta(minutes=minutes), note=ctx.field("note") or None,
    )  # fmt: skip
    return _form(ctx, status=202, filed=filed)
