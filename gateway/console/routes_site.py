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
from gateway.dispatch import attachments, operations, people
from gateway.dispatch.runtime import DISPATCH
from gateway.errors import BadRequestError, NotFoundError
from gateway.intake import REPORT_EVENT_CLASSES
from gateway.principals import Role
from gateway.trust.state import PLACES
from policy.evidence import ATTACHMENT_MAX_BYTES

__all__ = ["routes"]

routes = web.RouteTableDef()
# "How long ago" instead of a clock time: a phone's form has no reliable time zone without script, and the
# report window is the last day anyway (operations.REPORT_MAX_AGE).
AGO_MINUTES = (0, 15, 30, 60, 120, 240, 480, 720, 1380)
REPORTS_SHOWN = 20


async def _form(ctx: Ctx, status: int = 200, filed: operations.Filed | None = None, attached: str = "") -> web.Response:
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
                  reports=reports, next_cursor=more, counts=counts, days=people.EXCEPTION_DAYS, attached=attached,
                  file_max=ATTACHMENT_MAX_BYTES)  # fmt: skip


@routes.get("/console/site")
@page(Role.SITE_MANAGER)
async def site(ctx: Ctx) -> web.StreamResponse:
    return await _form(ctx)


@routes.post("/console/site/reports/{case_id}/attachments")
@page(Role.SITE_MANAGER, form_max=ATTACHMENT_MAX_BYTES + 64 * 1024)
async def site_attach(ctx: Ctx) -> web.StreamResponse:
    """Evidence for the case one of their reports became (``attachments.case_for``: their own reports only, else
    404 like a missing case); the type is decided by the content, the upload audited."""
    runtime = ctx.request.app[DISPATCH]
    upload = ctx.form.get("file") if ctx.form is not None else None
    if not isinstance(upload, web.FileField):
        raise BadRequestError("choose a file to attach")
    case = await attachments.case_for(runtime, ctx.who, ctx.request.match_info["case_id"])
    entry = await attachments.add_attachment_to(runtime, ctx.who, case, upload.file.read())
    return await _form(ctx, status=201, attached=f"{case.case_id}:{entry['n']}")


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
