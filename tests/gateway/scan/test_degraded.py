"""Degraded mode: when Redis cannot answer in time the signed colour and the venue class decide."""

from __future__ import annotations

import pytest

from crypto.native import Colour
from tests.gateway.conftest import WorldFactory


@pytest.mark.single_node(
    "a 0 ms store deadline: redis-py's one-server client answers the token lookup without yielding to the loop, "
    "the cluster client yields first, so there the token lookup itself times out (503) before any scan"
)
@pytest.mark.parametrize(
    ("device", "colour", "decision", "reason"),
    [
        ("dev-c", Colour.GREEN, "admit", "ok"),
        ("dev-b", Colour.GREEN, "review", "status_unavailable"),
        ("dev-a", Colour.GREEN, "deny", "status_unavailable"),
        ("dev-c", Colour.RED, "deny", "status_red"),
        ("dev-c", Colour.YELLOW, "deny", "status_yellow"),
    ],
)
async def test_redis_timeout_answers_degraded_from_signed_colour(
    make_world: WorldFactory, device: str, colour: Colour, decision: str, reason: str
) -> None:
    world = await make_world(redis_timeout_ms=0)
    status, body = await world.scan(world.code(colour=colour), who=device)
    assert status == 200
    assert (body["decision"], body["reason"], body["degraded"]) == (decision, reason, True)
    metrics = await (await world.client.get("/metrics")).text()
    assert 'placegate_redis_errors_total{op="scan_lookup"}' in metrics
