"""POST /v1/scan/batch through a real aiohttp server on the real Redis."""

from __future__ import annotations

from typing import Any

from crypto.native import Colour
from tests.gateway.conftest import World, WorldFactory


async def _batch(world: World, body: dict[str, Any], *, who: str = "dev-a") -> tuple[int, dict[str, Any]]:
    resp = await world.client.post("/v1/scan/batch", json=body, headers=world.auth(who))
    return resp.status, await resp.json()


async def test_each_code_gets_its_own_answer_in_order(world: World) -> None:
    await world.set_status("holder-1")
    await world.set_status("holder-2", Colour.RED)
    status, body = await _batch(world, {"codes": [world.code("holder-1"), world.code("holder-2")]})
    assert status == 200
    answers = [(r["decision"], r["reason"]) for r in body["results"]]
    assert answers == [("admit", "ok"), ("deny", "status_red")]
    assert set(body["results"][0]) == {"decision", "reason", "colour", "scan_id", "checked_at", "degraded",
                                       "rule_id", "rules_version"}


async def test_batch_answers_match_single_scans(world: World) -> None:
    await world.set_status("holder-1")
    code = world.code("holder-1")
    _, single = await world.scan(code, who="dev-b")
    _, body = await _batch(world, {"codes": [code]}, who="dev-b")
    assert (body["results"][0]["decision"], body["results"][0]["reason"]) == ("deny", "replayed")
    assert single["decision"] == "admit"


async def test_same_code_twice_in_one_batch_is_replayed_the_second_time(world: World) -> None:
    await world.set_status("holder-1")
    code = world.code("holder-1")
    _, body = await _batch(world, {"codes": [code, code]})
    assert [r["reason"] for r in body["results"]] == ["ok", "replayed"]


async def test_malformed_code_answers_that_item_only(world: World) -> None:
    await world.set_status("holder-1")
    status, body = await _batch(world, {"codes": ["not a code", world.code("holder-1")]})
    assert status == 200
    assert body["results"][0] == {"error": "malformed_code"}
    assert body["results"][1]["decision"] == "admit"


async def test_every_scan_of_a_batch_is_logged(world: World) -> None:
    await world.set_status("holder-1")
    codes = [world.code("holder-1") for _ in range(5)]
    _, body = await _batch(world, {"codes": codes})
    keys = [k async for k in world.redis.scan_iter(match="pg:log:*")]
    assert len(keys) == 1
    entries = await world.redis.xrange(keys[0])
    assert sorted(e[1][b"scan_id"].decode() for e in entries) == sorted(r["scan_id"] for r in body["results"])


async def test_too_many_codes_is_invalid_request(world: World) -> None:
    assert world.settings.max_batch_codes == 64  # the default (PLACEGATE_MAX_BATCH_CODES)
    status, body = await _batch(world, {"codes": ["x"] * (world.settings.max_batch_codes + 1)})
    assert (status, body["error"]) == (400, "invalid_request")


async def test_largest_batch_is_answered(world: World) -> None:
    await world.set_status("holder-1")
    largest = world.settings.max_batch_codes
    status, body = await _batch(world, {"codes": [world.code("holder-1") for _ in range(largest)]})
    assert status == 200
    assert [r["decision"] for r in body["results"]] == ["admit"] * largest


async def test_the_batch_limit_is_the_setting(make_world: WorldFactory) -> None:
    world = await make_world(max_batch_codes=3)
    await world.set_status("holder-1")
    status, body = await _batch(world, {"codes": [world.code("holder-1") for _ in range(4)]})
    assert (status, body["error"]) == (400, "invalid_request")
    status, body = await _batch(world, {"codes": [world.code("holder-1") for _ in range(3)]})
    assert (status, [r["decision"] for r in body["results"]]) == (200, ["admit"] * 3)


async def test_empty_or_non_string_codes_are_invalid_request(world: World) -> None:
    for codes in ([], [1], "x", None):
        status, body = await _batch(world, {"codes": codes})
        assert (status, body["error"]) == (400, "invalid_request")


async def test_batch_needs_a_token(world: World) -> None:
    resp = await world.client.post("/v1/scan/batch", json={"codes": [world.code()]})
    assert resp.status == 401


async def test_feeder_may_not_scan(world: World) -> None:
    status, body = await _batch(world, {"codes": [world.code()]}, who="feeder")
    assert (status, body["error"]) == (403, "forbidden")


async def test_device_cannot_scan_for_another_place(world: World) -> None:
    status, body = await _batch(world, {"codes": [world.code()], "place": "place-b"})
    assert (status, body["error"]) == (403, "forbidden")


async def test_app_self_scan_uses_the_place_code(world: World) -> None:
    await world.set_status("holder-1")
    status, body = await _batch(
        world, {"codes": [world.code("holder-1")], "place_code": world.place_codes["place-a"]}, who="app")
    assert status == 200 and body["results"][0]["decision"] == "admit"


async def test_app_self_scan_without_place_code_is_invalid_request(world: World) -> None:
    status, body = await _batch(world, {"codes": [world.code()]}, who="app")
    assert (status, body["error"]) == (400, "invalid_request")


async def test_app_self_scan_with_forged_place_code_denies_every_item(world: World) -> None:
    code = world.place_codes["place-a"]
    forged = code[:-4] + ("AAAA" if not code.endswith("AAAA") else "BBBB")
    body_in = {"codes": [world.code(), world.code()], "place_code": forged}
    status, body = await _batch(world, body_in, who="app")
    if status == 200:
        assert [r["decision"] for r in body["results"]] == ["deny", "deny"]
        assert all(r["rule_id"] == "place" for r in body["results"])
    else:  # the tampered tail no longer decodes at all
        assert (status, body["error"]) == (400, "malformed_code")
