"""Issue 15 over HTTP on the real Redis: supervision that can't be bypassed, the ``reported`` clock, escalation
that moves authority, closure kinds by rule, and honest time for reports and evaluation windows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway.dispatch.worker import sweep_open_cases
from gateway.principals import Principal, Role
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import T0, DispatchWorld

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw

# The fixtures' place-a is at city/d1/s1/g1/c1: a community centre over it, then street s1, district d1, city.
CENTRES = [
    Principal("disp-c1", Role.DISPATCHER, jurisdiction="city/d1/s1/g1/c1"),
    Principal("disp-s1", Role.DISPATCHER, jurisdiction="city/d1/s1"),
    Principal("sup-s1", Role.SUPERVISOR, jurisdiction="city/d1/s1"),
    Principal("disp-city", Role.DISPATCHER, jurisdiction="city"),
]


async def _centres(dw: DispatchWorld) -> None:
    registry = Registry(dw.world.redis)
    for principal in CENTRES:
        dw.world.tokens[principal.principal_id] = await create_principal(registry, principal)


async def _report(dw: DispatchWorld, *, time: Any = None, **body: Any) -> tuple[int, dict[str, Any]]:
    doc = {"event_class": "forced_entry", "place": "place-a", "time": (time or dw.clock.now).isoformat(), **body}
    resp = await dw.world.client.post("/v1/reports", json=doc, headers=dw.world.auth("sm-a"))
    return resp.status, await resp.json()


async def _checking(dw: DispatchWorld) -> str:
    case_id = await dw.event()
    await dw.pump()
    await dw.act("h-clinic", case_id, "start")
    status, body = await dw.act("h-clinic", case_id, "feed_back", note="traced")
    assert (status, body["state"]) == (200, "checking")
    return case_id


async def test_a_dispatchers_check_pass_is_refused_and_a_supervisors_closes_normal(dw: DispatchWorld) -> None:
    """Issue 15 "Supervision": a dispatcher's ``check pass`` used to close the case without a supervisor."""
    case_id = await _checking(dw)
    before = await dw.case(case_id)
    for result, note in (("pass", None), ("fail", "not good enough")):
        status, body = await dw.act("dispatcher", case_id, "check", result=result, note=note)
        assert (status, body["error"]) == (403, "supervisor_required")
        assert (await dw.act("dispatcher", case_id, "close"))[1]["error"] == "supervisor_required"
    assert await dw.case(case_id) == before
    status, body = await dw.act("sup-d2", case_id, "check", result="pass")  # another district's supervisor
    assert status == 404
    status, body = await dw.act("sup-d1", case_id, "check", result="pass")
    assert (status, body["state"], body["closure_kind"]) == (200, "closed", "normal")


async def test_an_explicit_closure_kind_is_refused_even_from_a_supervisor(dw: DispatchWorld) -> None:
    case_id = await _checking(dw)
    before = await dw.case(case_id)
    for kind in ("normal", "special", "bogus", None):
        status, body = await dw.act("sup-d1", case_id, "check", result="pass", closure_kind=kind)
        assert (status, body["error"]) == (422, "closure_kind_set_by_rules")
    assert await dw.case(case_id) == before


async def test_a_late_check_closes_overdue_by_the_rules(dw: DispatchWorld) -> None:
    case_id = await _checking(dw)
    dw.clock.advance(hours=1, seconds=1)  # the checking clock is 1 h
    status, body = await dw.act("sup-d1", case_id, "check", result="pass")
    assert (status, body["closure_kind"]) == (200, "overdue")


async def test_a_report_found_false_after_acceptance_is_cancelled_as_error(dw: DispatchWorld) -> None:
    _, report = await _report(dw)
    await dw.pump()
    case_id = report["case_id"]
    assert (await dw.act("dispatcher", case_id, "accept"))[0] == 200
    assert (await dw.act("dispatcher", case_id, "file"))[0] == 200
    assert (await dw.act("dispatcher", case_id, "cancel"))[1]["error"] == "reason_required"
    status, body = await dw.act("dispatcher", case_id, "cancel", note="camera shows the door was never forced")
    assert (status, body["state"], body["closure_kind"]) == (200, "cancelled", "error")
    span = f"from={T0.isoformat()}&to={(T0 + timedelta(days=1)).isoformat()}".replace("+00:00", "Z")
    _, metrics = await dw.get("sup-d1", f"/v1/dispatch/metrics?{span}")
    assert metrics["overall"]["closure_kinds"] == {"normal": 0, "overdue": 0, "special": 0, "error": 1}


async def test_a_reported_case_is_swept_past_2x_and_4x_and_authority_moves_up(dw: DispatchWorld) -> None:
    """Issue 15: ``reported`` has a clock (forced_entry is urgent: 10 min); escalation at 2x and 4x moves the
    decision from the community centre to the street, then to the district; the lower centres still read it."""
    await _centres(dw)
    _, report = await _report(dw)
    await dw.pump()
    case_id = report["case_id"]
    _, case = await dw.get("disp-c1", f"/v1/cases/{case_id}")
    assert (case["state"], case["level"], case["stage_deadline"]) == (
        "reported", "community", (T0 + timedelta(minutes=10)).isoformat())  # fmt: skip
    store = dw.runtime.store
    report_1 = await sweep_open_cases(store, now=T0 + timedelta(minutes=10))
    assert (report_1.flagged, report_1.escalated) == (1, 0)
    assert (await sweep_open_cases(store, now=T0 + timedelta(minutes=20))).escalated == 1  # 2x
    dw.clock.now = T0 + timedelta(minutes=21)
    assert (await dw.case(case_id)).level.value == "street"
    # The community centre reads it but no longer decides; the street centre does.
    before = await dw.case(case_id)
    assert (await dw.get("disp-c1", f"/v1/cases/{case_id}"))[0] == 200
    assert await dw.act("disp-c1", case_id, "accept") == (
        403, {"error": "escalated_above_you", "detail": "the case is held by the street centre, above yours"})
    assert await dw.case(case_id) == before
    assert (await sweep_open_cases(store, now=T0 + timedelta(minutes=40))).escalated == 1  # 4x
    dw.clock.now = T0 + timedelta(minutes=41)
    case = await dw.case(case_id)
    assert (case.level.value, case.escalation_count) == ("district", 2)
    assert [e.action.value for e in case.history] == ["report", "flag_overdue", "escalate", "escalate"]
    # Now the street centre is below the holder too; the district (and the city above it) decide.
    for who in ("disp-c1", "disp-s1"):
        assert (await dw.get(who, f"/v1/cases/{case_id}"))[0] == 200
        assert (await dw.act(who, case_id, "accept"))[1]["error"] == "escalated_above_you"
    status, body = await dw.act("dispatcher", case_id, "accept")  # disp-1: city/d1, the district centre
    assert (status, body["state"], body["level"]) == (200, "accepted", "district")
    assert (await dw.act("disp-city", case_id, "file"))[1]["state"] == "filed"
    # The late verification is on record: the accept entry left a stage whose deadline had passed.
    accept = body["history"][-1]
    assert accept["action"] == "accept" and accept["at"] > accept["deadline"]


async def test_a_street_supervisor_cannot_grant_an_extension_on_a_case_the_district_holds(dw: DispatchWorld) -> None:
    """The issue's defect: a street dispatcher granted an extension on a case the district held."""
    await _centres(dw)
    case_id = await dw.event()  # status_red at place-a: dispatched automatically to s1-clinic
    await dw.pump()
    await dw.act("h-clinic", case_id, "start")
    await sweep_open_cases(dw.runtime.store, now=T0 + timedelta(hours=8))  # 4x the 2 h handling budget
    assert (await dw.case(case_id)).level.value == "district"
    for who in ("disp-s1", "sup-s1"):
        assert (await dw.act(who, case_id, "postpone"))[1]["error"] == "escalated_above_you"
    assert (await dw.act("sup-d1", case_id, "postpone"))[1]["state"] == "postponed"


async def test_a_report_older_than_24_hours_or_from_the_future_is_refused(dw: DispatchWorld) -> None:
    for time in (T0 - timedelta(hours=25), T0 + timedelta(minutes=2)):
        assert await _report(dw, time=time) == (
            422, {"error": "invalid_report_time", "detail": "time is in the future or too old to report"})
    assert (await _report(dw, time=T0 - timedelta(hours=23)))[0] == 202


async def test_a_report_backdated_into_a_closed_window_leaves_its_metrics_unchanged(dw: DispatchWorld) -> None:
    """Issue 15: yesterday's figures, read today, stay what they were after a report about yesterday arrives;
    the case dates from its intake and counts today."""
    yesterday = f"from={(T0 - timedelta(days=1)).isoformat()}&to={T0.isoformat()}".replace("+00:00", "Z")
    today = f"from={T0.isoformat()}&to={(T0 + timedelta(days=1)).isoformat()}".replace("+00:00", "Z")
    _, before = await dw.get("sup-d1", f"/v1/dispatch/metrics?{yesterday}")
    status, report = await _report(dw, time=T0 - timedelta(hours=20))
    assert status == 202
    await dw.pump()
    case = await dw.case(report["case_id"])
    assert (case.created_at, case.occurred_at) == (T0, T0 - timedelta(hours=20))
    assert case.stage_deadline == T0 + timedelta(minutes=10)  # the clock starts at intake, not 20 h ago
    _, after = await dw.get("sup-d1", f"/v1/dispatch/metrics?{yesterday}")
    assert after == before and after["overall"]["cases"] == 0
    _, now = await dw.get("sup-d1", f"/v1/dispatch/metrics?{today}")
    assert now["overall"]["cases"] == 1


async def test_a_worker_that_was_down_dates_the_case_from_the_intake_and_its_wait_counts(dw: DispatchWorld) -> None:
    status, report = await _report(dw, time=T0 - timedelta(minutes=5))
    assert status == 202
    dw.clock.advance(minutes=30)  # the consumer comes back half an hour later
    await dw.pump()
    case = await dw.case(report["case_id"])
    assert case.created_at == T0 and case.stage_deadline == T0 + timedelta(minutes=10)


async def test_a_lower_centre_cannot_merge_a_case_escalated_above_it(dw: DispatchWorld) -> None:
    """A merge decides on both cases (one ends cancelled, the other takes its occurrences): like every action, it is
    refused to a centre below the one holding either case, and the superior centre may merge."""
    await _centres(dw)
    _, first = await _report(dw, note="door forced at the east gate")
    _, second = await _report(dw, note="east gate again, same door")
    await dw.pump()
    held, other = first["case_id"], second["case_id"]
    dw.clock.advance(minutes=1)
    await dw.act("disp-c1", other, "accept")  # the other case leaves `reported` and its clock: only `held` escalates
    await sweep_open_cases(dw.runtime.store, now=T0 + timedelta(minutes=20))  # 2x the 10 min: the street holds it
    dw.clock.now = T0 + timedelta(minutes=21)
    assert ((await dw.case(held)).level.value, (await dw.case(other)).level.value) == ("street", "community")
    before = (await dw.case(held), await dw.case(other))
    for absorbed, into in ((held, other), (other, held)):
        assert await dw.act("disp-c1", absorbed, "merge", into=into) == (
            403, {"error": "escalated_above_you", "detail": "the case is held by the street centre, above yours"})
    assert (await dw.case(held), await dw.case(other)) == before
    status, body = await dw.act("disp-s1", other, "merge", into=held)
    assert (status, body["state"], body["closure_kind"]) == (200, "cancelled", "error")


async def test_a_report_time_at_the_ends_of_the_calendar_is_refused_not_a_500(dw: DispatchWorld) -> None:
    """Year 1 east of UTC and year 9999 west of it overflow when turned into UTC: bad input, never a 5xx."""
    for time in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-03-02T08:00:00+25:00"):
        doc = {"event_class": "forced_entry", "place": "place-a", "time": time}
        resp = await dw.world.client.post("/v1/reports", json=doc, headers=dw.world.auth("sm-a"))
        assert (resp.status, await resp.json()) == (
            422, {"error": "invalid_report_time", "detail": "time must be an ISO 8601 instant with offset"})
