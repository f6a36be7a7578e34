"""Sign-in, sign-out, the language switch, the landing page of each role and the console's static files.

A principal's token is exchanged for a session cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` behind TLS,
``Max-Age`` the session's life). Devices, app backends and the feeder cannot sign in: they are machines, and
the console only offers what people do.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from gateway.auth import PRINCIPAL_CACHE
from gateway.console import csrf
from gateway.console.i18n import LANG_COOKIE, LANGUAGES
from gateway.console.web import CONSOLE, COOKIE, SIGN_IN, Ctx, page, render, secure_headers, see_other, set_cookie
from gateway.errors import AuthError, ForbiddenError
from gateway.principals import Role, hash_token, is_token_shaped

__all__ = ["HOME", "PEOPLE", "routes"]

routes = web.RouteTableDef()

# The roles of people; every other role is a machine's and is refused at sign-in.
PEOPLE = frozenset({Role.SITE_MANAGER, Role.DISPATCHER, Role.HANDLER, Role.SUPERVISOR, Role.PRIVACY_OFFICER,
                    Role.ADMIN})  # fmt: skip
HOME = {
    Role.SITE_MANAGER: "/console/site",
    Role.DISPATCHER: "/console/queue",
    Role.HANDLER: "/console/queue",
    Role.SUPERVISOR: "/console/queue?state=checking",
    Role.PRIVACY_OFFICER: "/console/privacy/audit",
    Role.ADMIN: "/console/admin",
}
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


@routes.get("/console")
async def console_root(request: web.Request) -> web.StreamResponse:
    return secure_headers(see_other("/console/"))


@routes.get("/console/")
@page(*PEOPLE)
async def home(ctx: Ctx) -> web.StreamResponse:
    return see_other(HOME[ctx.who.role])


@routes.get("/console/signin")
@page(public=True)
async def sign_in_form(ctx: Ctx) -> web.StreamResponse:
    if ctx.principal is not None:
        return see_other(HOME.get(ctx.principal.role, "/console/"))
    token = csrf.new_pre_token()
    resp = render(ctx, "signin.html", pre_token=token)
    set_cookie(resp, ctx.request, csrf.PRE_COOKIE, token, csrf.PRE_TTL_S)
    return resp


@routes.post("/console/signin")
@page(public=True)
async def sign_in(ctx: Ctx) -> web.StreamResponse:
    token = ctx.field("token")
    # The same answer for a malformed, unknown, revoked or expired token: the form is no oracle for tokens.
    principal = await ctx.request.app[PRINCIPAL_CACHE].usable(hash_token(token)) if is_token_shaped(token) else None
    if principal is None:
        raise AuthError("invalid token")
    if principal.role not in PEOPLE:
        raise ForbiddenError("devices, app backends and the feeder do not sign in to the console")
    sessions = ctx.request.app[CONSOLE].store()
    session_id, _ = await sessions.create(principal, hash_token(token))
    resp = see_other(HOME[principal.role])
    set_cookie(resp, ctx.request, COOKIE, session_id, sessions.ttl_s)
    resp.del_cookie(csrf.PRE_COOKIE, path="/console/")
    return resp


@routes.post("/console/signout")
@page(*PEOPLE)
async def sign_out(ctx: Ctx) -> web.StreamResponse:
    await ctx.request.app[CONSOLE].store().delete(ctx.request.cookies.get(COOKIE, ""))
    resp = see_other(SIGN_IN)
    resp.del_cookie(COOKIE, path="/console/")
    return resp


@routes.get("/console/lang/{lang}")
@page(public=True)
async def switch_language(ctx: Ctx) -> web.StreamResponse:
    """Only a preference cookie changes; ``back`` must be a console path (no open redirect)."""
    lang = ctx.request.match_info["lang"]
    back = ctx.request.query.get("back", "/console/")
    if not back.startswith("/console/") or "//" in back or "\\" in back:
        back = "/console/"
    resp = see_other(back)
    if lang in LANGUAGES:
        set_cookie(resp, ctx.request, LANG_COOKIE, lang, 365 * 24 * 3600)
    return resp


@routes.get("/console/static/{name}")
async def static_file(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in _STATIC:
        raise web.HTTPNotFound()
    body = (resources.files("gateway.console") / "static" / name).read_bytes()
    resp = web.Response(body=body, content_type=_STATIC[name])
    resp.headers["Cache-Control"] = "max-age=3600"
    return secure_headers(resp)
