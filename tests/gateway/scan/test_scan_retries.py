"""A scanner's retry after a lost answer is no replay (issue 15): the same code at the same device within the
retry window is decided like the first presentation and sends no intake event; an ``Idempotency-Key`` gets the
stored answer for 60 s without a second decision, log record or event. On the real Redis, over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway import keyspace
from gateway.appstate import CLOCK
from gateway.keyspace import DISPATCH_INTAKE
from gateway.scan.scanlog import day_of
from policy.status import Colour
from tests.gateway.conftest import World, WorldFactory

RETRY_S = 5


async def _log(world: World) -> list[dict[bytes, bytes]]:
    entries = await world.redis.xrange(keyspace.scan_log_key(day_of(datetime.now(UTC))))
    return [fields for _, fields in entries]


def _same_answer(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("decision", "reason", "colour", "degraded", "rule_id", "rules_version")
    return all(a[k] == b[k] for k in keys)


async def test_a_retry_at_the_same_device_answers_like_the_first_and_sends_no_event(make_world: WorldFactory) -> None:
    world = await make_world(scan_retry_window_s=RETRY_S)
    await world.set_status("holder-g")
    await world.set_status("holder-r", Colour.RED)
    green, red = world.code("holder-g"), world.code("holder-r")
    first_g, retry_g = (await world.scan(green))[1], (await world.scan(green))[1]
    assert first_g["decision"] == "admit" and _same_answer(first_g, retry_g)
    assert retry_g["scan_id"] != first_g["scan_id"]  # its own answer, logged as given
    first_r, retry_r = (await world.scan(red))[1], (await world.scan(red))[1]
    assert first_r["reason"] == "status_red" and _same_answer(first_r, retry_r)
    assert await world.redis.xlen(DISPATCH_INTAKE) == 1  # the red holder's first presentation only
    # The log holds every answer given: four records, each retry with its first's decision.
    log = await _log(world)
    assert [e[b"reason"] for e in log] == [b"ok", b"ok", b"status_red", b"status_red"]
    # The same code at another device (another place) is still a shared code, and an exception.
    assert (await world.scan(green, who="dev-b"))[1]["reason"] == "code_shared"
    assert await world.redis.xlen(DISPATCH_INTAKE) == 2


async def test_past_the_window_or_at_another_device_of_the_place_it_is_a_replay(make_world: WorldFactory) -> None:
    world = await make_world(scan_retry_window_s=RETRY_S)
    await world.set_status("holder-g")
    code = world.code("holder-g")
    t0 = datetime.now(UTC)
    world.client.app[CLOCK].now = lambda: t0
    assert (await world.scan(code))[1]["decision"] == "admit"
    world.client.app[CLOCK].now = lambda: t0 + timedelta(seconds=RETRY_S, milliseconds=1)
    assert (await world.scan(code))[1]["reason"] == "replayed"
    assert await world.redis.xlen(DISPATCH_INTAKE) == 1
    # A window of 0 makes every second presentation a replay (the test worlds' default).
    plain = await make_world()
    await plain.set_status("holder-h")
    other = plain.code("holder-h")
    await plain.scan(other)
    assert (await plain.scan(other))[1]["reason"] == "replayed"


async def _post(world: World, path: str, doc: dict[str, Any], key: str | None, who: str = "dev-a") -> Any:
    headers = world.auth(who) | ({"Idempotency-Key": key} if key is not None else {})
    return await world.client.post(path, json=doc, headers=headers)


async def test_the_same_idempotency_key_gets_the_stored_answer_and_nothing_is_decided_again(world: World) -> None:
    await world.set_status("holder-r", Colour.RED)
    code = world.code("holder-r")
    first = await _post(world, "/v1/scan", {"code": code}, "k-1")
    again = await _post(world, "/v1/scan", {"code": code}, "k-1")
    assert first.status == again.status == 200
    assert await again.read() == await first.read()  # the same scan id and time: the stored answer
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert (await first.json())["reason"] == "status_red"
    assert len(await _log(world)) == 1  # no second log record
    assert await world.redis.xlen(DISPATCH_INTAKE) == 1  # no second event, so no second case
    (name,) = [k async for k in world.redis.scan_iter(match="pg:idem:*")]
    assert keyspace.data_class_of(name.decode()) is not None
    assert 0 < await world.redis.ttl(name) <= keyspace.IDEMPOTENCY_TTL_S
    stored = await world.redis.get(name)
    assert b"holder-r" not in stored  # decisions only: nothing personal
    # Another device with the same key is another request; a new key is a new presentation (window 0: replay).
    other = await _post(world, "/v1/scan", {"code": code}, "k-1", who="dev-b")
    assert (await other.json())["reason"] == "code_shared"
    fresh = await _post(world, "/v1/scan", {"code": code}, "k-2")
    assert (await fresh.json())["reason"] == "replayed"
    assert len(await _log(world)) == 3


async def test_a_batch_is_retried_as_a_whole_and_a_bad_key_is_refused(world: World) -> None:
    await world.set_status("holder-g")
    codes = [world.code("holder-g"), world.code("holder-g")]
    first = await _post(world, "/v1/scan/batch", {"codes": codes}, "batch-1")
    again = await _post(world, "/v1/scan/batch", {"codes": codes}, "batch-1")
    assert await again.read() == await first.read()
    assert [r["decision"] for r in (await first.json())["results"]] == ["admit", "admit"]
    assert len(await _log(world)) == 2
    for bad in ("", "x" * 129, "naïve"):
        resp = await world.client.post(
            "/v1/scan",
            json={"code": codes[0]},
            headers=world.auth("dev-a") | {"Idempotency-Key": bad.encode().decode("latin-1")},
        )
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
