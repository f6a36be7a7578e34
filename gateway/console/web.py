"""The console's plumbing: the page decorator (session, role, form token), HTML rendering with Jinja2
(autoescaped), the security headers of every console answer, and the session cookie.

Every console answer carries a strict Content-Security-Policy (only this origin's files; no inline script, no
inline style, no framing), ``X-Frame-Options: DENY``, ``no-referrer`` and ``no-store`` (pages may show case
notes). Refusals are HTML pages carrying the same stable code the API uses (``data-error`` on the page and the
``X-Placegate-Error`` header), with the status of ``gateway/errors.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from gateway.appstate import SETTINGS
from gateway.auth import PRINCIPAL, PRINCIPAL_CACHE, REFUSAL_AUDIT
from gateway.console import csrf
from gateway.console.i18n import LANG_COOKIE, Catalogue, load_catalogues, pick_language
from gateway.console.sessions import Session, SessionStore
from gateway.errors import (
    BadRequestError,
    ForbiddenError,
    GatewayError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from gateway.principals import Principal, Role

__all__ = ["CONSOLE", "COOKIE", "CSP", "Console", "Ctx", "page", "render", "secure_headers", "see_other", "set_cookie",
           "small_int"]

COOKIE = "pg_console"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
FORM_MAX_BYTES = 16 * 1024
SIGN_IN = "/console/signin"


@dataclass
class Console:
    """What every console page shares: the templates, the sessions and the catalogues."""

    env: jinja2.Environment
    catalogues: dict[str, Catalogue] = field(default_factory=load_catalogues)
    sessions: SessionStore | None = None  # bound to the app's Redis when the core context has opened it

    def store(self) -> SessionStore:
        if self.sessions is None:
            raise RuntimeError("the console's session store opens with the app")
        return self.sessions


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)


def make_environment() -> jinja2.Environment:
    # Autoescaping everywhere: case notes and report texts are typed by people and shown to others.
    return jinja2.Environment(loader=jinja2.PackageLoader("gateway.console", "templates"), autoescape=True,
                              undefined=jinja2.StrictUndefined)  # fmt: skip


@dataclass
class Ctx:
    """One request's console context; ``principal`` is ``None`` on the signed-out pages."""

    request: web.Request
    t: Catalogue
    principal: Principal | None = None
    session: Session | None = None
    form: MultiDictProxy[str | bytes | Any] | None = None

    def field(self, name: str) -> str:
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else ""

    @property
    def who(self) -> Principal:
        assert self.principal is not None
        return self.principal


_SMALL = re.compile(r"[0-9]{1,9}")


def small_int(raw: str, default: int) -> int:
    """A form or query number: ASCII digits, at most nine, else ``default`` (``int()`` takes other scripts'
    digits, raises on "²" and on more than 4300 digits: a 500 from input)."""
    return int(raw) if _SMALL.fullmatch(raw) else default


def see_other(location: str) -> web.Response:
    """303 to a console path (a response, not aiohttp's exception: its cookies must survive the middleware)."""
    return web.Response(status=303, headers={"Location": location})


def secure_headers(resp: web.StreamResponse) -> web.StreamResponse:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def is_tls(request: web.Request) -> bool:
    """Behind TLS: the connection itself, or the terminating proxy's ``X-Forwarded-Proto``. Trusting the header
    can only add ``Secure`` to a cookie, never remove it, so a forged header costs its sender the session only."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(resp: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int,
               *, http_only: bool = True) -> None:
    resp.set_cookie(name, value, max_age=max_age, path="/console/", httponly=http_only, samesite="Strict",
                    secure=is_tls(request))  # fmt: skip


def catalogue(request: web.Request) -> Catalogue:
    lang = pick_language(request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language", ""))
    return request.app[CONSOLE].catalogues[lang]


def render(ctx: Ctx, template: str, status: int = 200, **values: object) -> web.Response:
    env = ctx.request.app[CONSOLE].env
    body = env.get_template(template).render(
        t=ctx.t, lang=ctx.t.lang, principal=ctx.principal, role=ctx.principal.role.value if ctx.principal else "",
        csrf=ctx.session.csrf if ctx.session else "", path=ctx.request.path, **values,
    )  # fmt: skip
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _error_page(ctx: Ctx, exc: GatewayError) -> web.Response:
    resp = render(ctx, "error.html", status=exc.status, code=exc.instance_code, detail=exc.detail)
    resp.headers["X-Placegate-Error"] = exc.instance_code
    return resp


async def _read_form(request: web.Request, max_bytes: int) -> MultiDictProxy[str | bytes | Any]:
    if request.headers.get("Content-Encoding"):
        raise UnsupportedMediaTypeError("the console takes plain form bodies")
    if request.content_length is None or request.content_length > max_bytes:
        raise PayloadTooLargeError(f"this console form is at most {max_bytes} bytes")
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise UnsupportedMediaTypeError("the console takes HTML forms")
    try:
        # The API's deadline for a body (settings.body_read_timeout_s): a stalled sender does not hold a handler.
        async with asyncio.timeout(request.app[SETTINGS].body_read_timeout_s):
            return await request.post()
    except TimeoutError:
        raise RequestTimeoutError("the form did not arrive in time") from None
    except (ValueError, HttpProcessingError):  # a malformed multipart body or part header
        raise BadRequestError("malformed form body") from None


async def signed_in(request: web.Request) -> tuple[Principal, Session] | None:
    """The session of the request's cookie and its principal, while both are valid (revocation ends it)."""
    session_id = request.cookies.get(COOKIE, "")
    session = await request.app[CONSOLE].store().load(session_id) if session_id else None
    if session is None:
        return None
    principal = await request.app[PRINCIPAL_CACHE].usable(session.token_hash)
    if principal is None or principal.principal_id != session.principal_id:
        return None
    return principal, session


PageHandler = Callable[[Ctx], Awaitable[web.StreamResponse]]


def page(*roles: Role, public: bool = False, form_max: int = FORM_MAX_BYTES) -> Callable[[PageHandler], Callable[
        [web.Request], Awaitable[web.StreamResponse]]]:
    """A console page: signed-in (else to the sign-in page), of one of ``roles`` (else 403 ``forbidden``), every
    POST with this session's form token (else 403 ``csrf_failed``); ``public`` pages skip the first two.
    :param form_max: the largest POST body in bytes (a file upload's form is larger than the rest)."""
    allowed = frozenset(roles)

    def wrap(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            ctx = Ctx(request, catalogue(request))
            try:
                resp = await _run(handler, ctx, allowed, public, form_max)
            except GatewayError as exc:
                resp = _error_page(ctx, exc)
            return secure_headers(resp)

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        if not public:  # auth.roles_of reads it: the record of processing lists who may open the page
            run.placegate_roles = allowed  # type: ignore[attr-defined]
        return run

    return wrap


async def _run(handler: PageHandler, ctx: Ctx, allowed: frozenset[Role], public: bool, form_max: int
               ) -> web.StreamResponse:
    request = ctx.request
    found = await signed_in(request)
    if found is not None:
        ctx.principal, ctx.session = found
        request[PRINCIPAL] = ctx.principal  # the access log names who asked, as for the API
    if not public:
        if found is None:
            return see_other(SIGN_IN)
        if ctx.who.role not in allowed:
            hook = request.app.get(REFUSAL_AUDIT)  # audited like the API's role refusals
            if hook is not None:
                await hook(request, ctx.who)
            raise ForbiddenError("role not permitted")
    if request.method == "POST":
        ctx.form = await _read_form(request, form_max)
        # The signed-out form (sign-in) has the double-submit cookie; every other form its session's token.
        expected = request.cookies.get(csrf.PRE_COOKIE) if public else (ctx.session.csrf if ctx.session else None)
        csrf.check(expected, ctx.form.get(csrf.FIELD))
    return await handler(ctx)

