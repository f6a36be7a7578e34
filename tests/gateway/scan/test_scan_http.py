"""POST /v1/scan through a real aiohttp server on the real Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from crypto.base45 import b45decode, b45encode
from crypto.keys import Alg, SigningKey
from crypto.native import HEALTH_PREFIX, Colour, issue_place_code
from crypto.trust import TrustedKey, Usage
from gateway.scan.state import PLACE_RESOLVER
from gateway.trust.refresh import refresh_trust
from gateway.trust.registry import Registry
from policy.status import TestResult
from tests.gateway.conftest import World, WorldFactory


async def test_green_holder_with_recent_test_is_admitted(world: World) -> None:
    await world.set_status("holder-1")
    status, body = await world.scan(world.code("holder-1"))
    assert status == 200
    assert body["decision"] == "admit" and body["reason"] == "ok" and body["colour"] == "green"
    assert body["degraded"] is False and body["rules_version"]
    assert set(body) == {"decision", "reason", "colour", "scan_id", "checked_at", "degraded", "rule_id",
                         "rules_version"}


async def test_same_code_again_at_same_place_is_replayed(world: World) -> None:
    await world.set_status("holder-1")
    code = world.code("holder-1")
    assert (await world.scan(code))[1]["decision"] == "admit"
    _, body = await world.scan(code)
    assert (body["decision"], body["reason"]) == ("deny", "replayed")


async def test_same_code_at_another_place_is_code_shared(world: World) -> None:
    await world.set_status("holder-1")
    code = world.code("holder-1")
    await world.scan(code, who="dev-c")
    _, body = await world.scan(code, who="dev-b")
    assert (body["decision"], body["reason"]) == ("deny", "code_shared")


@pytest.mark.parametrize(
    ("colour", "reason"), [(Colour.RED, "status_red"), (Colour.YELLOW, "status_yellow")]
)
async def test_red_and_yellow_holders_are_denied_and_raise_an_exception_event(
    world: World, colour: Colour, reason: str
) -> None:
    await world.set_status("holder-1", colour)
    _, body = await world.scan(world.code("holder-1"))
    assert (body["decision"], body["reason"]) == ("deny", reason)
    events = await world.redis.xrange("pg:dispatch:intake")
    assert len(events) == 1
    fields = events[0][1]
    assert fields[b"event_id"].decode() == body["scan_id"]
    assert fields[b"event_class"].decode() == reason
    assert fields[b"place"] == b"place-a"
    assert fields[b"holder_sealed"].startswith(b"s2.")


@pytest.mark.parametrize(
    ("venue_dev", "tested_h_ago", "result", "decision", "reason"),
    [
        ("dev-a", 47, TestResult.NEGATIVE, "admit", "ok"),
        ("dev-a", 49, TestResult.NEGATIVE, "deny", "test_too_old"),
        ("dev-b", 71, TestResult.NEGATIVE, "admit", "ok"),
        ("dev-b", 73, TestResult.NEGATIVE, "deny", "test_too_old"),
        ("dev-c", None, TestResult.NONE, "admit", "ok"),
        ("dev-a", None, TestResult.NONE, "deny", "test_missing"),
    ],
)
async def test_venue_class_rules_apply(
    world: World, venue_dev: str, tested_h_ago: float | None, result: TestResult, decision: str, reason: str
) -> None:
    await world.set_status("holder-1", tested_h_ago=tested_h_ago, result=result)
    _, body = await world.scan(world.code("holder-1"), who=venue_dev)
    assert (body["decision"], body["reason"]) == (decision, reason)


async def test_holder_without_status_gets_status_unknown(world: World) -> None:
    _, body = await world.scan(world.code("nobody-known"), who="dev-b")
    assert (body["decision"], body["reason"]) == ("review", "status_unknown")


def _tamper(code: str) -> str:
    raw = bytearray(b45decode(code[len(HEALTH_PREFIX):]))
    raw[40] ^= 0x01  # inside the holder reference: the base45 stays valid, the signature does not
    return HEALTH_PREFIX + b45encode(bytes(raw))


async def test_tampered_code_is_a_deny_with_bad_signature(world: World) -> None:
    code = world.code("holder-1abc")
    _, body = await world.scan(_tamper(code))
    assert (body["decision"], body["reason"]) in {("deny", "bad_signature"), ("deny", "malformed_code")}
    raw = bytearray(b45decode(code[len(HEALTH_PREFIX):]))
    raw[-1] ^= 0xFF  # the last signature byte
    _, body = await world.scan(HEALTH_PREFIX + b45encode(bytes(raw)))
    assert (body["decision"], body["reason"]) == ("deny", "bad_signature")
    assert len(await world.redis.xrange("pg:dispatch:intake")) >= 1


async def test_expired_and_not_yet_valid_codes_are_denied(world: World) -> None:
    old = world.code(now=datetime.now(UTC) - timedelta(minutes=10))
    future = world.code(now=datetime.now(UTC) + timedelta(minutes=10))
    assert (await world.scan(old))[1]["reason"] == "code_expired"
    assert (await world.scan(future))[1]["reason"] == "not_yet_valid"


async def test_unknown_kid_wrong_usage_and_revoked_keys_are_denied(world: World) -> None:
    stranger = SigningKey.generate(Alg.ED25519)
    assert (await world.scan(world.code(key=stranger)))[1]["reason"] == "unknown_key"
    # A place key must never validate a health code.
    assert (await world.scan(world.code(key=world.place_key)))[1]["reason"] == "wrong_key_usage"
    await _revoke(world, world.health_key.kid)
    assert (await world.scan(world.code()))[1]["reason"] == "key_revoked"


async def _revoke(world: World, kid: bytes) -> None:
    """Revoke a trusted key as `placegate keys revoke` does, and have the gateway reload its trust list."""
    registry = Registry(world.redis)
    _, trust = await registry.load_trust()
    entry = trust.get(kid)
    assert entry is not None
    await registry.put_trusted_key(entry.revoke())
    await refresh_trust(world.client.app, force=True)


async def test_key_outside_its_window_is_denied(world: World) -> None:
    key = SigningKey.generate(Alg.ED25519)
    now = datetime.now(UTC)
    await Registry(world.redis).put_trusted_key(TrustedKey.create(
        key.public_key(), usage=Usage.HEALTH, not_before=now - timedelta(days=10), not_after=now - timedelta(days=1)))
    await refresh_trust(world.client.app, force=True)
    assert (await world.scan(world.code(key=key)))[1]["reason"] == "key_out_of_window"


async def test_ed25519_codes_verify(world: World) -> None:
    key = SigningKey.generate(Alg.ED25519)
    now = datetime.now(UTC)
    await Registry(world.redis).put_trusted_key(TrustedKey.create(
        key.public_key(), usage=Usage.HEALTH, not_before=now - timedelta(days=1), not_after=now + timedelta(days=1)))
    await refresh_trust(world.client.app, force=True)
    await world.set_status("holder-1")
    assert (await world.scan(world.code(key=key)))[1]["decision"] == "admit"


async def test_self_scan_with_place_code(world: World) -> None:
    await world.set_status("holder-1")
    _, body = await world.scan(world.code(), who="app", place_code=world.place_codes["place-c"])
    assert body["decision"] == "admit"


async def test_self_scan_with_forged_place_code_is_denied(world: World) -> None:
    forged_key = SigningKey.generate(Alg.ES256)
    from crypto.native import issue_place_code

    now = datetime.now(UTC)
    forged = issue_place_code(forged_key, place_id="place-c", venue_class="C", jurisdiction="city/d1",
                              not_before=now - timedelta(hours=1), not_after=now + timedelta(hours=1))
    _, body = await world.scan(world.code(), who="app", place_code=forged)
    assert (body["decision"], body["reason"]) == ("deny", "place_unknown_key")


async def test_a_venue_code_is_verified_once_and_its_revocation_still_applies(world: World) -> None:
    """Every visitor presents the venue's one place code: its signature is checked once, the key every time."""
    await world.set_status("holder-1")
    place_codes = world.client.app[PLACE_RESOLVER].place_codes
    before = place_codes.signature_checks
    for _ in range(4):
        _, body = await world.scan(world.code(), who="app", place_code=world.place_codes["place-c"])
        assert body["decision"] == "admit"
    assert place_codes.signature_checks == before + 1
    await _revoke(world, world.place_key.kid)
    _, body = await world.scan(world.code(), who="app", place_code=world.place_codes["place-c"])
    assert (body["decision"], body["reason"]) == ("deny", "place_key_revoked")


async def test_each_fresh_code_of_one_holder_is_admitted(world: World) -> None:
    await world.set_status("holder-1")
    results = [(await world.scan(world.code("holder-1")))[1]["decision"] for _ in range(5)]
    assert results == ["admit"] * 5


async def test_every_scan_and_batch_answer_is_timed_in_metrics(world: World) -> None:
    await world.set_status("holder-1")
    for _ in range(3):
        await world.scan(world.code("holder-1"))
    resp = await world.client.post("/v1/scan/batch", json={"codes": [world.code("holder-1")] * 2},
                                   headers=world.auth("dev-a"))
    assert resp.status == 200
    # A refused place code is an answer too (a deny): timed and counted like the others.
    expired = issue_place_code(world.place_key, place_id="place-c", venue_class="C", jurisdiction="city/d1",
                               not_before=datetime.now(UTC) - timedelta(days=2),
                               not_after=datetime.now(UTC) - timedelta(days=1))
    _, body = await world.scan(world.code("holder-1"), who="app", place_code=expired)
    assert body["reason"] == "place_code_expired"
    resp = await world.client.post("/v1/scan/batch", headers=world.auth("app"),
                                   json={"codes": [world.code("holder-1")] * 2, "place_code": expired})
    assert [r["reason"] for r in (await resp.json())["results"]] == ["place_code_expired"] * 2
    metrics = await (await world.client.get("/metrics")).text()
    assert 'placegate_http_request_seconds_count{route="/v1/scan"} 4.0' in metrics
    assert 'placegate_http_request_seconds_count{route="/v1/scan/batch"} 2.0' in metrics
    assert 'placegate_scans_total{decision="deny",degraded="false",reason="place_code_expired"} 3.0' in metrics


async def test_the_background_refresh_picks_up_a_revocation_within_trust_refresh_s(make_world: WorldFactory) -> None:
    # 0.05 s, against the 2 s default: found within 1 s, the setting is what the refresh loop runs on.
    world = await make_world(trust_refresh_s=0.05)
    await world.set_status("holder-1")
    assert (await world.scan(world.code()))[1]["decision"] == "admit"
    registry = Registry(world.redis)
    _, trust = await registry.load_trust()
    entry = trust.get(world.health_key.kid)
    assert entry is not None
    await registry.put_trusted_key(entry.revoke())  # as `placegate keys revoke` does; no forced reload here
    reasons = []
    for _ in range(10):  # up to 1 s: 20 refresh periods
        await asyncio.sleep(0.1)
        reasons.append((await world.scan(world.code()))[1]["reason"])
        if reasons[-1] == "key_revoked":
            break
    assert reasons[-1] == "key_revoked"
