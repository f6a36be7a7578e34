"""Site managers' reports and the dispatch evaluation over HTTP on the real Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gateway.keyspace import DISPATCH_INTAKE
from policy.casework import Action, Actor, Role, apply_transition, new_case
from policy.deadlines import load_default_deadline_table
from policy.routing import EventClass
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import T0, DispatchWorld

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw


async def _report(dw: DispatchWorld, who: str = "sm-a", **body: Any) -> tuple[int, dict[str, Any]]:
    doc = {"event_class": "forced_entry", "place": "place-a", "time": (T0 - timedelta(minutes=3)).isoformat(), **body}
    resp = await dw.world.client.post("/v1/reports", json=doc, headers=dw.world.auth(who))
    assert resp.content_type == "application/json"
    return resp.status, await resp.json()


async def test_a_report_becomes_a_case_that_a_dispatcher_accepts_files_and_dispatches(dw: DispatchWorld) -> None:
    note = "<script>alert(1)</script> pushed past the guard & ran"
    status, body = await _report(dw, note=note)
    assert status == 202
    case_id = body["case_id"]
    assert await dw.pump() == {"created": 1}
    status, case = await dw.get("dispatcher", f"/v1/cases/{case_id}")
    assert (status, case["state"], case["department"], case["urgent"]) == (200, "reported", "d1-police", True)
    assert case["history"][0]["note"] == note  # stored and returned as written, in JSON only
    assert case["history"][0]["actor_id"] == "sm-a"
    # Issue 15: the case dates from the intake (the gateway's clock), the manager's time is kept beside it.
    assert (case["created_at"], case["occurred_at"]) == (T0.isoformat(), (T0 - timedelta(minutes=3)).isoformat())
    for action, state in (("accept", "accepted"), ("file", "filed"), ("dispatch", "dispatched")):
        status, case = await dw.act("dispatcher", case_id, action)
        assert (status, case["state"]) == (200, state)
    roles = [e["role"] for e in case["history"]]
    assert roles == ["source", "intake_operator", "intake_operator", "shift_lead"]
    assert (await dw.act("h-police", case_id, "start"))[0] == 200


async def test_a_dispatcher_cancels_an_invalid_report_with_a_reason(dw: DispatchWorld) -> None:
    _, body = await _report(dw, event_class="crowding")
    await dw.pump()
    assert (await dw.act("dispatcher", body["case_id"], "cancel"))[1]["error"] == "reason_required"
    status, case = await dw.act("dispatcher", body["case_id"], "cancel", note="duplicate of an earlier report")
    assert (status, case["state"], case["urgent"]) == (200, "cancelled", False)


async def test_places_out_of_scope_and_unknown_places_get_the_same_403(dw: DispatchWorld) -> None:
    other = await _report(dw, place="place-b")  # registered, not the manager's
    ghost = await _report(dw, place="place-nowhere")  # does not exist
    in_scope_unregistered = await _report(dw, who="sm-z", place="place-ghost")
    assert other == ghost == in_scope_unregistered == (403, {"error": "forbidden", "detail": "place not in scope"})
    assert (await _report(dw, who="sm-z", place="place-z"))[0] == 202
    resp = await dw.world.client.post("/v1/reports", json={}, headers=dw.world.auth("dev-a"))
    assert resp.status == 403  # a device is no site manager
    assert await dw.world.redis.xlen(DISPATCH_INTAKE) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"event_class": "status_red"}, 422, "unknown_event_class"),  # scan classes are not reportable
        ({"event_class": "fire"}, 422, "unknown_event_class"),
        ({"note": "x" * 1001}, 422, "note_too_long"),
        ({"time": (T0 + timedelta(minutes=10)).isoformat()}, 422, "invalid_report_time"),
        ({"time": (T0 - timedelta(days=8)).isoformat()}, 422, "invalid_report_time"),
        ({"time": (T0 - timedelta(hours=25)).isoformat()}, 422, "invalid_report_time"),  # issue 15: last 24 h only
        ({"time": (T0 + timedelta(minutes=2)).isoformat()}, 422, "invalid_report_time"),  # not in the future
        ({"time": "2026-03-02T07:00:00"}, 422, "invalid_report_time"),  # no offset
        ({"time": 1700000000}, 400, "invalid_request"),
        ({"note": 5}, 400, "invalid_request"),
    ],
)
async def test_bad_reports_are_refused_with_stable_codes(
    dw: DispatchWorld, body: dict[str, Any], status: int, code: str
) -> None:
    assert (await _report(dw, **body))[0:1] == (status,)
    assert (await _report(dw, **body))[1]["error"] == code
    assert await dw.world.redis.xlen(DISPATCH_INTAKE) == 0


async def _seed(dw: DispatchWorld) -> None:
    """Four cases with hand-made histories (times relative to T0), written through the store."""
    deadlines = dw.runtime.deadlines
    sys_ = Actor("w", Role.SYSTEM)

    def step(case: Any, action: Action, minutes: float, actor: Actor, **kw: Any) -> Any:
        return apply_transition(case, action, actor=actor, now=T0 + timedelta(minutes=minutes), deadlines=deadlines,
                                **kw)  # fmt: skip

    def opened(cid: str, department: str, jurisdiction: str) -> Any:
        case = new_case(case_id=cid, event_class=EventClass.STATUS_RED, place_id="place-a",
                        jurisdiction=tuple(jurisdiction.split("/")), department=department,
                        actor=Actor("dev-a", Role.SOURCE), now=T0, deadlines=load_default_deadline_table())  # fmt: skip
        for action in (Action.ACCEPT, Action.FILE, Action.DISPATCH):
            case = step(case, action, 1, sys_)
        return case

    clinic = Actor("h", Role.DEPARTMENT, "s1-clinic")
    sup = Actor("s", Role.SUPERVISOR)
    # A: handled in 60 min (on time: 2 h budget), checked, closed normal.
    a = opened("c" + "a" * 20, "s1-clinic", "city/d1/s1/g1/c1")
    for action, t, who, kw in ((Action.START, 10, clinic, {}), (Action.FEED_BACK, 61, clinic, {}),
                               (Action.REQUEST_CHECK, 62, sup, {}),
                               (Action.CLOSE, 70, sup, {})):  # fmt: skip
        a = step(a, action, t, who, **kw)
    # B: returned once, re-dispatched, handled late (3 h after start), reworked once, still open.
    b = opened("c" + "b" * 20, "s1-clinic", "city/d1/s1/g1/c1")
    b = step(b, Action.RETURN, 5, clinic, note="not ours")
    b = step(b, Action.DISPATCH, 8, Actor("d", Role.SHIFT_LEAD))
    b = step(b, Action.START, 9, clinic)
    b = step(b, Action.FEED_BACK, 9 + 180, clinic)
    b = step(b, Action.REQUEST_CHECK, 190, sup)
    b = step(b, Action.REWORK, 200, sup, note="incomplete")
    # C: in the other district, dispatched and never touched.
    c = opened("c" + "c" * 20, "city-cdc", "city/d2/s9/g1/c1")
    # D: created after the range: not counted.
    d = new_case(case_id="c" + "d" * 20, event_class=EventClass.STATUS_RED, place_id="place-a",
                 jurisdiction=("city", "d1"), department="d1-cdc", actor=Actor("x", Role.SOURCE),
                 now=T0 + timedelta(days=2), deadlines=load_default_deadline_table())  # fmt: skip
    for case in (a, b, c, d):
        assert await dw.runtime.store.write(None, case)


async def test_metrics_on_a_seeded_history_checked_by_hand(dw: DispatchWorld) -> None:
    await _seed(dw)
    span = f"from={T0.isoformat()}&to={(T0 + timedelta(days=1)).isoformat()}".replace("+00:00", "Z")
    query = f"/v1/dispatch/metrics?{span}&level=district"
    status, body = await dw.get("sup-d1", query)
    assert status == 200
    overall = body["overall"]
    # In scope city/d1: A and B. filed 2 (both on time), dispatches 3 (A, B, B again), returns 1,
    # handled 2: A on time (feed back 51 min after start, budget 2 h), B late (180 min after start),
    # closed 1 (A, every entry on time), checked 2, reworked 1 (B),
    # handling time: A 61-1 = 60 min, B 189-1 = 188 min -> mean 124 min.
    assert overall["cases"] == 2 and overall["filed"] == 2 and overall["handled"] == 2 and overall["closed"] == 1
    assert overall["on_time_filing_rate"] == 1.0
    assert overall["dispatch_accuracy"] == pytest.approx(1 - 1 / 3)
    assert overall["handling_rate"] == 1.0
    assert overall["on_time_handling_rate"] == 0.5
    assert overall["closure_rate"] == 0.5
    assert overall["on_time_closure_rate"] == 0.5
    assert overall["rework_rate"] == 0.5
    assert overall["mean_handling_time_s"] == pytest.approx(124 * 60)
    assert overall["closure_kinds"] == {"normal": 1, "overdue": 0, "special": 0, "error": 0}  # set by the rules
    assert list(body["by_department"]) == ["s1-clinic"]
    assert list(body["by_jurisdiction"]) == ["city/d1"]
    status, other = await dw.get("disp-d2", query)
    assert (status, other["overall"]["cases"], list(other["by_department"])) == (200, 1, ["city-cdc"])
    assert other["overall"]["handling_rate"] == 0.0 and other["overall"]["rework_rate"] is None


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [("?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", 422, "invalid_range"),
     ("?from=2026-01-01T00:00:00Z&to=2026-06-01T00:00:00Z", 422, "invalid_range"),
     # Issue 15: a missing or malformed value is the request's fault, 400 naming it (test_query_params.py).
     ("", 400, "invalid_request"), ("?from=2026-03-02T00:00:00Z", 400, "invalid_request"),
     ("?from=x&to=y", 400, "invalid_request"),
     ("?from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z&level=planet", 400, "invalid_request")],
)  # fmt: skip
async def test_metrics_ranges_are_bounded(dw: DispatchWorld, query: str, status: int, code: str) -> None:
    got_status, body = await dw.get("sup-d1", "/v1/dispatch/metrics" + query)
    assert (got_status, body["error"]) == (status, code)


async def test_metrics_are_for_supervisors_and_dispatchers_only(dw: DispatchWorld) -> None:
    for who in ("h-clinic", "sm-a", "dev-a"):
        assert (await dw.get(who, "/v1/dispatch/metrics?from=2026-03-02T00:00:00Z&to=2026-03-03T00:00:00Z"))[0] == 403
