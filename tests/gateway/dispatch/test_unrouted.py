"""Honest routing over HTTP on the real Redis (issue 15): an unroutable report or scan exception is a real case in
the city's unrouted queue that a city dispatcher routes by hand, and a dispatcher dispatches only to departments
serving the case's place."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from gateway.keyspace import DISPATCH_DEADLETTER
from gateway.principals import Principal, Role
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Place, Registry
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import ROUTING, T0, DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw

FAR_PLACE = Place("place-far", "Ferry Pier", "C", "elsewhere/d9/s1")  # outside the routing table's city "city"
CITY_PRINCIPALS = [
    Principal("disp-city", Role.DISPATCHER, jurisdiction="city"),
    Principal("sup-city", Role.SUPERVISOR, jurisdiction="city"),
    Principal("h-citypolice", Role.HANDLER, department="city-police"),
    Principal("sm-far", Role.SITE_MANAGER, places=frozenset({"place-far"})),
]


async def _city_world(dw: DispatchWorld) -> DispatchWorld:
    registry = Registry(dw.world.redis)
    await registry.add_place(FAR_PLACE)
    for principal in CITY_PRINCIPALS:
        dw.world.tokens[principal.principal_id] = await create_principal(registry, principal)
    return dw


async def _report(dw: DispatchWorld, who: str, place: str, event_class: str = "forced_entry") -> tuple[int, Any]:
    body = {"event_class": event_class, "place": place, "time": (T0 - timedelta(minutes=1)).isoformat()}
    resp = await dw.world.client.post("/v1/reports", json=body, headers=dw.world.auth(who))
    return resp.status, await resp.json()


async def _queue(dw: DispatchWorld, who: str, query: str = "?department=unrouted") -> list[str]:
    status, body = await dw.get(who, "/v1/cases" + query)
    assert status == 200, body
    return [c["case_id"] for c in body["cases"]]


async def test_an_unroutable_report_is_a_real_case_in_the_city_unrouted_queue_routed_by_a_city_dispatcher(
    dw: DispatchWorld,
) -> None:
    await _city_world(dw)
    status, answer = await _report(dw, "sm-far", "place-far")
    assert status == 202
    case_id = answer["case_id"]
    assert await dw.pump() == {"created": 1}
    assert await dw.world.redis.xlen(DISPATCH_DEADLETTER) == 0  # a case, not a dead letter

    # The 202's case id exists: held by the city centre, in `reported`, no department.
    status, case = await dw.get("disp-city", f"/v1/cases/{case_id}")
    assert status == 200
    assert (case["state"], case["department"], case["level"], case["jurisdiction"], case["place_id"]) == (
        "reported", "unrouted", "city", "city", "place-far",
    )
    assert await _queue(dw, "disp-city") == [case_id]
    assert await _queue(dw, "sup-city") == [case_id]
    # A district's dispatcher neither sees nor routes it: the same 404 as any case outside its jurisdiction.
    assert await _queue(dw, "dispatcher") == []
    assert (await dw.get("dispatcher", f"/v1/cases/{case_id}"))[0] == 404
    status, body = await dw.act("dispatcher", case_id, "route", department="city-police")
    assert (status, body["error"]) == (404, "not_found")

    # Nothing but route (and cancel) until it is routed; routing is a city dispatcher's, to a city department.
    before = await dw.case(case_id)
    for who, action, extra, expected in (
        ("disp-city", "accept", {}, (409, "case_unrouted")),
        ("disp-city", "dispatch", {"department": "city-police"}, (409, "case_unrouted")),
        ("sup-city", "route", {"department": "city-police"}, (403, "not_permitted_role")),
        ("h-citypolice", "route", {"department": "city-police"}, (404, "not_found")),  # no handler sees it
        ("disp-city", "route", {}, (422, "invalid_argument")),
        ("disp-city", "route", {"department": "unrouted"}, (422, "invalid_argument")),
        ("disp-city", "route", {"department": "d1-police"}, (422, "department_out_of_jurisdiction")),
    ):
        status, body = await dw.act(who, case_id, action, **extra)
        assert (status, body["error"]) == expected, (who, action, extra)
    assert await dw.case(case_id) == before

    dw.clock.advance(minutes=3)
    status, case = await dw.act("disp-city", case_id, "route", department="city-police")
    assert (status, case["state"], case["department"], case["level"]) == (200, "reported", "city-police", "city")
    assert (case["history"][-1]["action"], case["history"][-1]["actor_id"]) == ("route", "disp-city")
    assert await _queue(dw, "disp-city") == []
    assert (await dw.act("disp-city", case_id, "route", department="city-cdc"))[1]["error"] == "illegal_transition"

    # From here the normal flow: accept, file, dispatch, and the department's handler opens the order.
    for action, state in (("accept", "accepted"), ("file", "filed"), ("dispatch", "dispatched")):
        status, case = await dw.act("disp-city", case_id, action)
        assert (status, case["state"]) == (200, state)
    status, case = await dw.act("h-citypolice", case_id, "start")
    assert (status, case["state"]) == (200, "in_progress")


async def test_an_unroutable_scan_exception_keeps_its_holder_and_waits_unrouted(dw: DispatchWorld) -> None:
    await _city_world(dw)
    outside = await dw.event("status_red", jurisdiction="elsewhere/d1", holder="holder-far")
    no_path = await dw.event("replayed", jurisdiction="", holder="holder-none")  # a path that does not parse
    assert await dw.pump() == {"created": 2}
    for case_id in (outside, no_path):
        case = await dw.case(case_id)
        # Not accepted, filed and dispatched automatically: no department serves it yet.
        assert (case.state.value, case.department, case.level.value, case.jurisdiction) == (
            "reported", "unrouted", "city", ("city",),
        )
        assert [e.action.value for e in case.history] == ["report"]
        assert (await dw.runtime.store.holder(case_id) or {}).get("holder_sealed")  # sealed, bound to the case
    assert sorted(await _queue(dw, "disp-city")) == sorted([outside, no_path])
    status, case = await dw.act("disp-city", outside, "route", department="city-cdc")
    assert (status, case["department"]) == (200, "city-cdc")


async def test_a_dispatcher_dispatches_only_to_departments_serving_the_place(
    make_dispatch_world: DispatchWorldFactory, tmp_path: Path
) -> None:
    # The fixture's table plus the police of the neighbouring district (Huangpu's case, Pudong's police).
    routing = tmp_path / "routing-d2.toml"
    routing.write_text(ROUTING + '\n[[rules]]\nevent_classes = ["forced_entry"]\njurisdiction = "city/d2"\n'
                       'department = "d2-police"\n', "utf-8")  # fmt: skip
    dw: DispatchWorld = await make_dispatch_world(env={"ROUTING_FILE": str(routing)})
    status, answer = await _report(dw, "sm-a", "place-a")  # city/d1/s1/g1/c1: routed to d1-police
    assert status == 202
    case_id = answer["case_id"]
    await dw.pump()
    for action in ("accept", "file"):
        assert (await dw.act("dispatcher", case_id, action))[0] == 200
    before = await dw.case(case_id)
    status, body = await dw.act("dispatcher", case_id, "dispatch", department="d2-police")
    assert (status, body["error"]) == (422, "department_out_of_jurisdiction")
    assert await dw.case(case_id) == before  # refused: nothing written
    # Departments serving the place: its district's, its street's, the city's.
    status, case = await dw.act("dispatcher", case_id, "dispatch", department="s1-clinic")
    assert (status, case["department"]) == (200, "s1-clinic")
    # A re-dispatch after a return is held to the same rule.
    resp = await dw.world.client.post(f"/v1/cases/{case_id}/actions", json={"action": "return", "note": "not ours"},
                                      headers=dw.world.auth("h-clinic"))  # fmt: skip
    assert resp.status == 200
    status, body = await dw.act("dispatcher", case_id, "dispatch", department="d2-police")
    assert (status, body["error"]) == (422, "department_out_of_jurisdiction")
    status, case = await dw.act("dispatcher", case_id, "dispatch", department="city-police")
    assert (status, case["state"], case["department"]) == (200, "dispatched", "city-police")
