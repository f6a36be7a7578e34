"""HC1 (EU DCC) codes through POST /v1/scan and the batch endpoint, on the real Redis and a real server.

The scanner's clock is moved by the tests (``Scanner.clock``), so code validity and the DSC list's age are
judged at instants the test chooses.
"""

from __future__ import annotations

import copy
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crypto.base45 import b45encode
from crypto.cbor import encode_cbor
from gateway import keyspace
from gateway.appstate import CLOCK
from gateway.cli import main
from gateway.trust.dsc import DscRegistry
from gateway.trust.refresh import refresh_dsc
from tests.crypto.conftest import TEST_DCC, VACCINATION_DCC, Dsc, make_dsc, make_hc1, sign_cose, wrap_hc1
from tests.gateway.conftest import SECRET, World, WorldFactory

T0 = datetime.now(UTC).replace(microsecond=0)
OID_TEST = "1.3.6.1.4.1.1847.2021.1.1"
PERSONAL = (b"MUSTERFRAU", b"Erika", b"1964-08-12", b"5CWLU12RNOB9RXSEOP6FG8")


@pytest.fixture(scope="module")
def dsc() -> Dsc:
    return make_dsc(not_before=T0 - timedelta(days=100), not_after=T0 + timedelta(days=300))


def set_clock(world: World, at: datetime) -> None:
    world.client.app[CLOCK].now = lambda: at


async def trust(world: World, *dscs: Dsc, at: datetime = T0) -> None:
    """Import DSCs as `placegate trust import` does, stamped ``at``, and let the worker reload."""
    await DscRegistry(world.redis).import_certificates([d.der for d in dscs], now=at)
    assert await refresh_dsc(world.client.app)
    set_clock(world, T0)


def vaccination(ci: str = "URN:UVCI:01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8#W") -> dict[str, Any]:
    dcc = copy.deepcopy(VACCINATION_DCC)
    dcc["v"][0]["ci"] = ci
    return dcc


def naat(hours_ago: float, result: str = "260415000", ci: str = "URN:UVCI:01DE/T1#1") -> dict[str, Any]:
    dcc = copy.deepcopy(TEST_DCC)
    sampled = T0 - timedelta(hours=hours_ago)
    dcc["t"][0].update(sc=sampled.strftime("%Y-%m-%dT%H:%M:%SZ"), tr=result, ci=ci)
    return dcc


def hc1(signer: Dsc, dcc: dict[str, Any] | None = None, **options: Any) -> str:
    options.setdefault("iat", T0 - timedelta(days=1))
    options.setdefault("exp", T0 + timedelta(days=30))
    return make_hc1(signer, dcc if dcc is not None else vaccination(), **options)


async def scan(world: World, code: str, who: str = "dev-c") -> tuple[int, dict[str, Any]]:
    return await world.scan(code, who=who)


async def everything_in_redis(world: World) -> bytes:
    redis: Any = world.redis
    dump: list[bytes] = []
    async for key in redis.scan_iter(count=1000):
        dump.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            dump.append(await redis.get(key) or b"")
        elif kind == "hash":
            dump.extend(b"%s=%s" % kv for kv in (await redis.hgetall(key)).items())
        elif kind == "stream":
            for _, fields in await redis.xrange(key):
                dump.extend(b"%s=%s" % kv for kv in fields.items())
    return b"\n".join(dump)


async def stream(world: World, key: str) -> list[dict[bytes, bytes]]:
    redis: Any = world.redis
    return [fields for _, fields in await redis.xrange(key)]


async def intake_events(world: World) -> list[dict[bytes, bytes]]:
    return await stream(world, keyspace.DISPATCH_INTAKE)


# --- valid codes and the venue-class rules ---------------------------------------------------------------


async def test_valid_vaccination_certificate_is_admitted_at_an_office(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    status, body = await scan(world, hc1(dsc))
    assert status == 200
    assert (body["decision"], body["reason"], body["rule_id"]) == ("admit", "ok", "C.ok")
    assert body["degraded"] is False and body["colour"] is None
    assert set(body) == {"decision", "reason", "colour", "scan_id", "checked_at", "degraded", "rule_id",
                         "rules_version"}


async def test_vaccination_alone_does_not_satisfy_a_hospital(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    _, body = await scan(world, hc1(dsc), who="dev-a")
    assert (body["decision"], body["reason"]) == ("deny", "test_missing")


@pytest.mark.parametrize(
    ("hours_ago", "result", "who", "reason"),
    [
        (5, "260415000", "dev-a", "ok"),
        (60, "260415000", "dev-a", "test_too_old"),
        (60, "260415000", "dev-b", "ok"),
        (5, "260373001", "dev-a", "test_positive"),
        (5, "260373001", "dev-c", "test_positive"),
    ],
)
async def test_test_certificate_is_judged_by_the_venue_rules(
    world: World, dsc: Dsc, hours_ago: float, result: str, who: str, reason: str
) -> None:
    await trust(world, dsc)
    _, body = await scan(world, hc1(dsc, naat(hours_ago, result)), who=who)
    assert body["reason"] == reason
    assert body["decision"] == ("admit" if reason == "ok" else "deny")


# --- forgery, expiry, key usage, unknown kid -----------------------------------------------------------


async def test_forged_signature_is_denied_and_becomes_a_forgery_case(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    forger = make_dsc()
    claims = encode_cbor({1: "DE", 4: int((T0 + timedelta(days=9)).timestamp()),
                          6: int((T0 - timedelta(days=1)).timestamp()), -260: {1: vaccination()}})
    forged = wrap_hc1(sign_cose(forger, claims, protected={1: -7, 4: dsc.kid}))
    _, body = await scan(world, forged)
    assert (body["decision"], body["reason"]) == ("deny", "bad_signature")
    (event,) = await intake_events(world)
    assert event[b"event_class"] == b"forged_code" and event[b"reason"] == b"bad_signature"
    assert event[b"holder_sealed"] == b""  # nothing from an unverified code is trusted as a holder


async def test_kid_relabelled_between_header_buckets_is_a_forgery_case(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    code = hc1(dsc, unprotected={4: b"\x00" * 8})
    _, body = await scan(world, code)
    assert (body["decision"], body["reason"]) == ("deny", "cose_header_conflict")
    assert [e[b"event_class"] for e in await intake_events(world)] == [b"forged_code"]


async def test_expired_certificate_is_denied(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    _, body = await scan(world, hc1(dsc, exp=T0 - timedelta(hours=1)))
    assert (body["decision"], body["reason"]) == ("deny", "code_expired")


async def test_clock_past_exp_turns_a_valid_certificate_expired(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    code = hc1(dsc, exp=T0 + timedelta(hours=1))
    set_clock(world, T0 + timedelta(hours=2))
    _, body = await scan(world, code)
    assert body["reason"] == "code_expired"


async def test_signer_restricted_to_tests_cannot_sign_a_vaccination(world: World) -> None:
    test_only = make_dsc(eku=[OID_TEST], not_before=T0 - timedelta(days=1), not_after=T0 + timedelta(days=9))
    await trust(world, test_only)
    _, body = await scan(world, hc1(test_only))
    assert (body["decision"], body["reason"]) == ("deny", "wrong_key_usage")
    _, body = await scan(world, hc1(test_only, naat(5)))
    assert body["reason"] == "ok"


async def test_signer_not_in_the_trust_list_is_unknown_key(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    stranger = make_dsc(not_before=T0 - timedelta(days=1), not_after=T0 + timedelta(days=9))
    _, body = await scan(world, hc1(stranger))
    assert (body["decision"], body["reason"]) == ("deny", "unknown_key")


async def test_signer_outside_its_validity_window_is_refused(world: World) -> None:
    old = make_dsc(not_before=T0 - timedelta(days=400), not_after=T0 - timedelta(days=10))
    await trust(world, old)
    _, body = await scan(world, hc1(old))
    assert body["reason"] == "key_out_of_window"


# --- replay and sharing ----------------------------------------------------------------------------------


async def test_same_certificate_again_at_the_same_place_is_replayed(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    code = hc1(dsc)
    assert (await scan(world, code))[1]["decision"] == "admit"
    _, body = await scan(world, code)
    assert (body["decision"], body["reason"], body["rule_id"]) == ("deny", "replayed", "replay")


async def test_same_uvci_at_another_place_is_code_shared_even_re_encoded(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    assert (await scan(world, hc1(dsc, naat(5)), who="dev-b"))[1]["decision"] == "admit"
    # A second copy of the same certificate (other tags, other compression) is still the same UVCI.
    copy_ = hc1(dsc, naat(5), tags=(61, 18))
    _, body = await scan(world, copy_, who="dev-a")
    assert (body["decision"], body["reason"]) == ("deny", "code_shared")
    assert [e[b"event_class"] for e in await intake_events(world)] == [b"code_shared"]


async def test_replay_memory_is_keyed_by_a_hash_and_expires_after_the_window(
    make_world: WorldFactory, dsc: Dsc
) -> None:
    world = await make_world(dcc_replay_window_s=45)
    await trust(world, dsc)
    await scan(world, hc1(dsc))
    (key,) = [k async for k in world.redis.scan_iter(match="pg:nonce:dcc:*")]
    assert 0 < await world.redis.ttl(key) <= 45
    assert b"UVCI" not in key and b"5CWLU" not in key


async def test_different_certificates_of_one_issuer_do_not_collide(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    assert (await scan(world, hc1(dsc, vaccination("URN:UVCI:01DE/A#1"))))[1]["reason"] == "ok"
    assert (await scan(world, hc1(dsc, vaccination("URN:UVCI:01DE/B#1"))))[1]["reason"] == "ok"


# --- trust-list freshness ---------------------------------------------------------------------------------


async def test_never_imported_trust_list_fails_closed(world: World, dsc: Dsc) -> None:
    set_clock(world, T0)
    _, body = await scan(world, hc1(dsc))
    assert (body["decision"], body["reason"], body["degraded"]) == ("deny", "trust_list_stale", True)
    assert await intake_events(world) == []  # our stale list is no evidence of forgery


async def test_ageing_trust_list_degrades_then_fails_closed(make_world: WorldFactory, dsc: Dsc) -> None:
    world = await make_world(dsc_trust_degraded_after_s=3600, dsc_trust_fail_after_s=7200)
    await trust(world, dsc, at=T0)
    codes = iter([hc1(dsc, vaccination(f"URN:UVCI:01DE/F{i}#1")) for i in range(4)])
    for offset_s, decision, reason, degraded in [
        (0, "admit", "ok", False),
        (3599, "admit", "ok", False),
        (3601, "admit", "ok", True),
        (7201, "deny", "trust_list_stale", True),
    ]:
        set_clock(world, T0 + timedelta(seconds=offset_s))
        _, body = await scan(world, next(codes))
        assert (body["decision"], body["reason"], body["degraded"]) == (decision, reason, degraded), offset_s


async def test_stale_list_still_reports_a_malformed_certificate_as_such(make_world: WorldFactory) -> None:
    world = await make_world()
    set_clock(world, T0)
    bomb = "HC1:" + b45encode(zlib.compress(b"\0" * 1_000_000, 9))
    _, body = await scan(world, bomb)
    assert (body["reason"], body["degraded"]) == ("dcc_too_large", True)


async def test_re_import_refreshes_the_age_and_workers_pick_up_the_new_version(
    make_world: WorldFactory, dsc: Dsc
) -> None:
    world = await make_world(dsc_trust_degraded_after_s=60, dsc_trust_fail_after_s=120)
    await trust(world, dsc, at=T0 - timedelta(seconds=500))
    _, body = await scan(world, hc1(dsc, vaccination("URN:UVCI:01DE/R1#1")))
    assert body["reason"] == "trust_list_stale"
    await DscRegistry(world.redis).import_certificates([dsc.der], now=T0)
    assert await refresh_dsc(world.client.app)  # the poller's call: the version moved, so it reloads
    _, body = await scan(world, hc1(dsc, vaccination("URN:UVCI:01DE/R2#1")))
    assert (body["reason"], body["degraded"]) == ("ok", False)


# --- malformed payloads -----------------------------------------------------------------------------------


def _wrapped(payload: bytes) -> str:
    return "HC1:" + b45encode(zlib.compress(payload))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("HC1:" + b45encode(zlib.compress(b"\0" * 1_000_000, 9)), "dcc_too_large"),
        ("HC1:" + b45encode(b"not zlib at all"), "dcc_zlib"),
        ("HC1:" + b45encode(zlib.compress(b"abc")[:-3]), "dcc_zlib"),
        (_wrapped(b"\x81" * 200 + b"\x00"), "cose_invalid"),  # nesting far past the depth limit
        (_wrapped(b"\x5b" + (2**63).to_bytes(8, "big")), "cose_invalid"),  # huge declared length
        (_wrapped(b"\xa2\x01\x01\x01\x02"), "cose_invalid"),  # duplicate map keys
        (_wrapped(encode_cbor([b"", {}, b"\xa1\x01\x01", b"sig"])), "cwt_invalid"),
        (_wrapped(b"\xff\xfe"), "cose_invalid"),
    ],
)
async def test_malicious_payload_is_a_deny_with_its_reason(world: World, dsc: Dsc, text: str, reason: str) -> None:
    await trust(world, dsc)
    status, body = await scan(world, text)
    assert status == 200
    assert (body["decision"], body["reason"]) == ("deny", reason)


@pytest.mark.parametrize("text", ["HC1:%%%%", "HC1:A", "HC1:" + "A" * 9000, "hc1:NCFOXN%TS3DH"])
async def test_text_that_is_not_a_certificate_is_a_400(world: World, dsc: Dsc, text: str) -> None:
    await trust(world, dsc)
    status, body = await scan(world, text)
    assert (status, body["error"]) == (400, "malformed_code")


# --- batch, privacy ---------------------------------------------------------------------------------------


async def test_batch_mixes_native_and_hc1_codes(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    set_clock(world, datetime.now(UTC))
    codes = [world.code("holder-9"), hc1(dsc, vaccination("URN:UVCI:01DE/BATCH#1")), "HC1:%%%%"]
    resp = await world.client.post("/v1/scan/batch", json={"codes": codes}, headers=world.auth("dev-c"))
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert results[0]["decision"] in ("admit", "review")  # native: holder not in the status cache
    assert (results[1]["decision"], results[1]["reason"]) == ("admit", "ok")
    assert results[2] == {"error": "malformed_code"}


async def test_no_name_birth_date_or_uvci_reaches_redis(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    code = hc1(dsc)
    await scan(world, code)
    await scan(world, code, who="dev-b")  # code_shared: an exception event with a sealed reference
    dump = await everything_in_redis(world)
    assert all(secret not in dump for secret in PERSONAL)
    entries = await stream(world, keyspace.scan_log_key(T0.strftime("%Y%m%d")))
    pseudonyms = {fields[b"pseudonym"] for fields in entries}
    assert len(pseudonyms) == 1 and len(next(iter(pseudonyms))) == 32


# --- the trust CLI ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _cli_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # An external store requires the secret: the suite's shared one, as every CLI run on the session server.
    monkeypatch.setenv("PLACEGATE_SECRET", SECRET.reveal().hex())


def _cli(redis_url: str, *args: str) -> int:
    # The trust import is audited, and an audited admin command reads the master secret: the tests' one, not a
    # secret generated into the working directory's .placegate/.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLACEGATE_SECRET", bytes(range(32)).hex())
        return main(["trust", *args, "--redis-url", redis_url])


def test_trust_import_and_list_from_pem_and_json_bundles(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import base64
    import json

    first, second = make_dsc(), make_dsc("rsa")
    (tmp_path / "a.pem").write_bytes(first.pem)
    (tmp_path / "b.json").write_text(json.dumps({"certificates": [base64.b64encode(second.der).decode()]}))
    assert _cli(redis_url, "import", str(tmp_path / "a.pem"), str(tmp_path / "b.json")) == 0
    assert "imported=2 stored=2" in capsys.readouterr().out
    assert _cli(redis_url, "list") == 0
    listing = capsys.readouterr().out
    assert first.kid.hex() in listing and second.kid.hex() in listing and "freshness=fresh" in listing
    assert _cli(redis_url, "import", str(tmp_path / "a.pem")) == 0  # replaces: the list is published whole
    assert "stored=1" in capsys.readouterr().out
    assert _cli(redis_url, "import", "--merge", str(tmp_path / "b.json")) == 0
    assert "stored=2" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"hello", b'["not base64!"]', b'{"certificates": 3}',
                                     b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_trust_import_of_a_bad_file_changes_nothing(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    good = tmp_path / "good.pem"
    good.write_bytes(make_dsc().pem)
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    assert _cli(redis_url, "import", str(good)) == 0
    assert _cli(redis_url, "import", str(good), str(bad)) == 1
    capsys.readouterr()
    assert _cli(redis_url, "list") == 0
    assert "certificates=1 " in capsys.readouterr().out

