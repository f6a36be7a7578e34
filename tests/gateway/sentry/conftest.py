"""A digital sentry in the registered world: a device allowed to present identity cards, and valid numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.principals import Principal, Role
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from policy.masking import id_check_char
from tests.gateway.conftest import World


def id_number(serial: int, birth: str = "19491231", region: str = "110105") -> str:
    """A valid 18-character number (GB 11643 check character) for a test resident."""
    first17 = f"{region}{birth}{serial % 1000:03d}"
    return first17 + id_check_char(first17)


async def add_sentry(world: World, name: str = "sentry-c", place: str = "place-c") -> str:
    """A device at ``place`` registered with the identity-card capability; its token is ``world.tokens[name]``."""
    world.tokens[name] = await create_principal(
        Registry(world.redis), Principal(name, Role.DEVICE, frozenset({place}), id_card=True))
    return name


async def feed(world: World, *records: dict[str, Any]) -> dict[str, Any]:
    """PUT /v1/status with the records (``updated_at`` now unless given)."""
    now = int(datetime.now(UTC).timestamp())
    body = {"records": [{"updated_at": now, **r} for r in records]}
    resp = await world.client.put("/v1/status", json=body, headers=world.auth("feeder"))
    assert resp.status == 200, await resp.text()
    result: dict[str, Any] = await resp.json()
    return result


async def sentry_scan(world: World, who: str = "sentry-c", **body: Any) -> tuple[int, dict[str, Any]]:
    resp = await world.client.post("/v1/scan", json=body, headers=world.auth(who))
    return resp.status, await resp.json()


@pytest.fixture
def number() -> str:
    return id_number(42)
