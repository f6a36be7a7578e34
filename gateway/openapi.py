"""The OpenAPI 3.1 description of the gateway, built from the running router.

Paths, methods and the roles each route admits come from the app itself (``app.router`` and the ``@requires``
declaration), so a route cannot exist undocumented: ``build`` raises for a route without an entry in
``gateway.apidocs.ROUTE_DOCS`` and for an entry without a route (``tests/gateway/test_openapi.py``). Request
bodies, query parameters and successful answers come from that table; every refusal has the one error shape
``{"error": code, "detail": text}`` with a code of ``gateway.errors.ERROR_STATUS``.

``GET /openapi.json`` serves it (public: it describes the API, it holds no data); ``docs/openapi.json`` is the
same document written by ``placegate openapi`` (gateway/openapi_cli.py) and held equal to it by a test.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import orjson
from aiohttp import web

from gateway.apidocs import ROUTE_DOCS, RouteDoc
from gateway.auth import roles_of
from gateway.errors import ERROR_STATUS

__all__ = ["build", "install", "render", "routes"]

routes = web.RouteTableDef()


class _Rendered:
    """The rendered document, built on the first request (the router is complete by then)."""

    __slots__ = ("body",)

    def __init__(self) -> None:
        self.body: bytes | None = None


_DOC: web.AppKey[_Rendered] = web.AppKey("openapi_document", _Rendered)
_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def _version() -> str:
    try:
        return metadata.version("placegate")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "enum": sorted(ERROR_STATUS),
                      "description": "stable code; its HTTP status is fixed (gateway/errors.py)"},
            "detail": {"type": "string"},
        },
    }


def _operation(method: str, path: str, handler: object, doc: RouteDoc) -> dict[str, Any]:
    roles = roles_of(handler)
    who = "public" if roles is None else "roles: " + ", ".join(sorted(r.value for r in roles))
    op: dict[str, Any] = {
        "operationId": doc.operation_id,
        "summary": doc.summary,
        "description": f"{doc.description}\n\nAccess: {who}.".strip(),
        "tags": [doc.tag],
        "responses": {
            str(doc.ok_status): {
                "description": doc.ok_description,
                "content": {t: {"schema": doc.ok_schema} for t in (doc.ok_media_type, *doc.ok_media_types_more)},
            },
            "default": {
                "description": "a refusal: the stable code names why; the status follows from the code",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
        },
    }
    if roles is not None:
        op["security"] = [{"bearer": []}]
    params = [p.to_openapi() for p in doc.query]
    params += [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "maxLength": 128}}
        for name in _path_names(path)
    ]
    if params:
        op["parameters"] = params
    if doc.body is not None:
        op["requestBody"] = {"required": True, "content": {doc.body_media_type: {"schema": doc.body}}}
    return op


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def build(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document of ``app``'s router. :raises LookupError: a route without a doc or the reverse."""
    paths: dict[str, dict[str, Any]] = {}
    seen: set[tuple[str, str]] = set()
    for route in app.router.routes():
        if route.method not in _METHODS or route.resource is None:
            continue
        path = route.resource.canonical
        if path == "/console" or path.startswith("/console/"):
            # The web console's pages are HTML forms for people behind a session cookie, not the JSON API this
            # document describes (clients must not build on them); docs/console.md describes them.
            continue
        key = (route.method, path)
        doc = ROUTE_DOCS.get(key)
        if doc is None:
            raise LookupError(f"{route.method} {path} has no entry in gateway/apidocs.py ROUTE_DOCS")
        seen.add(key)
        paths.setdefault(path, {})[route.method.lower()] = _operation(route.method, path, route.handler, doc)
    if stale := sorted(set(ROUTE_DOCS) - seen):
        raise LookupError(f"documented but not routed: {stale}")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "placegate",
            "version": _version(),
            "description": "Place-code verification gateway: scans, status feed, dispatch cases, privacy "
                           "oversight. Errors: {\"error\": code, \"detail\": text}; each code's HTTP status is "
                           "fixed (README, docs/operations.md).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": _error_schema()},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a principal's token (`placegate principals add`)"}},
        },
    }


def render(app: web.Application) -> bytes:
    return orjson.dumps(build(app), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


@routes.get("/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """The API description; public (it describes routes, it holds no data)."""
    cache = request.app[_DOC]
    if cache.body is None:
        cache.body = render(request.app)
    return web.Response(body=cache.body, content_type="application/json")


def install(app: web.Application) -> None:
    app[_DOC] = _Rendered()
    app.router.add_routes(routes)
