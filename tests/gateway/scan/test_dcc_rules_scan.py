"""EU DCC business-rule sets in the gateway: `placegate trust rules import NAME DIR` (audited, versioned), a
venue class whose rules file names a set, and the answer naming the failed rule. Real Redis, real server; the
public EU template rules and value sets are read from ../shared/conformance where they lie."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from gateway import keyspace
from gateway.cli import main
from gateway.privacy.audit import query_audit
from gateway.trust.refresh import refresh_dcc_rules, refresh_valuesets
from tests.crypto.conftest import Dsc
from tests.gateway.conftest import World, WorldFactory
from tests.gateway.scan.test_hc1_scan import (
    PERSONAL,
    T0,
    dsc,
    everything_in_redis,
    hc1,
    intake_events,
    scan,
    trust,
    vaccination,
)

__all__ = ["dsc"]  # the module fixture, shared with the HC1 scan tests

REPO = Path(__file__).resolve().parents[3]
CONFORMANCE = REPO.parent / "shared" / "conformance"
EU_RULES = CONFORMANCE / "dcc-rules-testdata" / "EU"
VALUESETS = CONFORMANCE / "dcc-valuesets"
pytestmark = pytest.mark.skipif(not EU_RULES.is_dir() or not VALUESETS.is_dir(),
                                reason="shared/conformance/dcc-rules-testdata or dcc-valuesets absent")


async def _cli(redis_url: str, *args: str) -> int:
    # The command runs its own event loop: in a thread, beside the test's.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLACEGATE_SECRET", bytes(range(32)).hex())
        return await asyncio.to_thread(main, ["trust", *args, "--redis-url", redis_url])


async def _world_applying(make_world: WorldFactory, tmp_path: Path, rule_set: str) -> World:
    """A world whose class C (offices, device dev-c) applies ``rule_set`` to EU DCCs."""
    default = resources.files("policy").joinpath("default_rules.toml").read_text("utf-8")
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(default.replace('[classes.C]\n', f'[classes.C]\ndcc_rule_set = "{rule_set}"\n'), "utf-8")
    return await make_world(rules_file=rules_file)


def _recent(dn: int = 2, ci: str = "URN:UVCI:01DE/R/1#1") -> dict[str, object]:
    dcc = vaccination(ci=ci)
    dcc["v"][0].update(dt=(T0 - timedelta(days=30)).date().isoformat(), dn=dn)  # type: ignore[index]
    return dcc


async def test_a_certificate_failing_a_rule_of_the_venue_rule_set_is_refused_naming_the_rule(
    make_world: WorldFactory, tmp_path: Path, redis_url: str, dsc: Dsc, capsys: pytest.CaptureFixture[str]
) -> None:
    world = await _world_applying(make_world, tmp_path, "EU")
    await trust(world, dsc)
    assert await _cli(redis_url, "valuesets", "import", str(VALUESETS)) == 0
    assert await _cli(redis_url, "rules", "import", "EU", str(EU_RULES)) == 0
    assert "rule_set=EU rules=14 version=" in capsys.readouterr().out
    assert await refresh_valuesets(world.client.app) and await refresh_dcc_rules(world.client.app)

    _, body = await scan(world, hc1(dsc, _recent()), who="dev-c")
    assert (body["decision"], body["reason"]) == ("admit", "ok")
    _, body = await scan(world, hc1(dsc, _recent(dn=1, ci="URN:UVCI:01DE/R/2#2")), who="dev-c")
    assert (body["decision"], body["reason"], body["rule_id"]) == ("deny", "dcc_rule_failed", "VR-EU-0002")
    # Class A names no rule set: the same certificate is judged by the venue-class rules alone.
    _, body = await scan(world, hc1(dsc, _recent(dn=1, ci="URN:UVCI:01DE/R/3#3")), who="dev-a")
    assert body["reason"] == "test_missing"

    now = datetime.now(UTC)
    page = await query_audit(world.redis, since=now - timedelta(minutes=5), until=now + timedelta(minutes=1),
                             limit=10, action="dcc_rules_import")
    assert [(e.fields["sets"], e.fields["rules"]) for e in page.entries] == [("EU", "14")]
    assert await _cli(redis_url, "rules", "list") == 0
    assert "VR-EU-0002" in capsys.readouterr().out
    ready = await (await world.client.get("/readyz")).json()
    assert (ready["dcc_rules"]["sets"], ready["dcc_rules"]["missing"]) == (["EU"], [])
    # Removed (audited): the class that names it now fails closed.
    assert await _cli(redis_url, "rules", "remove", "EU") == 0
    assert await _cli(redis_url, "rules", "remove", "EU") == 1
    assert await refresh_dcc_rules(world.client.app)
    _, body = await scan(world, hc1(dsc, _recent(ci="URN:UVCI:01DE/R/4#4")), who="dev-c")
    assert (body["reason"], body["rule_id"]) == ("dcc_rules_unavailable", "C.dcc_rules")
    page = await query_audit(world.redis, since=now - timedelta(minutes=5), until=now + timedelta(minutes=5),
                             limit=10, action="dcc_rules_remove")
    assert [e.fields["sets"] for e in page.entries] == ["EU"]


async def test_a_rule_set_the_venue_names_but_nobody_imported_refuses_every_dcc(
    make_world: WorldFactory, tmp_path: Path, dsc: Dsc
) -> None:
    world = await _world_applying(make_world, tmp_path, "CITY")
    await trust(world, dsc)
    await world.redis.delete(keyspace.DCC_RULES, keyspace.DCC_RULES_VERSION)
    assert await refresh_dcc_rules(world.client.app, force=True)
    _, body = await scan(world, hc1(dsc, _recent()), who="dev-c")
    assert (body["decision"], body["reason"], body["rule_id"]) == ("deny", "dcc_rules_unavailable", "C.dcc_rules")
    resp = await world.client.get("/readyz")
    ready = await resp.json()
    assert (resp.status, ready["dcc_rules"]["missing"]) == (200, ["CITY"])  # shown, native codes still work


async def test_a_rule_set_with_a_bad_rule_imports_nothing(
    redis_url: str, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await world.redis.get(keyspace.DCC_RULES_VERSION)
    (tmp_path / "rule.json").write_text('{"Identifier": "VR-XX-0001", "Logic": {"eval": ["1"]}}', "utf-8")
    assert await _cli(redis_url, "rules", "import", "CITY", str(tmp_path)) == 1
    assert "placegate:" in capsys.readouterr().err
    assert await _cli(redis_url, "rules", "import", "CITY", str(tmp_path / "absent")) == 1
    assert await _cli(redis_url, "rules", "import", "bad name!", str(EU_RULES)) == 1
    assert await world.redis.get(keyspace.DCC_RULES_VERSION) == before


async def test_rule_and_value_set_refusals_store_the_rule_never_a_certificate_value(
    make_world: WorldFactory, tmp_path: Path, redis_url: str, dsc: Dsc
) -> None:
    world = await _world_applying(make_world, tmp_path, "EU")
    await trust(world, dsc)
    assert await _cli(redis_url, "valuesets", "import", str(VALUESETS)) == 0
    assert await _cli(redis_url, "rules", "import", "EU", str(EU_RULES)) == 0
    assert await refresh_valuesets(world.client.app) and await refresh_dcc_rules(world.client.app)
    unknown = _recent(ci="URN:UVCI:01DE/P/2#2")
    unknown["v"][0]["mp"] = "EU/1/99/0000"  # type: ignore[index]
    reasons = []
    for dcc in (_recent(dn=1, ci="URN:UVCI:01DE/P/1#1"), unknown):
        _, body = await scan(world, hc1(dsc, dcc), who="dev-c")
        reasons.append((body["reason"], body["rule_id"]))
    assert reasons == [("dcc_rule_failed", "VR-EU-0002"), ("dcc_unknown_value", "v[0].mp")]
    stored = await everything_in_redis(world)
    assert b"VR-EU-0002" in stored and b"v[0].mp" in stored  # the control: the scan log holds the rule named
    for value in (*PERSONAL, b"EU/1/99/0000", b"URN:UVCI:01DE/P"):
        assert value not in stored
    assert await intake_events(world) == []  # a certificate that breaks a rule is not a forgery: no case


async def test_an_invalidation_rule_of_the_issuing_country_refuses_the_certificate_it_names(
    make_world: WorldFactory, tmp_path: Path, redis_url: str, dsc: Dsc
) -> None:
    import json

    world = await _world_applying(make_world, tmp_path, "CITY")
    await trust(world, dsc)
    base = {"Type": "Acceptance", "Country": "CN", "Version": "1.0.0", "Engine": "CERTLOGIC",
            "ValidFrom": "2021-01-01T00:00:00Z", "ValidTo": "2099-01-01T00:00:00Z"}  # fmt: skip
    revoked = "URN:UVCI:01DE/REVOKED/1#1"
    rules = [{**base, "Identifier": "GR-CN-0001", "Logic": True},
             {**base, "Identifier": "IR-DE-0001", "Type": "Invalidation", "Country": "DE",
              "Logic": {"===": [{"var": "payload.v.0.ci"}, revoked]}}]  # fmt: skip
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "city.json").write_text(json.dumps(rules), "utf-8")
    assert await _cli(redis_url, "rules", "import", "CITY", str(tmp_path / "rules")) == 0
    assert await refresh_dcc_rules(world.client.app)
    _, body = await scan(world, hc1(dsc, _recent(ci=revoked)), who="dev-c")  # issued by DE (CWT iss)
    assert (body["decision"], body["reason"], body["rule_id"]) == ("deny", "dcc_rule_failed", "IR-DE-0001")
    _, body = await scan(world, hc1(dsc, _recent(ci="URN:UVCI:01DE/FINE/1#1")), who="dev-c")
    assert (body["decision"], body["reason"]) == ("admit", "ok")
