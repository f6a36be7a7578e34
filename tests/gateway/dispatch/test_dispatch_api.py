"""The case API over HTTP on the real Redis: routing, the HTTP mapping of legal and illegal transitions, scope,
queues, concurrency, the audited holder read and escalation with a controllable clock."""

from __future__ import annotations

import asyncio

import pytest

from gateway.dispatch.worker import sweep_open_cases
from gateway.keyspace import AUDIT_STREAM
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import T0, DispatchWorld

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw


@pytest.mark.parametrize(
    ("event_class", "jurisdiction", "department", "level"),
    [
        ("status_red", "city/d1/s1/g1/c1", "s1-clinic", "community"),  # longest prefix wins
        ("status_yellow", "city/d1/s2", "d1-cdc", "street"),  # district rule
        ("status_red", "city/d2/s9/g1/c1", "city-cdc", "community"),  # city default
        ("forged_code", "city/d1/s1/g1/c1", "city-police", "community"),  # class without a local rule
        ("status_red", "city/d3", "city-cdc", "district"),
    ],
)
async def test_scan_events_are_routed_and_dispatched_automatically(
    dw: DispatchWorld, event_class: str, jurisdiction: str, department: str, level: str
) -> None:
    case_id = await dw.event(event_class, jurisdiction=jurisdiction)
    assert await dw.pump() == {"created": 1}
    case = await dw.case(case_id)
    assert (case.department, case.state.value, case.level.value) == (department, "dispatched", level)
    assert [e.action.value for e in case.history] == ["report", "accept", "file", "dispatch"]
    assert case.urgent is True


async def test_the_closed_loop_through_the_api(dw: DispatchWorld) -> None:
    case_id = await dw.event()
    await dw.pump()
    assert (await dw.act("h-clinic", case_id, "start"))[1]["state"] == "in_progress"
    status, body = await dw.act("h-clinic", case_id, "feed_back", note="traced, isolated at home")
    assert (status, body["state"]) == (200, "checking")  # feedback goes to checking at once
    status, body = await dw.act("sup-d1", case_id, "check", result="fail")
    assert (status, body["error"]) == (422, "reason_required")
    status, body = await dw.act("sup-d1", case_id, "check", result="fail", note="household not covered")
    assert (status, body["state"], body["department"], body["rework_count"]) == (200, "dispatched", "s1-clinic", 1)
    await dw.act("h-clinic", case_id, "start")
    await dw.act("h-clinic", case_id, "feed_back", note="household traced")
    status, body = await dw.act("sup-d1", case_id, "check", result="pass")
    assert (status, body["state"], body["closure_kind"]) == (200, "closed", "normal")
    actions = [e["action"] for e in body["history"]]
    assert actions == [
        "report",
        "accept",
        "file",
        "dispatch",
        "start",
        "feed_back",
        "request_check",
        "rework",
        "start",
        "feed_back",
        "request_check",
        "close",
    ]
    assert body["history"][5]["note"] == "traced, isolated at home"
    status, queue = await dw.get("sup-d1", "/v1/cases")
    assert case_id not in [c["case_id"] for c in queue["cases"]]  # closed cases leave the queue


@pytest.mark.parametrize(
    ("who", "action", "body", "status", "code"),
    [
        ("h-clinic", "feed_back", {}, 409, "illegal_transition"),  # dispatched: must start first
        ("h-clinic", "close", {}, 409, "illegal_transition"),
        ("h-clinic", "postpone", {}, 409, "illegal_transition"),
        ("dispatcher", "start", {}, 403, "not_permitted_role"),  # only the department opens the order
        ("sup-d1", "return", {"note": "x"}, 403, "not_permitted_role"),
        ("h-clinic", "return", {}, 422, "reason_required"),
        ("h-clinic", "return", {"note": "x" * 1001}, 422, "note_too_long"),
        ("h-clinic", "teleport", {}, 422, "unknown_action"),
        ("dispatcher", "dispatch", {"department": "no-such-dept"}, 422, "invalid_argument"),
        ("h-clinic", "start", {"closure_kind": "normal"}, 422, "closure_kind_set_by_rules"),  # issue 15
    ],
)
async def test_refused_transitions_map_to_stable_codes_and_change_nothing(
    dw: DispatchWorld, who: str, action: str, body: dict[str, str], status: int, code: str
) -> None:
    case_id = await dw.event()
    await dw.pump()
    before = await dw.case(case_id)
    got_status, got = await dw.act(who, case_id, action, **body)
    assert (got_status, got["error"]) == (status, code)
    assert await dw.case(case_id) == before


async def test_return_then_redispatch_to_another_department(dw: DispatchWorld) -> None:
    case_id = await dw.event()
    await dw.pump()
    status, body = await dw.act("h-clinic", case_id, "return", note="not a clinic matter")
    assert (status, body["state"], body["return_count"]) == (200, "returned", 1)
    assert (await dw.act("sup-d1", case_id, "dispatch"))[1]["error"] == "not_permitted_role"
    status, body = await dw.act("dispatcher", case_id, "dispatch", department="d1-cdc")
    assert (status, body["state"], body["department"]) == (200, "dispatched", "d1-cdc")
    # The clinic no longer sees it; the new department does.
    assert (await dw.get("h-clinic", f"/v1/cases/{case_id}"))[0] == 404
    assert (await dw.act("h-d1cdc", case_id, "start"))[0] == 200


async def test_one_extension_request_and_one_grant(dw: DispatchWorld) -> None:
    case_id = await dw.event()
    await dw.pump()
    status, body = await dw.act("h-clinic", case_id, "request_extension", note="lab results pending")
    assert (status, body["error"]) == (409, "illegal_transition")  # only while handling
    await dw.act("h-clinic", case_id, "start")
    status, body = await dw.act("h-clinic", case_id, "request_extension", note="lab results pending")
    assert (status, body["extension_request"]["note"]) == (202, "lab results pending")
    assert (await dw.act("h-clinic", case_id, "request_extension"))[1]["error"] == "extension_already_requested"
    assert (await dw.act("sup-d1", case_id, "request_extension"))[1]["error"] == "not_permitted_role"
    _, case = await dw.get("dispatcher", f"/v1/cases/{case_id}")
    assert case["extension_request"]["by"] == "h-clinic"
    status, body = await dw.act("dispatcher", case_id, "postpone")
    assert (status, body["state"], body["extension_used"]) == (200, "postponed", True)
    assert (await dw.act("sup-d1", case_id, "postpone"))[1]["error"] == "illegal_transition"
    await dw.act("h-clinic", case_id, "feed_back", note="done")
    assert (await dw.act("sup-d1", case_id, "check", result="fail", note="again"))[0] == 200
    await dw.act("h-clinic", case_id, "start")
    status, body = await dw.act("sup-d1", case_id, "postpone")
    assert (status, body["error"]) == (409, "extension_already_used")


async def test_a_hung_case_is_closed_special_by_a_supervisor_only(dw: DispatchWorld) -> None:
    """Issue 15: the special closure is the supervisor's, and its kind follows from the rules."""
    case_id = await dw.event()
    await dw.pump()
    await dw.act("h-clinic", case_id, "start")
    assert (await dw.act("sup-d1", case_id, "hang"))[1]["error"] == "reason_required"
    assert (await dw.act("sup-d1", case_id, "hang", note="holder left the city"))[1]["state"] == "hung"
    status, body = await dw.act("dispatcher", case_id, "close")
    assert (status, body["error"]) == (403, "supervisor_required")
    status, body = await dw.act("sup-d1", case_id, "close", closure_kind="special")
    assert (status, body["error"]) == (422, "closure_kind_set_by_rules")
    status, body = await dw.act("sup-d1", case_id, "close")
    assert (status, body["state"], body["closure_kind"]) == (200, "closed", "special")
    assert (await dw.act("sup-d1", case_id, "close"))[0] == 409


async def test_out_of_scope_cases_answer_exactly_like_missing_ones(dw: DispatchWorld) -> None:
    case_id = await dw.event()
    await dw.pump()
    missing = "c" + "0" * 20
    for who in ("h-d1cdc", "disp-d2", "sup-d2"):
        for path in (f"/v1/cases/{case_id}", f"/v1/cases/{missing}", "/v1/cases/not-an-id"):
            assert await dw.get(who, path) == (404, {"error": "not_found", "detail": "no such case"})
        assert await dw.act(who, case_id, "start") == await dw.act(who, missing, "start")
        assert (await dw.act(who, case_id, "start"))[0] == 404
    for who in ("sm-a", "dev-a", "feeder"):
        assert (await dw.get(who, f"/v1/cases/{case_id}"))[0] == 403  # role refused before any lookup
    assert (await dw.get("h-clinic", f"/v1/cases/{case_id}"))[0] == 200
    assert (await dw.get("dispatcher", f"/v1/cases/{case_id}"))[0] == 200


async def test_queues_are_scoped_filtered_and_bounded(dw: DispatchWorld) -> None:
    d1 = [await dw.event() for _ in range(3)]
    d2 = await dw.event(place="place-z", jurisdiction="city/d2/s9/g1/c1")
    await dw.pump()
    await dw.act("h-clinic", d1[0], "start")

    async def ids(who: str, query: str = "") -> list[str]:
        status, body = await dw.get(who, "/v1/cases" + query)
        assert status == 200
        return [c["case_id"] for c in body["cases"]]

    assert sorted(await ids("dispatcher")) == sorted(d1)
    assert await ids("disp-d2") == [d2]
    assert sorted(await ids("h-clinic")) == sorted(d1)
    assert await ids("h-citycdc") == [d2]
    assert await ids("h-clinic", "?state=in_progress") == [d1[0]]
    assert sorted(await ids("h-clinic", "?state=dispatched")) == sorted(d1[1:])
    assert await ids("sup-d1", "?overdue=true") == []
    for query in ("?limit=0", "?limit=101", "?state=flying", "?cursor=x"):
        assert (await dw.get("sup-d1", "/v1/cases" + query))[0] == 400
    _, body = await dw.get("sup-d1", "/v1/cases")
    assert set(body["cases"][0]) >= {"case_id", "state", "department", "overdue", "stage_deadline"}
    assert "history" not in body["cases"][0]


async def test_concurrent_transitions_do_not_lose_updates(dw: DispatchWorld) -> None:
    case_id = await dw.event()
    await dw.pump()
    results = await asyncio.gather(*(dw.act("h-clinic", case_id, "start") for _ in range(8)))
    assert sorted(status for status, _ in results) == [200] + [409] * 7
    case = await dw.case(case_id)
    assert [e.action.value for e in case.history].count("start") == 1
    # A sweep racing a transition: both land, in some order, on one history.
    dw.clock.advance(hours=3)
    _, (status, _) = await asyncio.gather(
        sweep_open_cases(dw.runtime.store, now=dw.clock.now), dw.act("h-clinic", case_id, "feed_back", note="ok")
    )
    assert status == 200
    case = await dw.case(case_id)
    assert case.state.value == "checking"
    assert "feed_back" in [e.action.value for e in case.history]
    assert len({(e.at, e.action) for e in case.history}) == len(case.history)


async def test_holder_reference_read_is_audited_and_scoped(dw: DispatchWorld) -> None:
    case_id = await dw.event(holder="holder-77")
    no_holder = await dw.event("device_fault", holder=None)
    await dw.pump()

    async def reads() -> list[dict[str, str]]:
        entries = [{k.decode(): v.decode() for k, v in f.items()} for _, f in await dw.world.redis.xrange(AUDIT_STREAM)]
        return [e for e in entries if e.get("action") == "read_holder_ref"]

    assert await reads() == []
    status, body = await dw.get("h-clinic", f"/v1/cases/{case_id}/holder")
    assert (status, body) == (200, {"case_id": case_id, "holder_ref": "holder-77"})
    (audit,) = await reads()
    assert (audit["who"], audit["case_ref"], audit["purpose"]) == ("h-clinic", case_id, "epidemic_prevention")
    assert audit["subject"] == dw.runtime.subjects.of("holder-77")
    assert (await dw.get("sup-d1", f"/v1/cases/{case_id}/holder"))[0] == 200
    assert (await dw.get("h-d1cdc", f"/v1/cases/{case_id}/holder"))[0] == 404
    assert (await dw.get("sup-d2", f"/v1/cases/{case_id}/holder"))[0] == 404
    assert (await dw.get("dispatcher", f"/v1/cases/{case_id}/holder"))[0] == 403
    status, body = await dw.get("h-citycdc", f"/v1/cases/{no_holder}/holder")
    assert status in (404,)
    assert len(await reads()) == 2  # refusals read nothing and audit nothing
    # The holder reference is never stored in clear, nor in the case or its history.
    for key in [k async for k in dw.world.redis.scan_iter(match="pg:case:*")]:
        kind = (await dw.world.redis.type(key)).decode()
        dump = str(await dw.world.redis.hgetall(key) if kind == "hash" else await dw.world.redis.xrange(key))
        assert "holder-77" not in dump


async def test_overdue_at_100_percent_and_escalation_at_2x_keep_the_case_id(dw: DispatchWorld) -> None:
    case_id = await dw.event()
    await dw.pump()  # dispatched at T0: the department has 1 h to open it
    store = dw.runtime.store
    report = await sweep_open_cases(store, now=T0.replace(minute=59))
    assert (report.flagged, report.escalated) == (0, 0)
    report = await sweep_open_cases(store, now=T0.replace(hour=9))
    assert (report.flagged, report.escalated) == (1, 0)
    dw.clock.advance(hours=1, minutes=30)
    status, queue = await dw.get("sup-d1", "/v1/cases?overdue=true")
    assert [c["case_id"] for c in queue["cases"]] == [case_id]
    report = await sweep_open_cases(store, now=T0.replace(hour=10))
    assert (report.flagged, report.escalated) == (0, 1)
    assert await sweep_open_cases(store, now=T0.replace(hour=10)) == type(report)(0, 0, 0)  # idempotent: not due
    _, body = await dw.get("dispatcher", f"/v1/cases/{case_id}")
    assert (body["case_id"], body["level"], body["escalation_count"], body["overdue"]) == (case_id, "street", 1, True)
    report = await sweep_open_cases(store, now=T0.replace(hour=16))  # 8x: street -> district -> city, late sweep
    assert report.escalated == 2
    case = await dw.case(case_id)
    assert (case.level.value, case.escalation_count) == ("city", 3)
    assert [e.action.value for e in case.history][-4:] == ["flag_overdue", "escalate", "escalate", "escalate"]
    # Starting the order resets the overdue flag; the level stays with the centre that took it.
    status, body = await dw.act("h-clinic", case_id, "start")
    assert (status, body["overdue"], body["level"]) == (200, False, "city")
