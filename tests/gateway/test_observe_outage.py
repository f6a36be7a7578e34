"""``placegate_http_requests_total`` and ``placegate_store_errors_total`` while the store is down: a world on a
private server that the test kills (issue 13, point 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway import redisio
from gateway.dispatch.store import case_id_for_event
from gateway.embedded import EmbeddedServer
from gateway.redisio import connect_redis
from tests.gateway.conftest import PrivateServerFactory, World
from tests.gateway.test_observe import _documented_ops, _metrics, _requests, _store_errors


@pytest.fixture
def private_server(make_private_server: PrivateServerFactory) -> EmbeddedServer:
    """A server of this test's own, so that it may be killed (never the session's)."""
    return make_private_server()


@pytest.fixture
async def redis(private_server: EmbeddedServer) -> AsyncIterator[Redis]:
    """Overrides the session's client for this module: the world lives on the private server."""
    client = connect_redis(private_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_with_the_server_killed_store_errors_and_503s_are_counted(
    world: World, private_server: EmbeddedServer
) -> None:
    await world.set_status("holder-1")
    assert (await world.scan(world.code("holder-1")))[0] == 200
    # The dispatcher is looked up while the store answers: after the kill its request reaches the case store.
    assert (await world.client.get("/v1/cases", headers=world.auth("dispatcher"))).status == 200
    before = await _metrics(world.client)
    assert _store_errors(before) == {}
    private_server.stop(kill=True)

    case = await world.client.get(f"/v1/cases/{case_id_for_event('ev-1')}", headers=world.auth("dispatcher"))
    assert (case.status, (await case.json())["error"]) == (503, "store_unavailable")
    assert (await world.client.get("/readyz")).status == 503
    scan_status, _ = await world.scan(world.code("holder-1"))  # whatever the scan path answers, it is counted
    text = await _metrics(world.client)

    requests = _requests(text)
    assert requests[("/v1/cases/{case_id}", "503")] == 1
    assert requests[("/readyz", "503")] == 1
    assert requests[("/v1/scan", str(scan_status))] == 1 + (scan_status == 200)
    errors = _store_errors(text)
    assert errors.get("dispatch_store", 0) >= 1  # the case read
    assert errors.get(redisio.BATCHER_OP, 0) >= 1  # the readiness ping, through the scan pipeline
    assert set(errors) <= _documented_ops()
