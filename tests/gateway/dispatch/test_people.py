"""The site manager's view over HTTP on the real Redis: their own reports and where the cases stand
(``GET /v1/reports``), and the exception counts at their own places (``GET /v1/places/{id}/exceptions``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from crypto.keys import Alg, SigningKey
from crypto.native import Colour
from gateway import keyspace
from gateway.scan.scanlog import day_of
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import T0, DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw
NOTE = "the guard Wang Lei saw it, call 13812345678"


async def _report(dw: DispatchWorld, who: str = "sm-a", **body: Any) -> dict[str, Any]:
    doc = {"event_class": "forced_entry", "place": "place-a", "time": (dw.clock.now - timedelta(minutes=3)).isoformat(),
           **body}  # fmt: skip
    resp = await dw.world.client.post("/v1/reports", json=doc, headers=dw.world.auth(who))
    assert resp.status == 202, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


async def _mine(dw: DispatchWorld, who: str = "sm-a", query: str = "") -> tuple[int, Any, bytes]:
    resp = await dw.world.client.get("/v1/reports" + query, headers=dw.world.auth(who))
    raw = await resp.read()
    return resp.status, orjson.loads(raw), raw


async def test_a_managers_report_appears_in_their_list_and_follows_its_case(dw: DispatchWorld) -> None:
    filed = await _report(dw, note=NOTE)
    case_id = filed["case_id"]
    status, body, _ = await _mine(dw)
    assert status == 200
    [mine] = body["reports"]
    assert mine == {"event_id": filed["event_id"], "case_id": case_id, "event_class": "forced_entry",
                    "place": "place-a", "filed_at": T0.isoformat(timespec="milliseconds"), "state": "queued"}
    assert await dw.pump() == {"created": 1}
    states = []
    for who, action, extra in (("dispatcher", "accept", {}), ("dispatcher", "file", {}),
                               ("dispatcher", "dispatch", {}), ("h-police", "start", {}),
                               ("h-police", "feed_back", {"note": "door repaired"}),
                               ("sup-d1", "check", {"result": "pass"})):  # fmt: skip
        dw.clock.advance(minutes=5)
        assert (await dw.act(who, case_id, action, **extra))[0] == 200, action
        _, body, raw = await _mine(dw)
        [mine] = body["reports"]
        states.append(mine["state"])
        # Progress only: no note of anybody (the manager's own, masked or not, nor the handler's), no history.
        for text in (b"Wang Lei", b"13812345678", b"door repaired", b"note", b"history", b"holder", b"actor"):
            assert text not in raw, text
    assert states == ["accepted", "filed", "dispatched", "in_progress", "checking", "closed"]
    assert (mine["closure_kind"], mine["overdue"], mine["stage_deadline"]) == ("normal", False, None)
    assert set(mine) == {"event_id", "case_id", "event_class", "place", "filed_at", "state", "level",
                         "stage_started_at", "stage_deadline", "overdue", "closure_kind"}


async def test_another_manager_sees_none_of_it_and_other_roles_may_not_ask(dw: DispatchWorld) -> None:
    await _report(dw)
    await _report(dw, who="sm-z", place="place-z")
    await dw.pump()
    status, body, _ = await _mine(dw, "sm-z")
    assert status == 200 and [r["place"] for r in body["reports"]] == ["place-z"]
    status, body, _ = await _mine(dw, "sm-a")
    assert [r["place"] for r in body["reports"]] == ["place-a"]
    for who in ("dispatcher", "sup-d1", "h-police"):
        resp = await dw.world.client.get("/v1/reports", headers=dw.world.auth(who))
        assert (resp.status, (await resp.json())["error"]) == (403, "forbidden")


async def test_the_list_is_paged_newest_first_and_bad_paging_is_refused(dw: DispatchWorld) -> None:
    ids = []
    for _ in range(3):
        ids.append((await _report(dw))["case_id"])
        dw.clock.advance(seconds=1)
    _, first, _ = await _mine(dw, query="?limit=2")
    assert [r["case_id"] for r in first["reports"]] == ids[:0:-1] and first["next_cursor"] == "2"
    _, rest, _ = await _mine(dw, query="?limit=2&cursor=2")
    assert [r["case_id"] for r in rest["reports"]] == ids[:1] and rest["next_cursor"] is None
    for query in ("?limit=0", "?limit=x", "?cursor=-1", "?cursor=" + "9" * 23, "?state=open", "?limit=1&limit=2"):
        status, body, _ = await _mine(dw, query=query)
        assert (status, body["error"]) == (400, "invalid_request"), query


async def test_exception_counts_per_day_and_reason_at_the_managers_place_only(
    make_dispatch_world: DispatchWorldFactory,
) -> None:
    dw: DispatchWorld = await make_dispatch_world(clock=None)  # scans and counts on the real clock
    world = dw.world
    started = datetime.now(UTC).date()
    await world.set_status("holder-1")
    await world.set_status("holder-red", Colour.RED)
    code = world.code("holder-1")
    assert (await world.scan(code, who="dev-a"))[1]["reason"] == "ok"
    assert (await world.scan(code, who="dev-a"))[1]["reason"] == "replayed"
    assert (await world.scan(code, who="dev-a"))[1]["reason"] == "replayed"
    assert (await world.scan(code, who="dev-b"))[1]["reason"] == "code_shared"  # at place-b: not sm-a's
    assert (await world.scan(world.code("holder-red"), who="dev-a"))[1]["reason"] == "status_red"
    stranger = SigningKey.generate(Alg.ES256)
    forged = (await world.scan(world.code("holder-1", key=stranger), who="dev-a"))[1]["reason"]
    assert forged == "unknown_key"
    today = datetime.now(UTC).date()
    if today != started:
        pytest.skip("the UTC day changed between the scans: their counts are split over two days")
    resp = await world.client.get("/v1/places/place-a/exceptions", headers=world.auth("sm-a"))
    assert resp.status == 200
    body = await resp.json()
    assert (body["from"], body["to"]) == ((today - timedelta(days=6)).isoformat(), today.isoformat())
    assert len(body["days"]) == 7 and all(d["total"] == 0 for d in body["days"][:-1])
    assert body["days"][-1] == {
        "day": today.isoformat(), "total": 4, "reasons": {"replayed": 2, "status_red": 1, "unknown_key": 1},
        "classes": {"replayed": 2, "status_red": 1, "forged_code": 1},
    }  # fmt: skip
    assert (body["total"], body["reasons"]) == (4, {"replayed": 2, "status_red": 1, "unknown_key": 1})
    # One day, one query parameter.
    one = await world.client.get(f"/v1/places/place-a/exceptions?from={today}&to={today}", headers=world.auth("sm-a"))
    assert [d["day"] for d in (await one.json())["days"]] == [today.isoformat()]
    # Another manager's place, a place that does not exist, a place in scope but never registered: one answer.
    answers = []
    for who, place in (("sm-a", "place-b"), ("sm-a", "place-nowhere"), ("sm-z", "place-ghost")):
        resp = await world.client.get(f"/v1/places/{place}/exceptions", headers=world.auth(who))
        answers.append((resp.status, await resp.json()))
    assert answers == [(404, {"error": "not_found", "detail": "no such place"})] * 3
    resp = await world.client.get("/v1/places/place-b/exceptions", headers=world.auth("dispatcher"))
    assert resp.status == 403
    # The counter lives as long as that day's scan log, and holds counts only.
    day = day_of(datetime.now(UTC))
    counter = keyspace.place_exceptions_key("place-a", day)
    assert await world.redis.expiretime(counter) == await world.redis.expiretime(keyspace.scan_log_key(day)) > 0
    assert await world.redis.hgetall(counter) == {b"replayed": b"2", b"status_red": b"1", b"unknown_key": b"1"}


async def test_exception_ranges_outside_today_and_the_last_14_days_are_refused(
    make_dispatch_world: DispatchWorldFactory,
) -> None:
    dw: DispatchWorld = await make_dispatch_world()
    today = T0.date()
    ok = f"from={today - timedelta(days=14)}&to={today}"
    resp = await dw.world.client.get(f"/v1/places/place-a/exceptions?{ok}", headers=dw.world.auth("sm-a"))
    assert resp.status == 200 and len((await resp.json())["days"]) == 15
    for query in (f"from={today - timedelta(days=15)}", f"to={today + timedelta(days=1)}",
                  f"from={today}&to={today - timedelta(days=1)}", "from=2026-13-01", "from=yesterday",
                  "to=20260302", "day=2026-03-02", f"from={today}&from={today}",
                  "to=0001-01-01", "from=0001-01-01&to=0001-01-07"):  # fmt: skip  (year 1: no overflow, a 400)
        resp = await dw.world.client.get(f"/v1/places/place-a/exceptions?{query}", headers=dw.world.auth("sm-a"))
        assert (resp.status, (await resp.json())["error"]) == (400, "invalid_request"), query


async def test_the_report_index_keeps_the_case_retention_and_names_no_one(dw: DispatchWorld) -> None:
    await _report(dw)
    index = keyspace.reporter_reports_key("sm-a")
    ttl_ms = await dw.world.redis.pttl(index)
    assert 0 < ttl_ms <= keyspace.CASE_RETENTION_S * 1000
    assert await dw.world.redis.pttl(keyspace.reporter_reports_info_key("sm-a")) > 0
    assert b"sm-a" not in index.encode()  # the manager's id is hashed in the key name
