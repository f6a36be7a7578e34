"""A digital sentry while its store is killed (issue 18, docs/sentry.md "Degraded mode"), on a private server this
test owns: identity cards and paper codes are never admitted, a fever is still a fever, every answer is 200 and
degraded, and once the store is back the outage's log records and the fever's exception event are written (the
reading sealed in the event, the number nowhere)."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

import pytest

from crypto.paper import issue_paper_code
from gateway import keyspace
from gateway.embedded import EmbeddedServer
from gateway.scan.scanlog import day_of
from tests.gateway.conftest import PrivateServerFactory, WorldFactory
from tests.gateway.sentry.conftest import add_sentry, feed, sentry_scan


@pytest.fixture
def server(make_private_server: PrivateServerFactory) -> EmbeddedServer:
    """A private server with AOF fsynced on every write, so that a SIGKILL loses nothing this test wrote."""
    return make_private_server(persistent=True, extra_args=("--appendfsync", "always"))


@pytest.fixture
def redis_url(server: EmbeddedServer) -> str:
    return server.url


async def test_with_the_store_killed_cards_and_paper_are_never_admitted_and_a_fever_is_still_one(
    make_world: WorldFactory, server: EmbeddedServer, number: str
) -> None:
    world = await make_world(store_probe_s=0.05, principal_cache_s=0.1)
    await add_sentry(world)  # place-c: class C admits a green native code in degraded mode
    await feed(world, {"holder": "res-1", "id_card": number, "colour": "green"})
    await world.set_status("holder-1")
    assert (await sentry_scan(world, id_card=number))[1]["decision"] == "admit"  # the sentry seen before

    server.stop(kill=True)
    await asyncio.sleep(0.3)
    sheet = issue_paper_code(world.health_key, holder_ref="holder-1", now=datetime.now(UTC), nonce=os.urandom(12))
    answers = [await sentry_scan(world, id_card=number), await sentry_scan(world, code=sheet),
               await sentry_scan(world, id_card=number, temperature_c=38.9)]
    assert [(s, b["decision"], b["reason"], b["degraded"]) for s, b in answers] == [
        (200, "review", "status_unavailable", True), (200, "review", "status_unavailable", True),
        (200, "deny", "fever", True)]
    # A native code at the same gate is still admitted on its signed colour: only what carries none is held back.
    assert (await world.scan(world.code("holder-1"), who="sentry-c"))[1]["decision"] == "admit"

    server.start()
    for _ in range(200):
        _, body = await world.scan(world.code("holder-1"), who="sentry-c")
        if body["degraded"] is False:
            break
        await asyncio.sleep(0.05)
    for _ in range(100):
        logged = {e[1][b"scan_id"].decode() for e in await world.redis.xrange(keyspace.scan_log_key(
            day_of(datetime.now(UTC))))}
        if {b["scan_id"] for _, b in answers} <= logged:
            break
        await asyncio.sleep(0.05)
    assert {b["scan_id"] for _, b in answers} <= logged
    events = {e[1][b"event_id"].decode(): e[1] for e in await world.redis.xrange(keyspace.DISPATCH_INTAKE)}
    fever = events[answers[2][1]["scan_id"]]
    assert fever[b"event_class"] == b"fever" and fever[b"reading_sealed"].startswith(b"s2.")
    assert not [v for e in events.values() for v in e.values() if number.encode() in v]
