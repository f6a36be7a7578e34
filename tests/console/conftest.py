"""A console world: the dispatch test world (its routing table, places and principals of every dispatch role) plus
a privacy officer and an administrator, and a helper that signs a person in through the console's own form."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.principals import Principal, Role
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway import conftest as gw
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world
settings, make_world = gw.settings, gw.make_world

EXTRA = [Principal("po-1", Role.PRIVACY_OFFICER), Principal("po-2", Role.PRIVACY_OFFICER),
         Principal("admin-1", Role.ADMIN), Principal("disp-city", Role.DISPATCHER, jurisdiction="city")]  # fmt: skip
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class ConsoleWorld:
    dw: DispatchWorld

    @property
    def client(self) -> TestClient:  # type: ignore[type-arg]
        return self.dw.world.client

    def token(self, who: str) -> str:
        return self.dw.world.tokens[who]


ConsoleWorldFactory = Callable[..., Awaitable[ConsoleWorld]]


@pytest.fixture
def make_cw(make_dispatch_world: DispatchWorldFactory) -> ConsoleWorldFactory:
    async def factory(**settings: Any) -> ConsoleWorld:
        dw: DispatchWorld = await make_dispatch_world(clock=None, settings=settings)
        registry = Registry(dw.world.redis)
        dw.world.tokens["disp-1"] = dw.world.tokens["dispatcher"]  # the world's dispatcher of city/d1
        for principal in EXTRA:
            dw.world.tokens[principal.principal_id] = await create_principal(registry, principal)
        return ConsoleWorld(dw)

    return factory


@pytest.fixture
async def cw(make_cw: ConsoleWorldFactory) -> ConsoleWorld:
    return await make_cw()


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found is not None, "the page has no form token"
    return found[1]


async def sign_in(client: TestClient, token: str) -> str:  # type: ignore[type-arg]
    """Sign in through the form in a fresh browser (an empty cookie jar); returns the session's form token read off
    the landing page."""
    client.session.cookie_jar.clear()
    form = await client.get("/console/signin")
    assert form.status == 200
    resp = await client.post("/console/signin", data={"csrf": csrf_of(await form.text()), "token": token},
                             allow_redirects=False)
    assert resp.status == 303, await resp.text()
    landing = await client.get(resp.headers["Location"])
    assert landing.status == 200, await landing.text()
    return csrf_of(await landing.text())
