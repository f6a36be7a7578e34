"""The case pages of dispatchers, handlers and supervisors: the queue, a case with its timeline and the actions
the person may take, and the audited holder read.

Everything goes through ``gateway/dispatch/operations.py``, the code the JSON API runs: the same scope, authority,
transitions and audit entries. The queue's filters and order are presentation only (a filter never widens what
``queue_page`` returned). No personal data in a URL: case ids, states and classes only; the holder read is a
POST that asks for the purpose first.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from aiohttp import web

from gateway.console.web import Ctx, page, render, see_other
from gateway.dispatch import attachments, operations
from gateway.dispatch.operations import QueueFilter
from gateway.dispatch.runtime import DISPATCH
from gateway.dispatch.store import valid_case_id
from gateway.errors import BadRequestError, GatewayError, NotFoundError
from gateway.principals import Role
from policy.casework import Case, CaseState
from policy.evidence import ATTACHMENT_MAX_BYTES, ATTACHMENTS_MAX, EXTENSIONS
from policy.purpose import PURPOSE
from policy.routing import UNROUTED, EventClass

__all__ = ["routes", "sort_queue"]

routes = web.RouteTableDef()
CASE_ROLES = (Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR)
_SOON = timedelta(hours=1)  # a deadline this close is shown amber


def urgency(case: Case, now: datetime) -> str:
    """The colour class of a queue row: ``late`` overdue, ``soon`` within the hour, else ``ok``."""
    if case.overdue or (case.stage_deadline is not None and case.stage_deadline <= now):
        return "late"
    if case.stage_deadline is not None and case.stage_deadline - now <= _SOON:
        return "soon"
    return "ok"


def sort_queue(cases: list[Case]) -> list[Case]:
    """Overdue first, then by stage deadline (none last), then oldest first."""
    far = datetime.max.replace(tzinfo=cases[0].created_at.tzinfo) if cases else datetime.max
    return sorted(cases, key=lambda c: (not c.overdue, c.stage_deadline or far, c.created_at, c.case_id))


def _choice(raw: str, allowed: set[str]) -> str:
    return raw if raw in allowed else ""


@routes.get("/console/queue")
@page(*CASE_ROLES)
async def queue(ctx: Ctx) -> web.StreamResponse:
    runtime = ctx.request.app[DISPATCH]
    q = ctx.request.query
    state = _choice(q.get("state", ""), {s.value for s in CaseState})
    klass = _choice(q.get("class", ""), {c.value for c in EventClass})
    overdue = _choice(q.get("overdue", ""), {"yes", "no"})
    escalated = _choice(q.get("escalated", ""), {"yes", "no"})
    unrouted = q.get("unrouted") == "yes" and ctx.who.role is Role.DISPATCHER
    cursor = int(q["cursor"]) if re.fullmatch(r"[0-9]{1,20}", q.get("cursor", "")) else 0  # SSCAN: 64 bits
    filters = QueueFilter(CaseState(state) if state else None, {"yes": True, "no": False}.get(overdue),
                          UNROUTED if unrouted else None)  # fmt: skip
    found, next_cursor = await operations.queue_page(runtime, ctx.who, filters, limit=runtime.settings.page_max,
                                                     cursor=cursor)  # fmt: skip
    found = [c for c in found if (not klass or c.event_class.value == klass)
             and (not escalated or (c.escalation_count > 0) == (escalated == "yes"))]  # fmt: skip
    now = runtime.now()
    rows = [(c, urgency(c, now)) for c in sort_queue(found)]
    return render(ctx, "queue.html", rows=rows, states=[s.value for s in CaseState],
                  classes=sorted(c.value for c in EventClass), state=state, klass=klass, overdue=overdue,
                  escalated=escalated, unrouted=unrouted, next_cursor=next_cursor, now=now)  # fmt: skip


def _case_id(ctx: Ctx) -> str:
    case_id = ctx.request.match_info["case_id"]
    if not valid_case_id(case_id):
        raise NotFoundError("no such case")
    return case_id


async def _case_page(ctx: Ctx, case_id: str, *, status: int = 200, refused: str = "") -> web.Response:
    runtime = ctx.request.app[DISPATCH]
    case, extension = await operations.read_case(runtime, ctx.who, case_id)
    files = await attachments.attachment_list(runtime, case.case_id)  # no content: a download is its own read
    departments = sorted(d for d in runtime.routing.departments() if runtime.routing.serves(d, case.jurisdiction))
    holder_ok = (ctx.who.role in (Role.HANDLER, Role.SUPERVISOR)
                 and case.event_class.value in runtime.holder_read_classes)  # fmt: skip
    return render(ctx, "case.html", status=status, case=case, extension=extension, departments=departments,
                  actions=operations.available_actions(ctx.who, case), urgency=urgency(case, runtime.now()),
                  holder_ok=holder_ok, purpose=PURPOSE, done=ctx.request.query.get("done", ""),
                  refused=refused, files=files, file_max=ATTACHMENT_MAX_BYTES)  # fmt: skip


@routes.get("/console/cases/{case_id}")
@page(*CASE_ROLES)
async def case_page(ctx: Ctx) -> web.StreamResponse:
    return await _case_page(ctx, _case_id(ctx))


@routes.post("/console/cases/{case_id}/act")
@page(*CASE_ROLES)
async def case_act(ctx: Ctx) -> web.StreamResponse:
    """One action; a refusal shows the case again with the refusal's code (and its HTTP status)."""
    case_id = _case_id(ctx)
    name = ctx.field("action")
    try:
        await operations.act(ctx.request.app[DISPATCH], ctx.who, case_id, name, note=ctx.field("note") or None,
                             department=ctx.field("department") or None, result=ctx.field("result") or None,
                             into=ctx.field("into") or None)  # fmt: skip
    except GatewayError as exc:
        if exc.status == 404:
            raise
        return await _case_page(ctx, case_id, status=exc.status, refused=exc.instance_code)
    return see_other(f"/console/cases/{case_id}?done={name if name.isidentifier() else ''}")


@routes.post("/console/cases/{case_id}/attachments")
@page(*CASE_ROLES, form_max=ATTACHMENT_MAX_BYTES + 64 * 1024)
async def case_attach(ctx: Ctx) -> web.StreamResponse:
    """Attach a photo or PDF (a multipart form); the API's code decides the type from the content and audits it."""
    case_id = _case_id(ctx)
    runtime = ctx.request.app[DISPATCH]
    upload = ctx.form.get("file") if ctx.form is not None else None
    if not isinstance(upload, web.FileField):
        raise BadRequestError("choose a file to attach")
    try:
        case = await attachments.case_for(runtime, ctx.who, case_id)
        await attachments.add_attachment_to(runtime, ctx.who, case, upload.file.read())
    except GatewayError as exc:
        if exc.status == 404:
            raise
        return await _case_page(ctx, case_id, status=exc.status, refused=exc.instance_code)
    return see_other(f"/console/cases/{case_id}?done=attach")


@routes.get("/console/cases/{case_id}/attachments/{n}")
@page(*CASE_ROLES)
async def case_attachment(ctx: Ctx) -> web.StreamResponse:
    """One file as a download (its sniffed type, never rendered inline), audited before it leaves."""
    runtime = ctx.request.app[DISPATCH]
    raw = ctx.request.match_info["n"]
    if len(raw) > 3 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= ATTACHMENTS_MAX:
        raise NotFoundError("no such attachment")
    case = await attachments.case_for(runtime, ctx.who, _case_id(ctx))
    data, content_type = await attachments.read_attachment(runtime, ctx.who, case, int(raw))
    return web.Response(body=data, content_type=content_type, headers={
        "Content-Disposition": f'attachment; filename="{case.case_id}-{int(raw)}.{EXTENSIONS[content_type]}"'})


@routes.post("/console/cases/{case_id}/holder")
@page(Role.HANDLER, Role.SUPERVISOR)
async def case_holder(ctx: Ctx) -> web.StreamResponse:
    """The holder read: the purpose is asked first and must be the one the law allows; the read is audited by
    ``operations.read_holder`` before the page shows the reference, and the page says it was recorded."""
    case_id = _case_id(ctx)
    if ctx.field("purpose") != PURPOSE:
        raise GatewayError("the holder of a case is read for epidemic prevention only", code="purpose_not_allowed")
    read = await operations.read_holder(ctx.request.app[DISPATCH], ctx.who, case_id)
    return render(ctx, "holder.html", case_id=read.case_id, holder_ref=read.holder_ref, audit_id=read.audit_id,
                  temperature_c=read.temperature_c)
