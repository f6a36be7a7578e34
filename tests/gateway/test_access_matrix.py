"""Every route declares its roles in one place, and the whole role-by-route matrix (discovered from the live
router, so every feature's routes are covered when they land) finds no unexpected success; tokens are hash-only,
and missing, malformed, unknown, revoked and expired tokens get stable codes that reveal nothing."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from aiohttp import web

from gateway.auth import requires, roles_of
from gateway.principals import Principal, Role, hash_token, in_jurisdiction, new_token, secrets_equal
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway.conftest import JURISDICTION, WorldFactory

PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json"}  # /metrics: token or loopback (test_observability.py)
SCOPES: dict[Role, dict[str, Any]] = {
    Role.DEVICE: {"places": frozenset({"place-a"})},
    Role.SITE_MANAGER: {"places": frozenset({"place-a"})},
    Role.DISPATCHER: {"jurisdiction": "city/d1"},
    Role.SUPERVISOR: {"jurisdiction": "city/d1"},
    Role.HANDLER: {"department": "health"},
}


def _routes(app: web.Application) -> list[tuple[str, str, object]]:
    out = []
    for route in app.router.routes():
        resource = route.resource
        assert resource is not None
        if resource.canonical == "/console" or resource.canonical.startswith("/console/"):
            continue  # session-cookie HTML pages, not bearer routes: tests/console/ checks their roles
        out.append((route.method, resource.canonical, route.handler))
    return out


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "zz-1", path)


async def _tokens_for_every_role(registry: Registry) -> dict[Role, str]:
    return {role: await create_principal(registry, Principal(f"matrix-{role.value}", role, **SCOPES.get(role, {})))
            for role in Role}


async def test_every_route_declares_roles_and_only_the_ops_routes_are_public(make_world: WorldFactory) -> None:
    world = await make_world()
    routes = _routes(world.client.app)
    assert {p for _, p, _ in routes} >= {"/v1/scan", "/v1/privacy/trace", "/v1/privacy/audit"}
    for method, path, handler in routes:
        roles = roles_of(handler)
        if path in PUBLIC:
            assert roles is None, f"{method} {path} must stay public"
        else:
            assert roles, f"{method} {path} declares no roles"


async def test_the_role_route_matrix_has_no_unexpected_success(make_world: WorldFactory) -> None:
    world = await make_world(principal_cache_s=0)
    tokens = await _tokens_for_every_role(Registry(world.redis))
    checked = 0
    for method, path, handler in _routes(world.client.app):
        allowed = roles_of(handler)
        if allowed is None:
            continue
        url = _fill(path)
        anonymous = await world.client.request(method, url, json={})
        assert anonymous.status == 401, (method, path)
        if method != "HEAD":
            assert (await anonymous.json())["error"] == "missing_token"
        for role, token in tokens.items():
            resp = await world.client.request(method, url, json={}, headers={"Authorization": f"Bearer {token}"})
            if role in allowed:
                assert resp.status != 401, (method, path, role)
            else:
                assert resp.status == 403, (method, path, role, resp.status)
                if method != "HEAD":
                    assert await resp.json() == {"error": "forbidden", "detail": "role not permitted"}
            checked += 1
    assert checked >= len(Role) * 8


async def test_missing_malformed_unknown_revoked_and_expired_tokens_look_alike(make_world: WorldFactory) -> None:
    world = await make_world(principal_cache_s=0)
    registry = Registry(world.redis)
    revoked = await create_principal(registry, Principal("po-revoked", Role.PRIVACY_OFFICER))
    await registry.revoke_principal("po-revoked")
    expired = await create_principal(registry, Principal("po-expired", Role.PRIVACY_OFFICER,
                                                         expires_at=int(time.time()) - 1))
    live = await create_principal(registry, Principal("po-live", Role.PRIVACY_OFFICER,
                                                      expires_at=int(time.time()) + 3600))
    url = "/v1/privacy/ropa"
    missing = await world.client.get(url)
    assert missing.status == 401 and (await missing.json())["error"] == "missing_token"
    answers = []
    for header in (f"Bearer {new_token()[0]}", f"Bearer {revoked}", f"Bearer {expired}", "Bearer pgt_short",
                   "Bearer " + "x" * 5000, f"Basic {live}", "Bearer", f"bearer {live}x"):
        resp = await world.client.get(url, headers={"Authorization": header})
        answers.append((resp.status, await resp.json()))
    assert all(a == (401, {"error": "invalid_token", "detail": "invalid token"}) for a in answers), answers
    assert (await world.client.get(url, headers={"Authorization": f"Bearer {live}"})).status == 200


async def test_a_revoked_token_stops_working(make_world: WorldFactory) -> None:
    world = await make_world(principal_cache_s=0)
    registry = Registry(world.redis)
    token = await create_principal(registry, Principal("po-2", Role.PRIVACY_OFFICER))
    headers = {"Authorization": f"Bearer {token}"}
    assert (await world.client.get("/v1/privacy/ropa", headers=headers)).status == 200
    assert await registry.revoke_principal("po-2")
    assert (await world.client.get("/v1/privacy/ropa", headers=headers)).status == 401


async def test_tokens_are_random_and_stored_only_as_their_sha256(make_world: WorldFactory) -> None:
    world = await make_world()
    token = await create_principal(Registry(world.redis), Principal("po-3", Role.PRIVACY_OFFICER))
    assert re.fullmatch(r"pgt_[A-Za-z0-9_-]{43}", token)
    assert len({new_token()[0] for _ in range(1000)}) == 1000
    everything = b""
    async for key in world.redis.scan_iter(count=1000):
        kind = (await world.redis.type(key)).decode()
        everything += key
        if kind == "hash":
            everything += b"".join(k + v for k, v in (await world.redis.hgetall(key)).items())
        elif kind == "stream":
            everything += b"".join(b"".join(k + v for k, v in f.items()) for _, f in await world.redis.xrange(key))
        elif kind == "string":
            everything += await world.redis.get(key) or b""
    assert token.encode() not in everything and token[4:].encode() not in everything
    assert hash_token(token).encode() in everything
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()


async def test_token_issue_and_revoke_are_audited_without_the_token(make_world: WorldFactory) -> None:
    world = await make_world()
    registry = Registry(world.redis, actor="cli:alice")
    token = await create_principal(registry, Principal("po-4", Role.PRIVACY_OFFICER))
    await registry.revoke_principal("po-4")
    from gateway.keyspace import AUDIT_STREAM

    entries = [f for _, f in await world.redis.xrange(AUDIT_STREAM) if f[b"object"] == b"principal:po-4"]
    assert [(e[b"action"], e[b"who"]) for e in entries] == [(b"token_issue", b"cli:alice"),
                                                            (b"token_revoke", b"cli:alice")]
    assert all(token.encode() not in b"".join(e.values()) for e in entries)


def test_a_route_must_admit_at_least_one_role() -> None:
    try:
        requires()
    except ValueError:
        return
    raise AssertionError("requires() with no roles must be refused")


def test_scope_helpers_match_whole_jurisdiction_segments_and_bound_places() -> None:
    assert in_jurisdiction("city/d1/s1", "city/d1") and in_jurisdiction("city/d1", "city/d1")
    assert not in_jurisdiction("city/d10", "city/d1") and not in_jurisdiction("city/d1", "")
    manager = Principal("sm", Role.SITE_MANAGER, frozenset({"place-a"}))
    assert manager.covers_place("place-a") and not manager.covers_place("place-b", JURISDICTION)
    dispatcher = Principal("d", Role.DISPATCHER, jurisdiction="city/d1")
    assert dispatcher.covers_place("place-b", JURISDICTION) and not dispatcher.covers_place("p", "city/d2/s1")
    assert secrets_equal("abc", b"abc") and not secrets_equal("abc", "abd")
