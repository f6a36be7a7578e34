"""Issue 15 point 9: a small city walked end to end through the HTTP API of a live gateway on the suite's Redis.

Two districts (d1, d2), three departments (the city's operations office serving the whole city, and each
district's police), the people around a case at the level they staff: site managers, dispatchers of a community,
a street, both districts and the city, each department's handlers, supervisors of the street, both districts and
the city. Principals pass the check ``placegate principals add`` runs (``check_scope``) before they are stored.

The clock is the gateway's own (``DispatchRuntime.clock``), moved by hand; the sweeper is called at that clock, so
no deadline is ever waited for. Every answer is asserted (status and the fields that matter), and the evaluation
afterwards is asserted figure by figure against numbers derived by hand from the timeline below (minutes after
``T0``):

- case A (forced entry at Hospital A, d1): report 0, the manager's photo attached 1, accept 3, file 5, dispatch to
  d1 police 8, return 20, reassign to the city's operations office 25 (whose handler downloads the photo), start 30,
  extension asked 60 and granted 65, feed back 120, check failed 130, rework started 140, feed back 180, check
  passed 190: closed ``normal``; the manager follows it in their list of reports (progress only);
- case B (suspected forgery at Hospital A): report 200, never accepted; swept at 210 (overdue), 220 (2x: street),
  240 (4x: district); the community and street centres read it and no longer decide; the district accepts 242
  (late), files 243, dispatches 244; handled 250-280; check passed 290 by the district: closed ``overdue``;
- cases C and D (device fault at Market M, d2): two note-less reports at 300 and 301 fold into C; a report with a
  note at 302 is D; d2's dispatcher merges D into C at 305 (D cancelled: ``error``); C accepted 306, filed 307,
  dispatched 308, started 310, hung 320, closed by d2's supervisor 325: ``special``;
- case E (other, at a pier outside the routing table's city): report 330 lands in the city's unrouted queue, the
  city dispatcher routes it by hand at 335, accept 336, file 337, dispatch 338, start 340, feed back 400, check
  passed 410 by the city supervisor: closed ``normal``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.dispatch.worker import sweep_open_cases
from gateway.principals import Principal, Role
from gateway.trust.checks import RegistryInputError, check_scope
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Place, Registry
from tests.evidence_files import png
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import T0, DispatchWorld

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world

CITY_ROUTING = """
version = "scenario.1"
city = "city"
[defaults]
status_red = "city-ops"
status_yellow = "city-ops"
forged_code = "city-ops"
replayed = "city-ops"
code_shared = "city-ops"
fever = "city-ops"
suspected_forgery = "city-ops"
refused_verification = "city-ops"
forced_entry = "city-ops"
device_fault = "city-ops"
crowding = "city-ops"
other = "city-ops"

[[rules]]
event_classes = ["forged_code", "replayed", "code_shared", "suspected_forgery", "refused_verification", "forced_entry"]
jurisdiction = "city/d1"
department = "d1-police"

[[rules]]
event_classes = ["forged_code", "replayed", "code_shared", "suspected_forgery", "refused_verification", "forced_entry"]
jurisdiction = "city/d2"
department = "d2-police"
"""
# place-a (Hospital A) is the world's, at city/d1/s1/g1/c1: community c1 of street s1 of district d1.
MARKET = Place("place-m", "Market M", "B", "city/d2/s2/g1/c1")
PHOTO = png(b"east door, camera 3")
PIER = Place("place-far", "Ferry Pier", "C", "elsewhere/d9/s1")  # outside the routing table's city
CITY = [
    Principal("a-mgr", Role.SITE_MANAGER, places=frozenset({"place-a"})),
    Principal("m-mgr", Role.SITE_MANAGER, places=frozenset({"place-m"})),
    Principal("far-mgr", Role.SITE_MANAGER, places=frozenset({"place-far"})),
    Principal("c1-disp", Role.DISPATCHER, jurisdiction="city/d1/s1/g1/c1"),  # community centre
    Principal("s1-disp", Role.DISPATCHER, jurisdiction="city/d1/s1"),  # street centre
    Principal("s1-sup", Role.SUPERVISOR, jurisdiction="city/d1/s1"),
    Principal("d1-disp", Role.DISPATCHER, jurisdiction="city/d1"),  # district centres
    Principal("d1-sup", Role.SUPERVISOR, jurisdiction="city/d1"),
    Principal("d2-disp", Role.DISPATCHER, jurisdiction="city/d2"),
    Principal("d2-sup", Role.SUPERVISOR, jurisdiction="city/d2"),
    Principal("city-disp", Role.DISPATCHER, jurisdiction="city"),  # the city centre
    Principal("city-sup", Role.SUPERVISOR, jurisdiction="city"),
    Principal("ops-h", Role.HANDLER, department="city-ops"),
    Principal("d1police-h", Role.HANDLER, department="d1-police"),
    Principal("d2police-h", Role.HANDLER, department="d2-police"),
]


class City:
    """The scenario's HTTP helpers: every call returns (status, body) and sets the gateway's clock first."""

    def __init__(self, dw: DispatchWorld) -> None:
        self.dw = dw

    def at(self, minutes: float) -> None:
        self.dw.clock.now = T0 + timedelta(minutes=minutes)

    async def report(self, who: str, place: str, event_class: str, **body: Any) -> tuple[int, dict[str, Any]]:
        doc = {"event_class": event_class, "place": place,
               "time": (self.dw.clock.now - timedelta(minutes=2)).isoformat(), **body}  # fmt: skip
        resp = await self.dw.world.client.post("/v1/reports", json=doc, headers=self.dw.world.auth(who))
        return resp.status, await resp.json()

    async def act(self, who: str, case_id: str, action: str, **body: Any) -> tuple[int, dict[str, Any]]:
        return await self.dw.act(who, case_id, action, **body)

    async def ok(self, who: str, case_id: str, action: str, state: str, **body: Any) -> dict[str, Any]:
        """An action that must succeed and leave the case in ``state``; the case as answered."""
        status, case = await self.act(who, case_id, action, **body)
        assert (status, case.get("state")) == (200, state), (who, action, case)
        # The actor's own entry is the last one, or the one before the automatic request_check after feedback.
        assert who in [e["actor_id"] for e in case["history"][-2:]], case["history"][-2:]
        return case

    async def refused(self, who: str, case_id: str, action: str, expected: tuple[int, str], **body: Any) -> None:
        """An action that must be refused with ``expected`` (status, error code) and change nothing."""
        before = await self.dw.case(case_id)
        status, answer = await self.act(who, case_id, action, **body)
        assert (status, answer.get("error")) == expected, (who, action, answer)
        assert await self.dw.case(case_id) == before

    async def read(self, who: str, case_id: str) -> tuple[int, dict[str, Any]]:
        status, body = await self.dw.get(who, f"/v1/cases/{case_id}")
        return status, body

    async def my_reports(self, who: str) -> list[dict[str, Any]]:
        """A site manager's own reports, newest first, each with its case's progress (``GET /v1/reports``)."""
        status, body = await self.dw.get(who, "/v1/reports")
        assert status == 200, body
        reports: list[dict[str, Any]] = body["reports"]
        return reports

    async def attach(self, who: str, case_id: str, data: bytes) -> tuple[int, dict[str, Any]]:
        resp = await self.dw.world.client.post(f"/v1/cases/{case_id}/attachments", data=data,
                                               headers={**self.dw.world.auth(who), "Content-Type": "image/png"})
        return resp.status, await resp.json()

    async def metrics(self, who: str, start: Any, end: Any) -> dict[str, Any]:
        span = f"from={start.isoformat()}&to={end.isoformat()}".replace("+00:00", "Z")
        status, body = await self.dw.get(who, f"/v1/dispatch/metrics?{span}")
        assert status == 200, body
        doc: dict[str, Any] = body
        return doc


async def _build_city(make_dispatch_world: fx.DispatchWorldFactory, tmp_path: Path) -> City:
    routing = tmp_path / "city-routing.toml"
    routing.write_text(CITY_ROUTING, "utf-8")
    dw: DispatchWorld = await make_dispatch_world(env={"ROUTING_FILE": str(routing)}, fold_window_s=600)
    registry = Registry(dw.world.redis)
    for place in (MARKET, PIER):
        await registry.add_place(place)
    for principal in CITY:
        check_scope(principal, dw.runtime.routing)  # what `placegate principals add` checks before it writes
        dw.world.tokens[principal.principal_id] = await create_principal(registry, principal)
    # ... and what it refuses: a department the table never routes to, a jurisdiction outside its city.
    for bad, reason in ((Principal("x-h", Role.HANDLER, department="d3-police"), "not in the routing table"),
                        (Principal("x-d", Role.DISPATCHER, jurisdiction="elsewhere/d9"), "outside")):  # fmt: skip
        with pytest.raises(RegistryInputError, match=reason):
            check_scope(bad, dw.runtime.routing)
    return City(dw)


def _figures(group: dict[str, Any]) -> dict[str, Any]:
    """The published figures of one group, rates rounded so that 1/3 and 2/3 compare exactly."""
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in group.items()}


def _group(cases: int, cancelled: int, filed: int, dispatched: int, handled: int, closed: int,
           kinds: tuple[int, int, int, int], rates: tuple[float | None, ...]) -> dict[str, Any]:  # fmt: skip
    names = ("on_time_filing_rate", "dispatch_accuracy", "handling_rate", "on_time_handling_rate", "closure_rate",
             "on_time_closure_rate", "rework_rate", "mean_handling_time_s")  # fmt: skip
    return {
        "cases": cases, "cancelled": cancelled, "filed": filed, "dispatched": dispatched, "handled": handled,
        "closed": closed, "closure_kinds": dict(zip(("normal", "overdue", "special", "error"), kinds, strict=True)),
        **{n: None if r is None else round(r, 6) for n, r in zip(names, rates, strict=True)},
    }  # fmt: skip


async def _walk_the_closed_loop(city: City) -> str:
    """Case A: report -> accept -> file -> dispatch -> return -> reassign -> in progress -> extension -> feed
    back -> check fail -> rework -> check pass -> closed, with the refusals met on the way."""
    dw = city.dw
    city.at(0)
    status, answer = await city.report("a-mgr", "place-a", "forced_entry", note="back door forced, camera 3")
    assert status == 202
    assert (answer["status"], answer["note"]) == ("queued", "back door forced, camera 3")
    case_id: str = answer["case_id"]
    assert await dw.pump() == {"created": 1}
    status, case = await city.read("c1-disp", case_id)
    assert status == 200
    assert (case["state"], case["department"], case["level"], case["jurisdiction"], case["urgent"]) == (
        "reported", "d1-police", "community", "city/d1/s1/g1/c1", True)  # fmt: skip
    assert (case["created_at"], case["stage_deadline"]) == (T0.isoformat(), (T0 + timedelta(minutes=10)).isoformat())
    assert [(e["action"], e["actor_id"], e["note"]) for e in case["history"]] == [
        ("report", "a-mgr", "back door forced, camera 3")]  # fmt: skip
    # Another district's staff neither see nor touch it: the answer of a missing case.
    for who in ("d2-disp", "d2-sup"):
        assert (await city.read(who, case_id))[0] == 404
    await city.refused("d2-disp", case_id, "accept", (404, "not_found"))
    # The manager's evidence: a photo of the door, on the case their report became; no other district sees it.
    city.at(1)
    status, photo = await city.attach("a-mgr", case_id, PHOTO)
    assert (status, photo["case_id"], photo["n"], photo["content_type"], photo["uploaded_by"]) == (
        201, case_id, 1, "image/png", "a-mgr")  # fmt: skip
    assert (await city.attach("m-mgr", case_id, PHOTO))[0] == 404  # another place's manager
    assert (await dw.get("d2-disp", f"/v1/cases/{case_id}/attachments"))[0] == 404

    city.at(3)
    case = await city.ok("c1-disp", case_id, "accept", "accepted")
    assert case["stage_deadline"] == (T0 + timedelta(minutes=33)).isoformat()
    city.at(5)
    case = await city.ok("c1-disp", case_id, "file", "filed")
    assert case["stage_deadline"] == (T0 + timedelta(minutes=15)).isoformat()
    city.at(8)
    # Dispatch holds to the place: the other district's police does not serve Hospital A.
    await city.refused("s1-disp", case_id, "dispatch", (422, "department_out_of_jurisdiction"), department="d2-police")
    case = await city.ok("s1-disp", case_id, "dispatch", "dispatched")
    assert (case["department"], case["stage_deadline"]) == ("d1-police", (T0 + timedelta(minutes=68)).isoformat())

    city.at(20)
    await city.refused("d2police-h", case_id, "start", (404, "not_found"))  # another department's handler
    await city.refused("ops-h", case_id, "start", (404, "not_found"))  # not dispatched to it (yet)
    await city.refused("d1police-h", case_id, "return", (422, "reason_required"))
    case = await city.ok("d1police-h", case_id, "return", "returned", note="no break-in: a fire door alarm")
    assert (case["return_count"], case["stage_deadline"]) == (1, (T0 + timedelta(minutes=30)).isoformat())
    await city.refused("d1police-h", case_id, "start", (409, "illegal_transition"))

    city.at(25)  # reassigned: the city's operations office serves every place of the city
    case = await city.ok("s1-disp", case_id, "dispatch", "dispatched", department="city-ops")
    assert (case["department"], case["stage_deadline"]) == ("city-ops", (T0 + timedelta(minutes=85)).isoformat())
    assert (await city.read("d1police-h", case_id))[0] == 404  # the returning department no longer sees it
    city.at(30)
    resp = await dw.world.client.get(f"/v1/cases/{case_id}/attachments/1", headers=dw.world.auth("ops-h"))
    assert (resp.status, resp.content_type, await resp.read()) == (200, "image/png", PHOTO)  # the new holder's
    case = await city.ok("ops-h", case_id, "start", "in_progress")
    assert case["stage_deadline"] == (T0 + timedelta(minutes=150)).isoformat()  # forced_entry: 2 h

    city.at(60)  # the handler asks; only a dispatcher or supervisor grants
    status, case = await city.act("ops-h", case_id, "request_extension", note="waiting for the locksmith")
    assert (status, case["state"], case["extension_request"]["by"]) == (202, "in_progress", "ops-h")
    assert case["extension_request"]["note"] == "waiting for the locksmith"
    await city.refused("ops-h", case_id, "request_extension", (409, "extension_already_requested"))
    city.at(65)
    await city.refused("ops-h", case_id, "postpone", (403, "not_permitted_role"))
    case = await city.ok("s1-sup", case_id, "postpone", "postponed")
    assert case["extension_used"] is True
    assert case["stage_deadline"] == (T0 + timedelta(minutes=270)).isoformat()  # the handling deadline + 2 h

    city.at(120)
    case = await city.ok("ops-h", case_id, "feed_back", "checking", note="alarm reset, door repaired")
    assert [e["action"] for e in case["history"][-2:]] == ["feed_back", "request_check"]
    assert case["history"][-1]["actor_id"] == "dispatch-worker"
    assert case["stage_deadline"] == (T0 + timedelta(minutes=180)).isoformat()

    city.at(130)  # supervision: only a supervisor of the case's jurisdiction passes or fails the check
    await city.refused("s1-disp", case_id, "check", (403, "supervisor_required"), result="pass")
    await city.refused("s1-disp", case_id, "close", (403, "supervisor_required"))
    await city.refused("ops-h", case_id, "check", (403, "supervisor_required"), result="pass")
    await city.refused("d2-sup", case_id, "check", (404, "not_found"), result="pass")
    await city.refused("s1-sup", case_id, "check", (422, "closure_kind_set_by_rules"), result="pass",
                       closure_kind="normal")  # fmt: skip
    await city.refused("s1-sup", case_id, "check", (422, "reason_required"), result="fail")
    case = await city.ok("s1-sup", case_id, "check", "dispatched", result="fail", note="the lock is still broken")
    assert (case["department"], case["rework_count"], case["history"][-1]["action"]) == ("city-ops", 1, "rework")
    assert case["stage_deadline"] == (T0 + timedelta(minutes=190)).isoformat()

    city.at(140)
    case = await city.ok("ops-h", case_id, "start", "in_progress")
    await city.refused("s1-sup", case_id, "postpone", (409, "extension_already_used"))  # one per case, ever
    city.at(180)
    case = await city.ok("ops-h", case_id, "feed_back", "checking", note="lock replaced")
    city.at(190)
    case = await city.ok("s1-sup", case_id, "check", "closed", result="pass")
    assert (case["closure_kind"], case["stage_deadline"], case["rework_count"], case["return_count"]) == (
        "normal", None, 1, 1)  # fmt: skip
    assert [e["action"] for e in case["history"]] == [
        "report", "accept", "file", "dispatch", "return", "dispatch", "start", "postpone", "feed_back",
        "request_check", "rework", "start", "feed_back", "request_check", "close",
    ]  # fmt: skip
    assert all(e["deadline"] is None or e["at"] <= e["deadline"] for e in case["history"])  # every stage on time
    await city.refused("s1-sup", case_id, "check", (409, "illegal_transition"), result="pass")
    status, queue = await dw.get("s1-disp", "/v1/cases")
    assert (status, queue["cases"]) == (200, [])  # a closed case leaves the queue
    # The manager followed it to its end: progress only, no note and no history.
    (mine,) = await city.my_reports("a-mgr")
    assert {k: mine[k] for k in ("case_id", "event_class", "place", "state", "level", "closure_kind")} == {
        "case_id": case_id, "event_class": "forced_entry", "place": "place-a", "state": "closed",
        "level": "community", "closure_kind": "normal"}  # fmt: skip
    assert "note" not in mine and "history" not in mine
    return case_id


async def _escalate_by_deadline(city: City) -> str:
    """Case B: a report nobody verifies is flagged at its deadline and escalated at 2x and 4x; authority moves up."""
    dw = city.dw
    store = dw.runtime.store
    city.at(200)
    status, answer = await city.report("a-mgr", "place-a", "suspected_forgery")
    assert status == 202
    case_id: str = answer["case_id"]
    assert await dw.pump() == {"created": 1}
    status, case = await city.read("c1-disp", case_id)
    assert (status, case["level"], case["stage_deadline"]) == (
        200, "community", (T0 + timedelta(minutes=210)).isoformat())  # fmt: skip
    city.at(209)  # the sweeper at the gateway's clock: nothing before the deadline
    report = await sweep_open_cases(store, now=dw.clock.now)
    assert (report.checked, report.flagged, report.escalated) == (0, 0, 0)
    city.at(210)  # 100 %: overdue
    report = await sweep_open_cases(store, now=dw.clock.now)
    assert (report.checked, report.flagged, report.escalated) == (1, 1, 0)
    status, queue = await dw.get("c1-disp", "/v1/cases?overdue=true")
    assert (status, [c["case_id"] for c in queue["cases"]]) == (200, [case_id])
    city.at(220)  # 2x: the street centre
    report = await sweep_open_cases(store, now=dw.clock.now)
    assert (report.checked, report.flagged, report.escalated) == (1, 0, 1)
    status, case = await city.read("c1-disp", case_id)  # the community still reads it ...
    assert (status, case["level"], case["escalation_count"], case["overdue"]) == (200, "street", 1, True)
    await city.refused("c1-disp", case_id, "accept", (403, "escalated_above_you"))  # ... and no longer decides
    city.at(240)  # 4x: the district centre
    report = await sweep_open_cases(store, now=dw.clock.now)
    assert (report.checked, report.flagged, report.escalated) == (1, 0, 1)
    city.at(241)
    for who in ("c1-disp", "s1-disp", "s1-sup"):
        status, case = await city.read(who, case_id)
        assert (status, case["level"], case["escalation_count"]) == (200, "district", 2)
        await city.refused(who, case_id, "accept", (403, "escalated_above_you"))
        await city.refused(who, case_id, "cancel", (403, "escalated_above_you"), note="looks false")
    assert [(e["action"], e["role"], e["level"], e["at"]) for e in case["history"]] == [
        ("report", "source", "community", (T0 + timedelta(minutes=200)).isoformat()),
        ("flag_overdue", "system", "community", (T0 + timedelta(minutes=210)).isoformat()),
        ("escalate", "system", "street", (T0 + timedelta(minutes=220)).isoformat()),
        ("escalate", "system", "district", (T0 + timedelta(minutes=240)).isoformat()),
    ]
    for who in ("d2-disp", "d2-sup"):  # the other district is still refused
        assert (await city.read(who, case_id))[0] == 404
        await city.refused(who, case_id, "accept", (404, "not_found"))
    newest, _ = await city.my_reports("a-mgr")  # the manager sees where it waits, and that it is late
    assert (newest["case_id"], newest["state"], newest["level"], newest["overdue"]) == (
        case_id, "reported", "district", True)  # fmt: skip

    city.at(242)
    case = await city.ok("d1-disp", case_id, "accept", "accepted")
    assert case["level"] == "district" and case["overdue"] is False
    accept = case["history"][-1]
    assert accept["at"] > accept["deadline"]  # the late verification is on record
    city.at(243)
    await city.ok("d1-disp", case_id, "file", "filed")
    city.at(244)
    case = await city.ok("d1-disp", case_id, "dispatch", "dispatched")
    assert case["department"] == "d1-police"
    city.at(250)
    await city.ok("d1police-h", case_id, "start", "in_progress")  # a handler acts whatever centre holds the case
    city.at(280)
    await city.ok("d1police-h", case_id, "feed_back", "checking", note="code confirmed forged, holder identified")
    city.at(290)
    await city.refused("s1-sup", case_id, "check", (403, "escalated_above_you"), result="pass")  # never back down
    case = await city.ok("d1-sup", case_id, "check", "closed", result="pass")
    assert (case["closure_kind"], case["level"]) == ("overdue", "district")  # the rules, from the late report stage
    return case_id


async def _fold_and_merge(city: City) -> tuple[str, str]:
    """Cases C and D: two note-less reports of one kind at one place fold; a report with a note is its own case,
    which d2's dispatcher merges by hand. C then ends by a special closure."""
    dw = city.dw
    answers = []
    for minute, body in ((300, {}), (301, {}), (302, {"note": "scanner 2 dead again"})):
        city.at(minute)
        status, answer = await city.report("m-mgr", "place-m", "device_fault", **body)
        assert status == 202
        answers.append(answer["case_id"])
    first, folded, noted = answers
    assert len(set(answers)) == 3  # each answer names its event's own case id ...
    assert await dw.pump() == {"created": 2, "folded": 1}
    status, case = await city.read("d2-disp", folded)  # ... and the folded one leads to the case that holds it
    assert (status, case["case_id"], case["department"], case["level"], case["urgent"]) == (
        200, first, "city-ops", "community", False)  # fmt: skip
    # A folded report's time is the one its manager gave (each was sent 2 minutes after the fact).
    assert case["occurrences"] == {
        "count": 2, "times": ["2026-03-02T12:58:00.000Z", "2026-03-02T12:59:00.000Z"], "times_max": 100}
    assert case["created_at"] == (T0 + timedelta(minutes=300)).isoformat()
    status, other = await city.read("d2-disp", noted)
    assert (status, other["case_id"], other["occurrences"]["count"]) == (200, noted, 1)
    assert other["created_at"] == (T0 + timedelta(minutes=302)).isoformat()

    city.at(305)
    await city.refused("d1-disp", noted, "merge", (404, "not_found"), into=first)  # another district's dispatcher
    await city.refused("ops-h", noted, "merge", (403, "not_permitted_role"), into=first)  # a handler does not merge
    case = await city.ok("d2-disp", noted, "merge", "cancelled", into=first)
    assert (case["closure_kind"], case["history"][-1]["note"]) == ("error", f"merged into {first}")
    status, case = await city.read("d2-disp", first)
    assert (status, case["state"], case["history"][-1]["action"], case["history"][-1]["note"]) == (
        200, "reported", "merge", f"absorbed {noted}")  # fmt: skip
    assert case["occurrences"]["count"] == 3
    await city.refused("d2-disp", noted, "merge", (409, "illegal_transition"), into=first)
    mine = {r["case_id"]: r for r in await city.my_reports("m-mgr")}
    assert {c: (r["state"], r.get("merged_into"), r["closure_kind"]) for c, r in mine.items()} == {
        first: ("reported", None, None), folded: ("reported", first, None), noted: ("cancelled", None, "error")}

    for minute, action, state in ((306, "accept", "accepted"), (307, "file", "filed"), (308, "dispatch", "dispatched")):
        city.at(minute)
        await city.ok("d2-disp", first, action, state)
    city.at(310)
    await city.ok("ops-h", first, "start", "in_progress")
    city.at(320)
    await city.refused("d2-disp", first, "hang", (422, "reason_required"))
    await city.ok("d2-disp", first, "hang", "hung", note="replacement scanner on back-order")
    city.at(325)
    await city.refused("d2-disp", first, "close", (403, "supervisor_required"))
    await city.refused("s1-sup", first, "close", (404, "not_found"))  # d1's street: not its case
    case = await city.ok("d2-sup", first, "close", "closed")
    assert case["closure_kind"] == "special"
    return first, noted


async def _route_by_hand(city: City) -> str:
    """Case E: a report the routing table cannot route is a real case in the city's unrouted queue."""
    dw = city.dw
    city.at(330)
    status, answer = await city.report("far-mgr", "place-far", "other")
    assert status == 202
    case_id: str = answer["case_id"]
    assert await dw.pump() == {"created": 1}
    for who in ("d1-disp", "d2-disp", "d1-sup"):
        assert (await city.read(who, case_id))[0] == 404
        status, queue = await dw.get(who, "/v1/cases?department=unrouted")
        assert (status, queue["cases"]) == (200, [])
    status, queue = await dw.get("city-disp", "/v1/cases?department=unrouted")
    assert (status, [c["case_id"] for c in queue["cases"]]) == (200, [case_id])
    status, case = await city.read("city-disp", case_id)
    assert (status, case["state"], case["department"], case["level"], case["jurisdiction"]) == (
        200, "reported", "unrouted", "city", "city")  # fmt: skip
    await city.refused("city-disp", case_id, "accept", (409, "case_unrouted"))
    await city.refused("city-sup", case_id, "route", (403, "not_permitted_role"), department="city-ops")
    await city.refused("d1-disp", case_id, "route", (404, "not_found"), department="city-ops")
    city.at(335)
    await city.refused("city-disp", case_id, "route", (422, "department_out_of_jurisdiction"), department="d1-police")
    case = await city.ok("city-disp", case_id, "route", "reported", department="city-ops")
    assert (case["department"], case["level"], case["history"][-1]["action"]) == ("city-ops", "city", "route")
    await city.refused("city-disp", case_id, "route", (409, "illegal_transition"), department="city-ops")
    for minute, action, state in ((336, "accept", "accepted"), (337, "file", "filed"), (338, "dispatch", "dispatched")):
        city.at(minute)
        await city.ok("city-disp", case_id, action, state)
    city.at(340)
    await city.ok("ops-h", case_id, "start", "in_progress")
    city.at(400)
    await city.ok("ops-h", case_id, "feed_back", "checking", note="pier office told")
    city.at(410)
    await city.refused("d1-sup", case_id, "check", (404, "not_found"), result="pass")
    case = await city.ok("city-sup", case_id, "check", "closed", result="pass")
    assert case["closure_kind"] == "normal"
    return case_id


async def test_a_small_city_walks_the_closed_loop_with_escalation_merging_and_an_unrouted_case(
    make_dispatch_world: fx.DispatchWorldFactory, tmp_path: Path
) -> None:
    city = await _build_city(make_dispatch_world, tmp_path)
    await _walk_the_closed_loop(city)
    await _escalate_by_deadline(city)
    await _fold_and_merge(city)
    await _route_by_hand(city)

    # The evaluation, read the next day over the day of the walk; figures derived by hand from the timeline
    # (module docstring). Handling time: A 8 -> 180 min, B 244 -> 280, E 338 -> 400: (10320 + 2160 + 3720) / 3.
    # Per department, A's first dispatch and return are charged to d1's police, its handling (25 -> 180 min) to
    # the operations office that held it; D, merged away, is a cancellation (error) of the operations office.
    city.at(24 * 60)
    day = (T0, T0 + timedelta(days=1))
    doc = await city.metrics("city-sup", *day)
    assert (doc["scope"], doc["level"]) == ("city", "district")
    assert _figures(doc["overall"]) == _group(
        4, 1, 4, 4, 3, 4, (2, 1, 1, 1), (3 / 4, 1 - 1 / 5, 3 / 4, 3 / 4, 1.0, 3 / 4, 1 / 3, 16200 / 3))
    assert {k: _figures(v) for k, v in doc["by_department"].items()} == {
        "city-ops": _group(3, 1, 3, 3, 2, 3, (2, 0, 1, 1), (1.0, 1.0, 2 / 3, 2 / 3, 1.0, 1.0, 1 / 2, 13020 / 2)),
        "d1-police": _group(1, 0, 1, 1, 1, 1, (0, 1, 0, 0), (0.0, 1 - 1 / 2, 1.0, 1.0, 1.0, 0.0, 0.0, 2160.0)),
    }
    assert {k: _figures(v) for k, v in doc["by_jurisdiction"].items()} == {
        "city": _group(1, 0, 1, 1, 1, 1, (1, 0, 0, 0), (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 3720.0)),
        "city/d1": _group(2, 0, 2, 2, 2, 2, (1, 1, 0, 0), (1 / 2, 1 - 1 / 3, 1.0, 1.0, 1.0, 1 / 2, 1 / 2, 12480 / 2)),
        "city/d2": _group(1, 1, 1, 1, 0, 1, (0, 0, 1, 1), (1.0, 1.0, 0.0, 0.0, 1.0, 1.0, None, None)),
    }
    # A district sees its own subtree only; the day before the walk has nothing, read before and after alike.
    d2 = await city.metrics("d2-sup", *day)
    assert (d2["scope"], list(d2["by_jurisdiction"]), d2["overall"]["cases"], d2["overall"]["cancelled"]) == (
        "city/d2", ["city/d2"], 1, 1)  # fmt: skip
    d1 = await city.metrics("d1-disp", *day)
    assert (list(d1["by_jurisdiction"]), d1["overall"]["closure_kinds"]) == (
        ["city/d1"], {"normal": 1, "overdue": 1, "special": 0, "error": 0})  # fmt: skip
    before = await city.metrics("city-sup", T0 - timedelta(days=1), T0)
    assert (before["overall"]["cases"], before["by_department"], before["by_jurisdiction"]) == (0, {}, {})
    # A window that closed at minute 200 shows case A alone, as it would have the moment it closed.
    early = await city.metrics("city-sup", T0, T0 + timedelta(minutes=200))
    assert _figures(early["overall"]) == _group(
        1, 0, 1, 1, 1, 1, (1, 0, 0, 0), (1.0, 1 - 1 / 2, 1.0, 1.0, 1.0, 1.0, 1.0, 10320.0))
