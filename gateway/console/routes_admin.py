"""The administrator's page: principals (add, revoke, reissue; the token is shown once, on the answer to the POST
that made it, and never again), places (add; the signed place code as a QR image to print for the door, as SVG on
the page and as a PNG download) and devices. Every change goes through ``gateway/trust/admin.py``, the CLI's code,
with the administrator as the audited actor.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace

import segno
from aiohttp import web
from markupsafe import Markup

from gateway.appstate import REDIS, RULES, SETTINGS
from gateway.console.web import Ctx, page, render, small_int
from gateway.dispatch.runtime import DISPATCH
from gateway.errors import BadRequestError, NotFoundError
from gateway.principals import Principal, Role
from gateway.trust import admin
from gateway.trust.checks import RegistryInputError
from gateway.trust.registry import Place, Registry

__all__ = ["qr_png", "qr_svg", "routes"]

routes = web.RouteTableDef()
ROLES = tuple(r.value for r in Role if r is not Role.DEVICE)  # devices have their own form (bound to one place)
CODE_DAYS = 365


def qr_svg(code: str) -> Markup:
    """The place code as an inline SVG QR (no script, no style attribute: the CSP holds)."""
    return Markup(segno.make(code, error="m").svg_inline(scale=5, title="place code"))


def qr_png(code: str) -> bytes:
    out = io.BytesIO()
    segno.make(code, error="m").save(out, kind="png", scale=8, border=4)
    return out.getvalue()


def _registry(ctx: Ctx) -> Registry:
    return Registry(ctx.request.app[REDIS], actor=ctx.who.principal_id)


async def _page(ctx: Ctx, status: int = 200, **shown: object) -> web.Response:
    registry = _registry(ctx)
    principals = await registry.list_principals()
    return render(ctx, "admin.html", status=status, principals=[p for p in principals if p.role is not Role.DEVICE],
                  devices=[p for p in principals if p.role is Role.DEVICE], places=await registry.list_places(),
                  roles=ROLES, classes=sorted(ctx.request.app[RULES].classes),
                  **{"token": None, "issued_for": "", "place_code": None, "qr": None, "refused": "", **shown})


@routes.get("/console/admin")
@page(Role.ADMIN)
async def admin_page(ctx: Ctx) -> web.StreamResponse:
    return await _page(ctx)


@routes.post("/console/admin/principals")
@page(Role.ADMIN)
async def add_principal(ctx: Ctx) -> web.StreamResponse:
    try:
        role = Role(ctx.field("role"))
    except ValueError:
        raise BadRequestError("role is one of the roles") from None
    if role is Role.DEVICE:
        raise BadRequestError("devices are added with the device form")
    days = small_int(ctx.field("expires_days"), 0)
    principal = Principal(
        ctx.field("principal_id"), role, frozenset(p.strip() for p in ctx.field("places").split(",") if p.strip()),
        ctx.field("jurisdiction"), ctx.field("department"), int(time.time()) + days * 86400 if days else 0,
    )  # fmt: skip
    routing = ctx.request.app[DISPATCH].routing
    try:
        token = await admin.add_principal(_registry(ctx), routing, principal, reissue=ctx.field("reissue") == "yes")
    except RegistryInputError as exc:
        return await _page(ctx, status=400, refused=str(exc))
    return await _page(ctx, status=201, token=token, issued_for=principal.principal_id)


@routes.post("/console/admin/principals/{principal_id}/revoke")
@page(Role.ADMIN)
async def revoke_principal(ctx: Ctx) -> web.StreamResponse:
    principal_id = ctx.request.match_info["principal_id"]
    if principal_id == ctx.who.principal_id:
        raise BadRequestError("an administrator does not revoke their own token here")
    if not await admin.revoke(_registry(ctx), principal_id):
        raise NotFoundError("no such principal")
    return await _page(ctx)


@routes.post("/console/admin/principals/{principal_id}/reissue")
@page(Role.ADMIN)
async def reissue_principal(ctx: Ctx) -> web.StreamResponse:
    """A new token for a revoked principal, with the scope it had (revoke first: an active token stays valid)."""
    principal_id = ctx.request.match_info["principal_id"]
    registry = _registry(ctx)
    current = await registry.principal_by_id(principal_id)
    if current is None:
        raise NotFoundError("no such principal")
    try:
        if current.role is Role.DEVICE:
            (place,) = current.places
            token = await admin.add_device(registry, principal_id, place, reissue=True, id_card=current.id_card)
        else:
            token = await admin.add_principal(registry, ctx.request.app[DISPATCH].routing,
                                              replace(current, revoked=False), reissue=True)  # fmt: skip
    except RegistryInputError as exc:
        return await _page(ctx, status=400, refused=str(exc))
    return await _page(ctx, status=201, token=token, issued_for=principal_id)


@routes.post("/console/admin/devices")
@page(Role.ADMIN)
async def add_device(ctx: Ctx) -> web.StreamResponse:
    device_id = ctx.field("device_id")
    try:
        token = await admin.add_device(_registry(ctx), device_id, ctx.field("place"), reissue=False)
    except RegistryInputError as exc:
        return await _page(ctx, status=400, refused=str(exc))
    return await _page(ctx, status=201, token=token, issued_for=device_id)


async def _issue(ctx: Ctx, place: Place, *, replace_existing: bool) -> str:
    app = ctx.request.app
    code = await admin.add_place(_registry(ctx), app[SETTINGS], app[RULES], place, days=CODE_DAYS,
                                 replace=replace_existing)  # fmt: skip
    if code is None:
        raise RegistryInputError("no usable local place key: run `placegate keys new --usage place`")
    return code


@routes.post("/console/admin/places")
@page(Role.ADMIN)
async def add_place(ctx: Ctx) -> web.StreamResponse:
    place = Place(ctx.field("place_id"), ctx.field("name") or ctx.field("place_id"), ctx.field("venue_class"),
                  ctx.field("jurisdiction"))  # fmt: skip
    try:
        code = await _issue(ctx, place, replace_existing=False)
    except RegistryInputError as exc:
        return await _page(ctx, status=400, refused=str(exc))
    return await _page(ctx, status=201, place_code=code, qr=qr_svg(code), issued_for=place.place_id)


@routes.post("/console/admin/places/{place_id}/qr.png")
@page(Role.ADMIN)
async def place_qr_png(ctx: Ctx) -> web.StreamResponse:
    """A fresh signed code of a registered place as a PNG to print (the code is signed anew: none is stored)."""
    place = await _registry(ctx).get_place(ctx.request.match_info["place_id"])
    if place is None:
        raise NotFoundError("no such place")
    try:
        code = await _issue(ctx, place, replace_existing=True)
    except RegistryInputError as exc:
        return await _page(ctx, status=400, refused=str(exc))
    resp = web.Response(body=qr_png(code), content_type="image/png")
    resp.headers["Content-Disposition"] = f'attachment; filename="{place.place_id}.png"'
    return resp
