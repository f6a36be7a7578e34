"""The temperature at a digital sentry (issue 18 part 1, item 3), through a real server, the real intake consumer
and the real Redis: a reading outside 30-45 °C is refused, one at or above the venue class's fever threshold denies
with reason ``fever`` and opens a ``fever`` case routed to the health service; the scan log keeps only the fever
flag, and the reading is kept only inside the case (sealed beside the holder, with the scan log's retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crypto.native import Colour
from crypto.sealing import NOTE_LABEL, Sealer, SealError, event_binding, reading_binding
from gateway import keyspace
from gateway.dispatch.store import case_id_for_event
from gateway.principals import Principal, Role
from gateway.scan.state import SCANNER
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from policy.casework import CaseState
from policy.deadlines import load_default_deadline_table
from policy.routing import EventClass, load_default_routing_table
from tests.gateway.conftest import SECRET, World, WorldFactory
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorldFactory
from tests.gateway.sentry.conftest import add_sentry, id_number, sentry_scan

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world


def _is_number(value: bytes) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _log(world: World) -> str:  # today's scan-log partition
    return keyspace.scan_log_key(datetime.now(UTC).strftime("%Y%m%d"))


async def test_a_normal_reading_leaves_the_decision_and_logs_a_fever_flag_of_0(world: World) -> None:
    await world.set_status("holder-1")
    status, body = await world.scan(world.code("holder-1"), who="dev-c", temperature_c=36.6)
    assert (status, body["decision"], body["reason"]) == (200, "admit", "ok")
    (entry,) = await world.redis.xrange(_log(world))
    assert entry[1][b"fever"] == b"0"
    assert not [v for v in entry[1].values() if _is_number(v) and float(v) == 36.6]


@pytest.mark.parametrize("reading", [37.3, 38.2, 45])
async def test_a_reading_at_or_above_the_threshold_denies_with_fever_and_raises_a_fever_event(
    world: World, reading: float
) -> None:
    await world.set_status("holder-1")
    _, body = await world.scan(world.code("holder-1"), who="dev-c", temperature_c=reading)
    assert (body["decision"], body["reason"], body["rule_id"]) == ("deny", "fever", "C.temperature")
    (entry,) = await world.redis.xrange(_log(world))
    assert entry[1][b"fever"] == b"1" and entry[1][b"reason"] == b"fever"
    assert not [v for v in entry[1].values() if _is_number(v) and float(v) == reading]
    (event,) = await world.redis.xrange(keyspace.DISPATCH_INTAKE)
    fields = {k.decode(): v.decode() for k, v in event[1].items()}
    assert fields["event_class"] == "fever"
    # Sealed like a note, under the note sub-key: the holder sub-key does not open it.
    opened = Sealer(SECRET.reveal(), label=NOTE_LABEL).open(fields["reading_sealed"],
                                                            bound_to=reading_binding(event_binding(body["scan_id"])))
    with pytest.raises(SealError):
        Sealer(SECRET.reveal()).open(fields["reading_sealed"], bound_to=reading_binding(event_binding(body["scan_id"])))
    assert float(opened) == reading
    assert not [v for v in fields.values() if _is_number(v.encode()) and float(v) == reading]


async def test_a_fever_wins_over_a_red_code_and_an_unknown_id_card(world: World) -> None:
    await world.set_status("holder-1", colour=Colour.RED)
    _, body = await world.scan(world.code("holder-1"), who="dev-c", temperature_c=39.0)
    assert (body["decision"], body["reason"]) == ("deny", "fever")
    await add_sentry(world)
    _, body = await sentry_scan(world, id_card=id_number(5), temperature_c=39.0)
    assert (body["decision"], body["reason"], body["via"]) == ("deny", "fever", "id_card")


@pytest.mark.parametrize("reading", [29.9, 45.1, -1, 100, "37", True, None])
async def test_a_reading_outside_30_to_45_or_not_a_number_is_400_invalid_temperature(world: World,
                                                                                   reading: Any) -> None:
    status, body = await world.scan(world.code("holder-1"), who="dev-c", temperature_c=reading)
    if reading is None:  # an absent reading: nothing measured
        assert status == 200
        return
    assert (status, body["error"]) == (400, "invalid_temperature")
    assert await world.redis.xlen(_log(world)) == 0


async def test_the_rules_file_sets_the_threshold_per_venue_class(make_world: WorldFactory, tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('version = "t"\nstatus_max_age_h = 24\n'
                     '[classes.A]\nfever_threshold_c = 37.0\non_unknown = "review"\n'
                     '[classes.B]\non_unknown = "review"\n'
                     '[classes.C]\nfever_threshold_c = 38.0\non_unknown = "review"\n')
    world = await make_world(rules_file=rules)
    await world.set_status("holder-1")
    results = {}
    for who in ("dev-a", "dev-b", "dev-c"):
        _, body = await world.scan(world.code("holder-1"), who=who, temperature_c=37.5)
        results[who] = body["reason"]
    assert results["dev-a"] == "fever" and results["dev-b"] == "fever"  # 37.0, and the default 37.3
    assert results["dev-c"] != "fever"  # 38.0


async def test_a_fever_in_degraded_mode_is_still_a_fever(make_world: WorldFactory) -> None:
    # The device and place are read with the store answering, then only the scan path's deadline passes at once
    # (see test_paper_scan: redis_timeout_ms=0 for the whole world raced the place read too).
    world = await make_world(principal_cache_s=3600)
    assert (await world.scan(world.code("holder-2"), who="dev-c"))[0] == 200
    world.client.app[SCANNER].redis_timeout_s = 0.0
    _, body = await world.scan(world.code("holder-1"), who="dev-c", temperature_c=38.5)
    assert (body["decision"], body["reason"], body["degraded"]) == ("deny", "fever", True)


async def test_a_batch_takes_readings_per_item(world: World) -> None:
    await world.set_status("holder-1")
    await world.set_status("holder-2")
    codes = [{"code": world.code("holder-1"), "temperature_c": 36.5}, {"code": world.code("holder-2"),
             "temperature_c": 38.0}, {"code": world.code("holder-1"), "temperature_c": 50}]
    resp = await world.client.post("/v1/scan/batch", json={"codes": codes}, headers=world.auth("dev-c"))
    results = (await resp.json())["results"]
    assert [r.get("reason") or r.get("error") for r in results] == ["ok", "fever", "invalid_temperature"]


def test_the_default_routing_sends_fever_to_the_community_health_service() -> None:
    route = load_default_routing_table().route(EventClass.FEVER, ("metro", "east", "riverside"))
    assert route.department == "city-community-health" and route.urgent
    # Handled within 2 hours, like a red code: the person is at the gate now.
    assert load_default_deadline_table().budget(EventClass.FEVER, CaseState.IN_PROGRESS,
                                                urgent=True) == timedelta(hours=2)


async def test_the_reading_is_kept_only_in_the_fever_case_and_read_with_its_holder(
    make_dispatch_world: DispatchWorldFactory,
) -> None:
    dw = await make_dispatch_world(clock=None)
    world: World = dw.world
    world.tokens["h-health"] = await create_principal(Registry(world.redis),
                                                      Principal("h-health", Role.HANDLER, department="city-health"))
    await world.set_status("holder-f")
    _, body = await world.scan(world.code("holder-f"), who="dev-c", temperature_c=38.4)
    assert body["reason"] == "fever"
    assert (await dw.pump())["created"] == 1
    case = await dw.case(case_id_for_event(body["scan_id"]))
    assert case.event_class is EventClass.FEVER and case.department == "city-health"
    status, holder = await dw.get("h-health", f"/v1/cases/{case.case_id}/holder")
    assert (status, holder) == (200, {"case_id": case.case_id, "holder_ref": "holder-f", "temperature_c": 38.4})
    ttl = await world.redis.ttl(keyspace.case_holder_key(case.case_id))
    assert 0 < ttl <= world.settings.retention_days * 86400

