"""The identity card at a digital sentry (issue 18 part 1, item 1), through a real server on the real Redis: the
feed fills the keyed index, a sentry's scan finds the holder through it and runs the code's status, policy, log
and exception path; the number is validated, never echoed, and only a device with the capability may send it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.sealing import Sealer, event_binding
from crypto.subject import SubjectHasher
from gateway import keyspace
from gateway.principals import Principal, Role, hash_token
from gateway.privacy.audit import query_audit
from gateway.scan.state import SCANNER
from gateway.status.idcards import IdCardIndex
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway.conftest import SECRET, World, WorldFactory
from tests.gateway.sentry.conftest import add_sentry, feed, id_number, sentry_scan
from tests.gateway.test_keys_cli import run_cli

GREEN = {"colour": "green", "vaccinated": True}


async def test_a_fed_holder_is_found_by_id_card_and_admitted_on_the_live_status(world: World, number: str) -> None:
    await add_sentry(world)
    assert (await feed(world, {"holder": "res-1", "id_card": number, **GREEN}))["applied"] == 1
    status, body = await sentry_scan(world, id_card=number)
    assert status == 200
    assert (body["decision"], body["reason"], body["via"], body["colour"]) == ("admit", "ok", "id_card", None)
    assert number not in str(body)
    # Logged like a code's scan: the day's pseudonym of the holder the index named.
    (entry,) = await world.redis.xrange(keyspace.scan_log_key(datetime.now(UTC).strftime("%Y%m%d")))
    fields = entry[1]
    assert fields[b"decision"] == b"admit" and len(fields[b"pseudonym"]) == 32


async def test_a_code_answer_carries_no_via(world: World) -> None:
    await world.set_status("holder-1")
    _, body = await world.scan(world.code("holder-1"), who="dev-c")
    assert "via" not in body


async def test_a_red_holder_by_id_card_is_denied_and_raises_the_same_exception_event(world: World,
                                                                                      number: str) -> None:
    await add_sentry(world)
    await feed(world, {"holder": "res-red", "id_card": number, "colour": "red"})
    _, body = await sentry_scan(world, id_card=number)
    assert (body["decision"], body["reason"], body["colour"]) == ("deny", "status_red", "red")
    (event,) = await world.redis.xrange(keyspace.DISPATCH_INTAKE)
    fields = {k.decode(): v.decode() for k, v in event[1].items()}
    assert fields["event_class"] == "status_red" and fields["event_id"] == body["scan_id"]
    assert fields["subject"] == SubjectHasher(SECRET.reveal()).of("res-red")
    assert Sealer(SECRET.reveal()).open(fields["holder_sealed"], bound_to=event_binding(body["scan_id"])) == "res-red"
    assert number not in str(fields)


async def test_an_unknown_number_is_a_review_with_status_unknown(world: World) -> None:
    await add_sentry(world)
    _, body = await sentry_scan(world, id_card=id_number(7))
    assert (body["decision"], body["reason"], body["via"], body["degraded"]) == (
        "review", "status_unknown", "id_card", False)
    assert await world.redis.xlen(keyspace.DISPATCH_INTAKE) == 0


async def test_the_15_digit_old_form_finds_the_holder_fed_under_the_18_digit_form(world: World) -> None:
    await add_sentry(world)
    new_form = id_number(123, birth="19650412")
    old_form = new_form[:6] + new_form[8:17]  # the first-generation number: 2-digit year, no check character
    assert len(old_form) == 15
    await feed(world, {"holder": "res-old", "id_card": new_form, **GREEN})
    _, body = await sentry_scan(world, id_card=old_form)
    assert (body["decision"], body["via"]) == ("admit", "id_card")


async def test_a_lower_case_check_character_is_the_same_number(world: World) -> None:
    await add_sentry(world)
    upper = next(n for n in (id_number(i) for i in range(200)) if n.endswith("X"))
    await feed(world, {"holder": "res-x", "id_card": upper, **GREEN})
    _, body = await sentry_scan(world, id_card=upper[:17] + "x")
    assert (body["decision"], body["via"]) == ("admit", "id_card")


@pytest.mark.parametrize("bad", [
    "110105194912310020",  # wrong check character
    "11010519491231002",  # 17 characters
    "110105194902300021",  # 30 February
    "1101051949123100\uff12X",  # a full-width digit two
    "",
])
async def test_an_invalid_number_is_400_invalid_id_card_and_never_echoed(world: World, bad: str) -> None:
    await add_sentry(world)
    status, body = await sentry_scan(world, id_card=bad)
    assert (status, body["error"]) == (400, "invalid_id_card")
    assert not bad or bad not in str(body)


async def test_a_number_that_is_not_a_string_is_400_invalid_id_card(world: World) -> None:
    await add_sentry(world)
    status, body = await sentry_scan(world, id_card=110105194912310021)
    assert (status, body["error"]) == (400, "invalid_id_card")


async def test_code_and_id_card_together_or_neither_are_invalid_requests(world: World, number: str) -> None:
    await add_sentry(world)
    assert (await sentry_scan(world, id_card=number, code="PGH:X"))[1]["error"] == "invalid_request"
    assert (await sentry_scan(world, temperature_c=36.5))[1]["error"] == "invalid_request"


async def test_a_device_without_the_capability_and_an_app_get_403_id_card_not_allowed(world: World,
                                                                                      number: str) -> None:
    for who, extra in (("dev-c", {}), ("app", {"place_code": world.place_codes["place-c"]})):
        status, body = await sentry_scan(world, who=who, id_card=number, **extra)
        assert (status, body["error"]) == (403, "id_card_not_allowed"), who
        assert number not in str(body)
    # Refused before the number is looked at: an invalid one gets the same 403.
    status, body = await sentry_scan(world, who="dev-c", id_card="123")
    assert (status, body["error"]) == (403, "id_card_not_allowed")


async def test_devices_add_id_card_grants_the_capability_and_the_grant_is_audited(
    world: World, number: str, tmp_path: Path, redis_url: str
) -> None:
    cli = {"redis_url": redis_url, "data_dir": tmp_path}
    sentry = await run_cli("devices", "add", "sentry-z", "--place", "place-c", "--id-card", **cli)
    plain = await run_cli("devices", "add", "plain-z", "--place", "place-c", **cli)
    assert sentry.returncode == 0 and plain.returncode == 0, sentry.stderr + plain.stderr
    registry = Registry(world.redis)
    granted = await registry.get_principal(hash_token(sentry.stdout.strip()))
    refused = await registry.get_principal(hash_token(plain.stdout.strip()))
    assert granted is not None and granted.id_card
    assert refused is not None and not refused.id_card
    now = datetime.now(UTC)
    page = await query_audit(world.redis, since=now - timedelta(minutes=5), until=now + timedelta(minutes=5),
                             limit=50, action="token_issue")
    capability = {e.fields["object"]: e.fields.get("capability") for e in page.entries}
    assert capability["principal:sentry-z"] == "id_card" and capability["principal:plain-z"] is None
    listed = (await run_cli("principals", "list", **cli)).stdout.splitlines()
    assert "sentry-z\tdevice\tplace-c\tactive\tid_card" in listed and "plain-z\tdevice\tplace-c\tactive" in listed
    world.tokens["sentry-z"], world.tokens["plain-z"] = sentry.stdout.strip(), plain.stdout.strip()
    assert (await sentry_scan(world, who="sentry-z", id_card=number))[0] == 200
    assert (await sentry_scan(world, who="plain-z", id_card=number))[1]["error"] == "id_card_not_allowed"


async def test_a_feed_record_with_an_invalid_id_card_is_rejected_alone(world: World, number: str) -> None:
    result = await feed(world, {"holder": "res-1", "id_card": "110105194912310020", **GREEN},
                        {"holder": "res-2", "id_card": number, **GREEN}, {"holder": "res-3", "id_card": 7, **GREEN})
    assert [r.get("error") for r in result["results"]] == ["invalid_id_card", None, "invalid_id_card"]
    assert "110105194912310020" not in str(result)


async def test_the_index_holds_only_the_keyed_hash_and_expires_with_the_status(world: World, number: str) -> None:
    await feed(world, {"holder": "res-1", "id_card": number, **GREEN})
    digest = IdCardIndex(SECRET.reveal(), world.settings.status_ttl_s).digest(number)
    key = keyspace.id_card_key(digest)
    assert keyspace.data_class_of(key) is not None and keyspace.data_class_of(key).name == "id_card_index"
    ttl = await world.redis.ttl(key)
    assert 0 < ttl <= world.settings.status_ttl_s
    value = await world.redis.get(key)
    assert value is not None and b"res-1" not in value and number.encode() not in value
    # A value copied under another number's key does not open there: that number stays unknown.
    other = id_number(43)
    await world.redis.set(keyspace.id_card_key(IdCardIndex(SECRET.reveal(), 60).digest(other)), value)
    await add_sentry(world)
    _, body = await sentry_scan(world, id_card=other)
    assert body["reason"] == "status_unknown"


async def test_a_batch_mixes_codes_and_id_cards_and_refuses_a_bad_number_in_its_place(world: World,
                                                                                       number: str) -> None:
    await add_sentry(world)
    await world.set_status("holder-1")
    await feed(world, {"holder": "res-1", "id_card": number, **GREEN})
    body = {"codes": [world.code("holder-1"), {"id_card": number}, {"id_card": "123"}, {"id_card": id_number(9)}]}
    resp = await world.client.post("/v1/scan/batch", json=body, headers=world.auth("sentry-c"))
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert [r.get("decision") or r.get("error") for r in results] == ["admit", "admit", "invalid_id_card", "review"]
    assert "via" not in results[0] and results[1]["via"] == "id_card"
    # A device without the capability: the whole batch is refused.
    resp = await world.client.post("/v1/scan/batch", json=body, headers=world.auth("dev-c"))
    assert (resp.status, (await resp.json())["error"]) == (403, "id_card_not_allowed")


@pytest.mark.parametrize(("place", "decision"), [("place-c", "review"), ("place-b", "review"), ("place-a", "deny")])
async def test_in_degraded_mode_an_id_card_is_never_admitted(make_world: WorldFactory, number: str, place: str,
                                                             decision: str) -> None:
    # The sentry and its place are read with the store answering (cached for the test); then only the scan path's
    # deadline passes at once (redis_timeout_ms=0 for the whole world raced the place read too: see test_paper_scan).
    world = await make_world(principal_cache_s=3600)
    # place-c: class C, whose on_degraded admits a green code; place-a: class A, whose on_degraded denies.
    await add_sentry(world, place=place)
    assert (await sentry_scan(world, id_card=number))[0] == 200
    world.client.app[SCANNER].redis_timeout_s = 0.0
    status, body = await sentry_scan(world, id_card=number)
    assert status == 200
    assert (body["decision"], body["reason"], body["degraded"], body["via"]) == (
        decision, "status_unavailable", True, "id_card")
    metrics = await (await world.client.get("/metrics")).text()
    assert 'placegate_redis_errors_total{op="scan_lookup"}' in metrics


async def test_status_load_fills_the_index(world: World, number: str, tmp_path: Path, redis_url: str) -> None:
    now = int(datetime.now(UTC).timestamp())
    lines = [f'{{"holder": "res-{i}", "colour": "green", "updated_at": {now}}}' for i in range(5)]
    lines.append(f'{{"holder": "res-l", "colour": "red", "updated_at": {now}, "id_card": "{number}"}}')
    lines.append(f'{{"holder": "res-b", "colour": "red", "updated_at": {now}, "id_card": "110105194912310020"}}')
    feed_file = tmp_path / "feed.jsonl"
    feed_file.write_text("\n".join(lines) + "\n")
    done = await run_cli("status", "load", str(feed_file), "--quiet", redis_url=redis_url,
                         data_dir=world.settings.data_dir,
                         env={"PLACEGATE_STATUS_BUCKETS": str(world.settings.status_buckets)})
    assert done.returncode == 1  # one line rejected
    assert "invalid_id_card" in done.stderr and "110105194912310020" not in done.stderr + done.stdout
    await add_sentry(world)
    _, body = await sentry_scan(world, id_card=number)
    assert (body["decision"], body["reason"]) == ("deny", "status_red")


async def test_the_record_of_processing_names_the_index_and_its_retention(world: World) -> None:
    world.tokens["po"] = await create_principal(Registry(world.redis),
                                                Principal("po-1", Role.PRIVACY_OFFICER, jurisdiction="city"))
    ropa = await (await world.client.get("/v1/privacy/ropa", headers=world.auth("po"))).json()
    (index,) = [a for a in ropa["activities"] if a["name"].startswith("identity-card index")]
    assert index["storage"] == "Redis strings pg:idc:*"
    assert index["retention"] == f"{world.settings.status_ttl_s} s after the last feed record naming the number"
    assert "feeder" in index["recipients"]
    (cases,) = [a for a in ropa["activities"] if a["name"] == "exception cases (dispatch)"]
    assert any("temperature reading" in c for c in cases["categories"])
