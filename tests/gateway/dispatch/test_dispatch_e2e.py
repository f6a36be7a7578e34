"""End to end: a red-status scan through ``POST /v1/scan`` becomes a case through the intake stream (the
gateway's own consumer), is dispatched, handled, fed back, checked and closed through the API."""

from __future__ import annotations

import asyncio

from crypto.native import Colour
from gateway.dispatch.store import case_id_for_event
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world


async def test_a_red_scan_ends_as_a_closed_case(make_dispatch_world: DispatchWorldFactory) -> None:
    dw: DispatchWorld = await make_dispatch_world(env={"WORKER": "1"}, clock=None)
    world = dw.world
    await world.set_status("holder-red", Colour.RED)
    status, scan = await world.scan(world.code("holder-red"))
    assert (status, scan["decision"], scan["reason"]) == (200, "deny", "status_red")
    case_id = case_id_for_event(scan["scan_id"])

    for _ in range(200):  # the in-process consumer picks the event up
        status, case = await dw.get("h-clinic", f"/v1/cases/{case_id}")
        if status == 200:
            break
        await asyncio.sleep(0.02)
    assert (status, case["state"], case["department"], case["event_class"]) == (
        200, "dispatched", "s1-clinic", "status_red")  # fmt: skip
    assert (case["place_id"], case["level"], case["urgent"]) == ("place-a", "community", True)
    _, queue = await dw.get("h-clinic", "/v1/cases?state=dispatched")
    assert [c["case_id"] for c in queue["cases"]] == [case_id]

    assert (await dw.act("h-clinic", case_id, "start"))[1]["state"] == "in_progress"
    status, holder = await dw.get("h-clinic", f"/v1/cases/{case_id}/holder")  # audited follow-up read
    assert (status, holder["holder_ref"]) == (200, "holder-red")
    assert (await dw.act("h-clinic", case_id, "feed_back", note="holder traced and isolated"))[1]["state"] == "checking"
    status, closed = await dw.act("sup-d1", case_id, "check", result="pass")
    assert (status, closed["state"], closed["closure_kind"]) == (200, "closed", "normal")
    assert [e["action"] for e in closed["history"]] == [
        "report", "accept", "file", "dispatch", "start", "feed_back", "request_check", "close"]  # fmt: skip
    assert closed["history"][0]["actor_id"] == "dev-a"
    _, queue = await dw.get("sup-d1", "/v1/cases")
    assert queue["cases"] == []
