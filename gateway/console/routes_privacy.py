"""The privacy officer's pages: the audit trail (filter, page, verify the chain with one button), approvals (grant
one trace to another officer's request; see those granted lately, pending or used), the retention report with its
violations highlighted, and the record of processing activities.

Every read goes through ``gateway/privacy/oversight.py``, the code of the JSON routes, so each is audited the same
way. Filters travel in POST bodies, never in a URL: a principal filter may be anything a person typed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web

from gateway.appstate import REDIS, RULES, SETTINGS
from gateway.console.web import Ctx, page, render, small_int
from gateway.principals import Role
from gateway.privacy import oversight
from gateway.privacy.audit import ChainReport
from gateway.privacy.ropa import build_ropa
from gateway.privacy.tracing import load_approval
from policy.purpose import PURPOSE

__all__ = ["WINDOWS_H", "routes"]

routes = web.RouteTableDef()
WINDOWS_H = (1, 24, 24 * 7, 24 * 31)  # the trail's query range is at most 31 days (policy.purpose)
PAGE = 50
_GRANTS_LISTED = 50


def _window(ctx: Ctx) -> tuple[datetime, datetime]:
    """The page's window: the fixed ends a "next page" form carries, else the chosen hours back from now."""
    since, until = oversight.parse_time(ctx.field("since"), "since"), oversight.parse_time(ctx.field("until"), "until")
    if since is not None and until is not None:
        return since, until
    hours = small_int(ctx.field("hours"), 24)
    now = datetime.now(UTC)
    return now - timedelta(hours=hours if hours in WINDOWS_H else 24), now


async def _audit(ctx: Ctx, report: ChainReport | None = None) -> web.Response:
    app = ctx.request.app
    since, until = _window(ctx)
    principal, action = ctx.field("principal"), ctx.field("action")
    result = await oversight.audit_page(app[REDIS], app[SETTINGS], ctx.who, since=since, until=until, limit=PAGE,
                                        principal=principal, action=action, cursor=ctx.field("cursor") or None)
    return render(ctx, "audit.html", entries=result.entries, next_cursor=result.next_cursor, since=since.isoformat(),
                  until=until.isoformat(), principal_filter=principal, action_filter=action, windows=WINDOWS_H,
                  hours=ctx.field("hours") or "24", report=report)  # fmt: skip


@routes.get("/console/privacy/audit")
@page(Role.PRIVACY_OFFICER)
async def audit(ctx: Ctx) -> web.StreamResponse:
    return await _audit(ctx)


@routes.post("/console/privacy/audit")
@page(Role.PRIVACY_OFFICER)
async def audit_filtered(ctx: Ctx) -> web.StreamResponse:
    return await _audit(ctx)


@routes.post("/console/privacy/audit/verify")
@page(Role.PRIVACY_OFFICER)
async def audit_verify(ctx: Ctx) -> web.StreamResponse:
    report = await oversight.verify(ctx.request.app[REDIS], ctx.who)
    return await _audit(ctx, report=report)


@routes.get("/console/privacy/retention")
@page(Role.PRIVACY_OFFICER, Role.ADMIN)
async def retention(ctx: Ctx) -> web.StreamResponse:
    app = ctx.request.app
    report = await oversight.retention(app[REDIS], app[SETTINGS], ctx.who)
    return render(ctx, "retention.html", report=report)


@routes.get("/console/privacy/ropa")
@page(Role.PRIVACY_OFFICER, Role.ADMIN)
async def ropa(ctx: Ctx) -> web.StreamResponse:
    app = ctx.request.app
    return render(ctx, "ropa.html", ropa=build_ropa(app[SETTINGS], app[RULES], app, now=datetime.now(UTC)))


async def _approvals(ctx: Ctx, status: int = 200, granted: dict[str, str] | None = None) -> web.Response:
    """The grant form and the grants of the last week, read from the trail (an audited query) with each one's
    present state from the approval store: pending, used, or gone (expired)."""
    app = ctx.request.app
    now = datetime.now(UTC)
    trail = await oversight.audit_page(app[REDIS], app[SETTINGS], ctx.who, since=now - timedelta(days=7), until=now,
                                       limit=_GRANTS_LISTED, action="trace_approve")  # fmt: skip
    rows = []
    for entry in reversed(trail.entries):
        approval_id = entry.fields.get("object", "").removeprefix("approval:")
        stored = await load_approval(app[REDIS], approval_id)
        state = "expired" if stored is None else ("used" if stored.used else "pending")
        rows.append({"id": approval_id, "when": entry.fields.get("when", ""), "by": entry.fields.get("who", ""),
                     "requester": entry.fields.get("requester", ""), "case_ref": entry.fields.get("case_ref", ""),
                     "window": entry.fields.get("window", ""), "state": state})  # fmt: skip
    return render(ctx, "approvals.html", status=status, rows=rows, granted=granted, purpose=PURPOSE)


@routes.get("/console/privacy/approvals")
@page(Role.PRIVACY_OFFICER)
async def approvals(ctx: Ctx) -> web.StreamResponse:
    return await _approvals(ctx)


@routes.post("/console/privacy/approvals")
@page(Role.PRIVACY_OFFICER)
async def approvals_grant(ctx: Ctx) -> web.StreamResponse:
    """Grant one trace; the holder reference travels in this POST only, and only its keyed hash is stored."""
    app = ctx.request.app
    hours = small_int(ctx.field("valid_h"), 1)
    days = small_int(ctx.field("days"), 14)
    now = datetime.now(UTC)
    granted = await oversight.grant(
        app[REDIS], app[SETTINGS], ctx.who, holder=ctx.field("holder_ref"), requester_id=ctx.field("requester"),
        case_ref=ctx.field("case_ref"), purpose=ctx.field("purpose"),
        since_raw=(now - timedelta(days=days)).isoformat(), until_raw=now.isoformat(), valid_s=hours * 3600,
    )  # fmt: skip
    return await _approvals(ctx, status=201, granted=granted)
