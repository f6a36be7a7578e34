"""The HTTP edges of every JSON route (discovered from the live router, so a new route is covered when it lands),
on a real aiohttp server: a compressed body is refused with 415 before anything inflates it, a body that breaks
its own framing is a 400, and a body that stalls after the headers is cut with 408 at the read deadline. Never a
500, never a logged error."""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import zlib

import brotli
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from gateway.app import create_app
from gateway.auth import roles_of
from gateway.principals import Principal, Role
from gateway.settings import Settings
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway.conftest import World, WorldFactory

BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
# A path parameter any route accepts as well formed (a case id's shape), so the refusal under test is reached.
WELL_FORMED_ID = "c" + "0" * 20
SCOPES = {
    Role.DEVICE: {"places": frozenset({"place-a"})},
    Role.SITE_MANAGER: {"places": frozenset({"place-a"})},
    Role.DISPATCHER: {"jurisdiction": "city/d1"},
    Role.SUPERVISOR: {"jurisdiction": "city/d1"},
    Role.HANDLER: {"department": "health"},
}
DOCUMENT = orjson.dumps({"code": "x" * 64, "holder_ref": "h-1", "action": "start", "records": []})
# Over any route's limit once inflated (16 KiB for a scan, 8 MiB for aiohttp's own cap), a few KiB compressed.
BOMB = b'{"code": "' + b" " * (12 * 1024 * 1024) + b'"}'
ENCODINGS: dict[str, bytes] = {
    "gzip": gzip.compress(DOCUMENT),
    "deflate": zlib.compress(DOCUMENT),
    "br": brotli.compress(DOCUMENT),
    "x-unknown": DOCUMENT,
    "gzip (corrupt)": b"\x1f\x8b\x08\x00 not gzip at all",
    "br (bomb)": brotli.compress(BOMB),
    "gzip (bomb)": gzip.compress(BOMB),
    "gzip, identity": gzip.compress(DOCUMENT),
}


def _body_routes(app: web.Application) -> list[tuple[str, str, frozenset[Role]]]:
    out = []
    for route in app.router.routes():
        roles = roles_of(route.handler)
        if route.resource is not None and route.resource.canonical.startswith("/console/"):
            continue  # HTML forms behind a session cookie, not bearer JSON routes: tests/console/
        if route.method in BODY_METHODS and roles:
            assert route.resource is not None
            out.append((route.method, re.sub(r"\{[^}]+\}", WELL_FORMED_ID, route.resource.canonical), roles))
    return out


async def _token(world: World, roles: frozenset[Role]) -> str:
    role = sorted(roles, key=lambda r: r.value)[0]
    principal = Principal(f"edge-{role.value}", role, **SCOPES.get(role, {}))  # type: ignore[arg-type]
    return await create_principal(Registry(world.redis), principal)


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


@pytest.fixture
async def edge_world(make_world: WorldFactory) -> World:
    return await make_world(principal_cache_s=0, body_read_timeout_s=0.3)


async def test_the_router_has_the_json_routes_of_the_issue(edge_world: World) -> None:
    paths = {path for _, path, _ in _body_routes(edge_world.client.app)}
    assert paths >= {"/v1/scan", "/v1/scan/batch", "/v1/reports", "/v1/status", "/v1/privacy/trace"}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
async def test_a_compressed_body_is_refused_with_415_on_every_json_route(
    edge_world: World, encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    header = encoding.split(" (", 1)[0]
    for method, path, roles in _body_routes(edge_world.client.app):
        headers = {"Authorization": f"Bearer {await _token(edge_world, roles)}", "Content-Type": "application/json",
                   "Content-Encoding": header}
        resp = await edge_world.client.request(method, path, data=ENCODINGS[encoding], headers=headers)
        assert resp.status == 415, (method, path, resp.status, await resp.text())
        assert (await resp.json())["error"] == "unsupported_media_type"
    _no_error_logged(caplog)


async def test_identity_is_no_compression_and_is_accepted(edge_world: World) -> None:
    await edge_world.set_status("holder-1")
    for header in ("identity", "Identity ", ""):
        resp = await edge_world.client.post("/v1/scan", data=orjson.dumps({"code": edge_world.code("holder-1")}),
                                            headers={**edge_world.auth("dev-a"), "Content-Type": "application/json",
                                                     "Content-Encoding": header})
        assert resp.status == 200, header
        assert (await resp.json())["decision"] == "admit"


async def test_the_app_never_inflates_a_body(redis: Redis, settings: Settings) -> None:
    """aiohttp inflates a compressed body as it arrives, before any handler or limit sees it; the app turns that
    off, so a route that reads raw bytes gets the compressed bytes."""
    seen: list[bytes] = []

    async def raw(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response()

    app = create_app(settings, redis=redis)
    app.router.add_post("/probe", raw)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/probe", data=ENCODINGS["gzip (bomb)"], headers={"Content-Encoding": "gzip"})
        assert resp.status == 200
    assert seen == [ENCODINGS["gzip (bomb)"]]


async def _raw_request(world: World, head: bytes, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    server = world.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(head + body)
    await writer.drain()
    return reader, writer


def _head(world: World, path: str, *, length: int | None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n{size}{extra}"
            f"Authorization: Bearer {world.tokens['dev-a']}\r\n\r\n").encode()


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, object], str]:
    """Status, JSON body and the Connection header."""
    status_line = await reader.readline()
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), orjson.loads(body), headers.get("connection", "")


@pytest.mark.parametrize("path", ["/v1/scan", "/v1/scan/batch"])
async def test_a_body_that_stalls_after_the_headers_is_cut_with_408(
    edge_world: World, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    reader, writer = await _raw_request(edge_world, _head(edge_world, path, length=100), b'{"code": "')
    try:
        async with asyncio.timeout(10):  # the deadline is 0.3 s; this only keeps a regression from hanging
            status, body, connection = await _answer(reader)
    finally:
        writer.close()
    assert status == 408
    assert body["error"] == "request_timeout"
    assert connection.lower() == "close", "the rest of a late body must not be read as the next request"
    await asyncio.sleep(0.1)  # the server sees the client go
    _no_error_logged(caplog)


async def test_a_chunked_body_that_stalls_is_cut_with_408(edge_world: World) -> None:
    reader, writer = await _raw_request(edge_world, _head(edge_world, "/v1/scan", length=None), b"a\r\n{\"code\": \"")
    try:
        async with asyncio.timeout(10):
            status, body, _ = await _answer(reader)
    finally:
        writer.close()
    assert (status, body["error"]) == (408, "request_timeout")


async def test_a_client_that_goes_away_mid_body_is_no_server_error(
    edge_world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """On a runner as `placegate serve` builds it: aiohttp's TestServer cancels the handler of a closed connection
    instead, so the handler never sees the reset there."""
    caplog.set_level(logging.DEBUG)
    runner = web.AppRunner(create_app(edge_world.settings, redis=edge_world.redis), handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        _, writer = await asyncio.open_connection("127.0.0.1", site.port)
        writer.write(_head(edge_world, "/v1/scan", length=100) + b'{"code": "')
        await writer.drain()
        await asyncio.sleep(0.1)  # the handler is reading the body
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(10):
            while not any(r.name == "aiohttp.access" for r in caplog.records):  # the request is over
                await asyncio.sleep(0.02)
    finally:
        await runner.cleanup()
    _no_error_logged(caplog)


async def test_a_body_that_breaks_its_chunk_framing_is_a_400(edge_world: World) -> None:
    """aiohttp's parser answers this one itself (and logs it as aiohttp.server's error): never a 500."""
    head = _head(edge_world, "/v1/scan", length=None)
    reader, writer = await _raw_request(edge_world, head, b"zz\r\n{}\r\n0\r\n\r\n")
    try:
        async with asyncio.timeout(10):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert int(status_line.split()[1]) == 400


async def test_a_slow_but_whole_body_within_the_deadline_is_answered(make_world: WorldFactory) -> None:
    world = await make_world(body_read_timeout_s=5.0)
    await world.set_status("holder-1")
    body = orjson.dumps({"code": world.code("holder-1")})
    reader, writer = await _raw_request(world, _head(world, "/v1/scan", length=len(body)), body[:10])
    try:
        await asyncio.sleep(0.2)
        writer.write(body[10:])
        async with asyncio.timeout(10):
            status, answer, _ = await _answer(reader)
    finally:
        writer.close()
    assert (status, answer["decision"]) == (200, "admit")
