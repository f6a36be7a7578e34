"""EU DCC value sets in the gateway: `placegate trust valuesets import DIR` (audited, versioned), the check at
verification in POST /v1/scan, /readyz and the age gauge. Real Redis, real server; the public value sets are read
from ../shared/conformance/dcc-valuesets where they lie (the tests skip without them)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway import keyspace
from gateway.cli import main
from gateway.privacy.audit import query_audit
from gateway.trust.refresh import refresh_valuesets
from gateway.trust.state import TRUST_STATE
from gateway.trust.valuesets import ValueSetRegistry, read_value_set_dir
from tests.crypto.conftest import Dsc
from tests.gateway.conftest import World, WorldFactory
from tests.gateway.scan.test_hc1_scan import T0, dsc, hc1, scan, trust, vaccination

__all__ = ["dsc"]  # the module fixture, shared with the HC1 scan tests

REPO = Path(__file__).resolve().parents[3]
VALUESETS = REPO.parent / "shared" / "conformance" / "dcc-valuesets"
pytestmark = pytest.mark.skipif(not VALUESETS.is_dir(), reason="shared/conformance/dcc-valuesets absent")


async def _import(world: World) -> int:
    sets, _ = read_value_set_dir(VALUESETS)
    version = await ValueSetRegistry(world.redis).import_sets(sets, now=T0)
    assert await refresh_valuesets(world.client.app)
    return version


async def test_an_unknown_vaccine_product_is_refused_naming_the_field(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    await _import(world)
    status, body = await scan(world, hc1(dsc))
    assert (status, body["decision"], body["reason"]) == (200, "admit", "ok")
    bad = vaccination(ci="URN:UVCI:01DE/X/1#1")
    bad["v"][0]["mp"] = "EU/1/99/0000"
    status, body = await scan(world, hc1(dsc, bad))
    assert (status, body["decision"], body["reason"], body["rule_id"]) == (200, "deny", "dcc_unknown_value",
                                                                          "v[0].mp")


async def test_without_imported_value_sets_no_code_is_judged(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    assert await refresh_valuesets(world.client.app, force=True)
    bad = vaccination()
    bad["v"][0]["mp"] = "EU/1/99/0000"
    _, body = await scan(world, hc1(dsc, bad))
    assert (body["decision"], body["reason"]) == ("admit", "ok")


async def test_a_schema_refusal_names_its_field_in_the_answer(world: World, dsc: Dsc) -> None:
    await trust(world, dsc)
    old = vaccination()
    old["dob"] = "1899-01-01"
    _, body = await scan(world, hc1(dsc, old))
    assert (body["decision"], body["reason"], body["rule_id"]) == ("deny", "dcc_schema_invalid", "dob")


async def test_valuesets_import_is_shown_in_readyz_and_its_age_is_a_gauge(make_world: WorldFactory) -> None:
    world = await make_world(ready_trust_lists="native,valuesets")
    app = world.client.app
    await world.redis.delete(keyspace.DCC_VALUESETS, keyspace.DCC_VALUESETS_VERSION,
                             keyspace.DCC_VALUESETS_IMPORTED_AT)
    assert await refresh_valuesets(app, force=True)
    resp = await world.client.get("/readyz")
    body = await resp.json()
    assert (resp.status, body["reasons"], body["valuesets"]["sets"]) == (503, ["valuesets_not_imported"], 0)

    version = await _import(world)
    resp = await world.client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200
    assert body["valuesets"] == {"version": version, "sets": 9, "imported_at": T0.isoformat()}
    app[TRUST_STATE].valuesets_imported_at = datetime.now(UTC) - timedelta(hours=2)
    from gateway.trust.refresh import _report_ages

    _report_ages(app)
    text = await (await world.client.get("/metrics")).text()
    (line,) = [row for row in text.splitlines() if row.startswith('placegate_trust_list_age_seconds{list="valuesets"}')]
    assert 7190 < float(line.split(" ")[1]) < 7300


async def _cli(redis_url: str, *args: str) -> int:
    # The command runs its own event loop: in a thread, beside the test's.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLACEGATE_SECRET", bytes(range(32)).hex())
        return await asyncio.to_thread(main, ["trust", "valuesets", *args, "--redis-url", redis_url])


async def test_valuesets_import_command_is_audited_and_versioned(
    redis_url: str, world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(redis_url, "import", str(VALUESETS)) == 0
    assert capsys.readouterr().out.startswith("imported=9 version=")
    first = int(await world.redis.get(keyspace.DCC_VALUESETS_VERSION) or 0)
    assert await _cli(redis_url, "import", str(VALUESETS)) == 0
    assert int(await world.redis.get(keyspace.DCC_VALUESETS_VERSION) or 0) == first + 1
    capsys.readouterr()
    assert await _cli(redis_url, "list") == 0
    listing = capsys.readouterr().out
    assert "sets=9" in listing and "country-2-codes" in listing and "codes=250" in listing
    now = datetime.now(UTC)
    page = await query_audit(world.redis, since=now - timedelta(minutes=5), until=now + timedelta(minutes=1),
                             limit=10, action="dcc_valuesets_import")
    assert [entry.fields["version"] for entry in page.entries][-2:] == [str(first), str(first + 1)]
    assert "vaccines-covid-19-names" in page.entries[-1].fields["sets"]


async def test_a_malformed_value_set_file_imports_nothing(
    redis_url: str, world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _cli(redis_url, "import", str(VALUESETS)) == 0
    version = await world.redis.get(keyspace.DCC_VALUESETS_VERSION)
    for source in VALUESETS.glob("*.json"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    (tmp_path / "test-result.json").write_text(json.dumps({"valueSetId": "covid-19-lab-result",
                                                           "valueSetValues": {"1": {}}}), encoding="utf-8")
    assert await _cli(redis_url, "import", str(tmp_path)) == 1
    assert "valueSetDate" in capsys.readouterr().err
    assert await world.redis.get(keyspace.DCC_VALUESETS_VERSION) == version
    assert await _cli(redis_url, "import", str(tmp_path / "nothing-here")) == 1
