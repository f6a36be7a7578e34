"""Contact tracing and the privacy officer's API over HTTP on the real Redis: the two-person rule for everyone
(privacy officers included), approvals bound to an existing requester, an existing in-scope case, one holder
(by keyed hash) and one window, single use, jurisdiction-limited results, subject access, and every step audited
with the holder's keyed hash and never the holder reference."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crypto.subject import SubjectHasher
from gateway.keyspace import AUDIT_STREAM, day_key, scan_log_key
from gateway.principals import Principal, Role
from gateway.privacy.tracing import pseudonym
from gateway.scan.scanlog import day_of
from gateway.scan.state import SCANNER
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway import conftest as base
from tests.gateway.conftest import PLACES, World
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import D2_PLACE, DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world

NOW = datetime.now(UTC)
SUBJECT = SubjectHasher(base.SECRET.reveal())
WEST, EAST = "city/d1/s1/g1/c1", "city/d2/s9/g1/c1"  # district d1 holds places a-c, district d2 place z


@dataclass
class Traced:
    dw: DispatchWorld
    world: World
    west_case: str  # a case in district d1 (west)
    east_case: str  # a case in district d2 (east)


@pytest.fixture
async def traced(make_dispatch_world: DispatchWorldFactory) -> Traced:
    dw: DispatchWorld = await make_dispatch_world(clock=None)
    world = dw.world
    registry = Registry(world.redis)
    for principal, name in (
        (Principal("po-1", Role.PRIVACY_OFFICER, jurisdiction="city"), "po"),
        (Principal("po-2", Role.PRIVACY_OFFICER, jurisdiction="city"), "po2"),
        (Principal("po-3", Role.PRIVACY_OFFICER), "po3"),  # approves, but has no trace scope of their own
        (Principal("sup-1", Role.SUPERVISOR, jurisdiction="city"), "sup"),
        (Principal("sm-1", Role.SITE_MANAGER, frozenset({"place-a"})), "sm"),
        (Principal("dev-z", Role.DEVICE, frozenset({"place-z"})), "dev-z"),
        (Principal("gone-1", Role.DISPATCHER, jurisdiction="city/d1", revoked=True), "gone"),
    ):
        world.tokens[name] = await create_principal(registry, principal)
    scanner = world.client.app[SCANNER]
    for days_ago, place, device in ((0, PLACES[0], "dev-a"), (1, PLACES[1], "dev-b"), (3, PLACES[2], "dev-c"),
                                    (3, PLACES[0], "dev-a"), (2, D2_PLACE, "dev-z")):
        at = NOW - timedelta(days=days_ago, minutes=5)
        await scanner.scan(world.code("holder-7", now=at), place, device, now=at)
        await scanner.scan(world.code("holder-8", now=at), place, device, now=at)
    west = await dw.event(place="place-a", jurisdiction=WEST, holder="holder-7")
    east = await dw.event(place="place-z", jurisdiction=EAST, holder="holder-7")
    while sum((await dw.pump()).values()):
        pass
    assert await dw.case(west) is not None and await dw.case(east) is not None
    return Traced(dw, world, west, east)


def _window(days: int = 20) -> dict[str, str]:
    return {"since": (NOW - timedelta(days=days)).isoformat(), "until": (NOW + timedelta(minutes=1)).isoformat()}


async def _approve(t: Traced, officer: str, requester: str, case_ref: str | None = None, *,
                   holder: str = "holder-7", **body: Any) -> tuple[int, dict[str, Any]]:
    payload = {"requester": requester, "case_ref": t.west_case if case_ref is None else case_ref,
               "holder_ref": holder, "purpose": "epidemic_prevention", "valid_s": 600, **_window(), **body}
    resp = await t.world.client.post("/v1/privacy/approvals", json=payload, headers=t.world.auth(officer))
    return resp.status, await resp.json()


async def _approval(t: Traced, officer: str, requester: str, case_ref: str | None = None, **body: Any) -> str:
    status, got = await _approve(t, officer, requester, case_ref, **body)
    assert status == 201, got
    return str(got["approval_id"])


async def _trace(t: Traced, who: str, case_ref: str | None = None, **body: Any) -> tuple[int, dict[str, Any]]:
    payload = {"holder_ref": "holder-7", "purpose": "epidemic_prevention",
               "case_ref": t.west_case if case_ref is None else case_ref, **body}
    resp = await t.world.client.post("/v1/privacy/trace", json=payload, headers=t.world.auth(who))
    return resp.status, await resp.json()


async def _trail(t: Traced) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in await t.world.redis.xrange(AUDIT_STREAM)]


INVALID = (403, {"error": "approval_invalid", "detail": "no usable approval"})


async def test_a_privacy_officer_traces_only_with_another_officers_approval(traced: Traced) -> None:
    t = traced
    assert (await _trace(t, "po"))[1]["error"] == "approval_required"  # no solo officer trace
    status, body = await _approve(t, "po", "po-1")  # nor a self-approved one
    assert (status, body["error"]) == (403, "approval_invalid")
    approval = await _approval(t, "po2", "po-1")
    status, body = await _trace(t, "po", approval_id=approval)
    assert status == 200, body
    assert [(v["place"], v["day"]) for v in body["visits"]] == [
        ("place-c", day_of(NOW - timedelta(days=3))), ("place-a", day_of(NOW - timedelta(days=3))),
        ("place-z", day_of(NOW - timedelta(days=2))), ("place-b", day_of(NOW - timedelta(days=1))),
        ("place-a", day_of(NOW))]
    assert body["result_count"] == 5 and len(body["days"]) == 21
    entry = (await _trail(t))[-1]
    assert (entry["action"], entry["who"], entry["role"]) == ("contact_trace", "po-1", "privacy_officer")
    assert (entry["case_ref"], entry["result_count"], entry["approver"]) == (t.west_case, "5", "po-2")
    assert entry["subject"] == SUBJECT.of("holder-7") and entry["approval"] == approval
    assert (await _trace(t, "po", approval_id=approval)) == INVALID  # single use


async def test_an_investigator_traces_with_an_approval_that_names_them(traced: Traced) -> None:
    t = traced
    assert (await _trace(t, "dispatcher"))[1]["error"] == "approval_required"
    status, body = await _approve(t, "po", "disp-1")
    assert status == 201 and body["subject"] == SUBJECT.of("holder-7") and "holder_ref" not in body
    status, got = await _trace(t, "dispatcher", approval_id=body["approval_id"])
    assert status == 200 and got["result_count"] == 4
    last = (await _trail(t))[-1]
    assert (last["who"], last["approver"], last["approval"]) == ("disp-1", "po-1", body["approval_id"])
    assert (await _trace(t, "dispatcher", approval_id=body["approval_id"])) == INVALID


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"purpose": "marketing"}, 403, "purpose_not_allowed"),
        ({"purpose": ""}, 403, "purpose_not_allowed"),
        ({"case_ref": ""}, 422, "case_ref_required"),
        ({"since": "yesterday"}, 422, "invalid_range"),
        ({"since": "2024-01-01T00:00:00"}, 422, "invalid_range"),
        ({"holder_ref": ""}, 400, "invalid_request"),
        ({"holder_ref": "x" * 65}, 400, "invalid_request"),
    ],
)
async def test_refused_traces_have_stable_codes_and_are_audited(
    traced: Traced, body: dict[str, Any], status: int, code: str
) -> None:
    approval = await _approval(traced, "po2", "po-1")
    got_status, got = await _trace(traced, "po", approval_id=approval, **body)
    assert (got_status, got["error"]) == (status, code)
    if status != 400:
        last = (await _trail(traced))[-1]
        assert last["action"] == "contact_trace_refused" and last["outcome"] == code
        assert last["subject"] == SUBJECT.of("holder-7")
        assert last["purpose"] in ("epidemic_prevention", "unlisted")  # free text never enters the trail
    assert (await _trace(traced, "po", approval_id=approval))[0] == 200  # a refusal does not use it up


async def test_roles_outside_the_trace_list_get_forbidden(traced: Traced) -> None:
    for who in ("sm", "dev-a", "app", "feeder"):
        status, body = await _trace(traced, who)
        assert (status, body["error"]) == (403, "forbidden")
    for who in ("sup", "dispatcher"):  # only privacy officers grant
        status, body = await _approve(traced, who, "disp-1")
        assert (status, body["error"]) == (403, "forbidden")


async def test_a_grant_needs_an_existing_requester_who_may_trace_and_an_existing_case_in_their_scope(
    traced: Traced,
) -> None:
    t = traced
    refused = [
        await _approve(t, "po", "nobody-1"),  # no such principal
        await _approve(t, "po", "gone-1"),  # revoked
        await _approve(t, "po", "sm-1"),  # a role that may not trace
        await _approve(t, "po", "disp-1", "c" + "0" * 20),  # no such case (a well-formed id)
        await _approve(t, "po", "disp-1", "case-0042"),  # not a case id at all
        await _approve(t, "po", "disp-1", t.east_case),  # west-district dispatcher, east-district case
        await _approve(t, "po", "disp-d2", t.west_case),  # and the other way round
        await _approve(t, "po2", "po-3"),  # an officer without a jurisdiction has no trace scope
    ]
    assert [(s, b["error"]) for s, b in refused] == [(403, "approval_invalid")] * len(refused)
    assert len({b["detail"] for _, b in refused[3:7]}) == 1  # a missing case and a foreign one look alike
    entries = [e for e in await _trail(t) if e["action"] == "trace_approve_refused"]
    assert len(entries) == len(refused)
    assert {e["subject"] for e in entries} == {SUBJECT.of("holder-7")} and {e["who"] for e in entries} >= {"po-1"}
    assert {e["case_ref"] for e in entries} == {t.west_case, t.east_case, "c" + "0" * 20, ""}  # never free text
    assert not [e for e in await _trail(t) if e["action"] == "trace_approve"]
    status, body = await _approve(t, "po", "disp-1", since=(NOW - timedelta(days=23)).isoformat())
    assert (status, body["error"]) == (422, "outside_retention")
    status, body = await _approve(t, "po", "disp-1", since=None)
    assert (status, body["error"]) == (422, "invalid_range")
    status, body = await _approve(t, "po", "disp-1", until="tomorrow")
    assert (status, body["error"]) == (422, "invalid_range")
    assert (await _trail(t))[-1]["action"] == "trace_approve_refused"
    status, body = await _approve(t, "po", "disp-1", valid_s=2 * 86400)
    assert (status, body["error"]) == (422, "invalid_range")
    assert (await _approve(t, "po", "disp-d2", t.east_case))[0] == 201  # in scope: granted


async def test_one_approval_traces_one_holder_one_case_one_window_once(traced: Traced) -> None:
    t = traced
    since, until = NOW - timedelta(days=2, hours=1), NOW - timedelta(hours=12)
    approval = await _approval(t, "po", "disp-1", since=since.isoformat(), until=until.isoformat())
    attempts = [
        await _trace(t, "dispatcher", approval_id=approval, holder_ref="holder-8"),  # another holder
        await _trace(t, "dispatcher", t.east_case, approval_id=approval),  # another case
        await _trace(t, "dispatcher", approval_id=approval, since=(since - timedelta(hours=1)).isoformat(),
                     until=until.isoformat()),  # starts before the window
        await _trace(t, "dispatcher", approval_id=approval, since=since.isoformat(), until=NOW.isoformat()),
        await _trace(t, "sup", approval_id=approval),  # another requester
        await _trace(t, "dispatcher", approval_id="apv_" + "0" * 32),
    ]
    assert attempts == [INVALID] * len(attempts)
    status, body = await _trace(t, "dispatcher", approval_id=approval)  # default: the approved window
    assert status == 200 and (body["since"], body["until"]) == (since.isoformat(), until.isoformat())
    assert [v["place"] for v in body["visits"]] == ["place-b"]  # place-z (day -2) is east: withheld
    assert (await _trace(t, "dispatcher", approval_id=approval)) == INVALID  # twice: no


async def test_a_west_district_dispatcher_gets_no_east_district_visits(traced: Traced) -> None:
    t = traced
    west = await _trace(t, "dispatcher", approval_id=await _approval(t, "po", "disp-1"))
    assert west[0] == 200 and {v["place"] for v in west[1]["visits"]} == {"place-a", "place-b", "place-c"}
    assert set(west[1]) == {"visits", "days", "truncated", "result_count", "since", "until"}  # no withheld count
    east = await _trace(t, "disp-d2", t.east_case, approval_id=await _approval(t, "po", "disp-d2", t.east_case))
    assert east[0] == 200 and [v["place"] for v in east[1]["visits"]] == ["place-z"]


async def test_subject_access_lists_traces_approvals_and_holder_reads_with_who_when_and_case(
    traced: Traced,
) -> None:
    t = traced
    approval = await _approval(t, "po", "disp-1")
    assert (await _trace(t, "dispatcher", approval_id=approval))[0] == 200
    assert (await t.dw.get("h-clinic", f"/v1/cases/{t.west_case}/holder"))[0] == 200
    await _approval(t, "po2", "po-1", holder="holder-8")  # another holder: not listed
    resp = await t.world.client.post("/v1/privacy/subject-access", headers=t.world.auth("po2"),
                                     json={"holder_ref": "holder-7", "purpose": "subject_access"})
    assert resp.status == 200
    body = await resp.json()
    assert body["subject"] == SUBJECT.of("holder-7") and body["next_cursor"] is None
    got = [(e["action"], e["who"], e["case_ref"]) for e in body["entries"]]
    assert got == [("read_holder_ref", "h-clinic", t.west_case), ("contact_trace", "disp-1", t.west_case),
                   ("trace_approve", "po-1", t.west_case)]  # newest first
    assert all(datetime.fromisoformat(e["when"]) >= NOW - timedelta(minutes=5) for e in body["entries"])
    query = (await _trail(t))[-1]
    assert (query["action"], query["who"], query["subject"]) == ("subject_access", "po-2", SUBJECT.of("holder-7"))
    assert query["result_count"] == "3"
    # The issue's GET path reads the same body; a case filter narrows; the earlier query is now listed too.
    resp = await t.world.client.get("/v1/privacy/subject-access", headers=t.world.auth("po"),
                                    json={"holder_ref": "holder-7", "purpose": "subject_access",
                                          "case_ref": t.west_case})
    assert resp.status == 200
    entries = (await resp.json())["entries"]
    assert [e["action"] for e in entries] == ["read_holder_ref", "contact_trace", "trace_approve"]
    everything = await t.world.client.post("/v1/privacy/subject-access", headers=t.world.auth("po"),
                                           json={"holder_ref": "holder-7", "purpose": "subject_access"})
    assert [e["action"] for e in (await everything.json())["entries"]][:2] == ["subject_access", "subject_access"]
    for who, body_, status, code in (
        ("po", {"holder_ref": "holder-7", "purpose": "epidemic_prevention"}, 403, "purpose_not_allowed"),
        ("po", {"holder_ref": "", "purpose": "subject_access"}, 400, "invalid_request"),
        ("po", {"holder_ref": "holder-7", "purpose": "subject_access", "cursor": "x"}, 422, "invalid_range"),
        ("dispatcher", {"holder_ref": "holder-7", "purpose": "subject_access"}, 403, "forbidden"),
        ("sup", {"holder_ref": "holder-7", "purpose": "subject_access"}, 403, "forbidden"),
    ):
        resp = await t.world.client.post("/v1/privacy/subject-access", headers=t.world.auth(who), json=body_)
        assert (resp.status, (await resp.json())["error"]) == (status, code), body_


async def test_subject_access_is_bounded_and_pages_towards_older_entries(traced: Traced) -> None:
    from gateway.privacy.subjects import subject_access

    t = traced
    for _ in range(3):
        await _approval(t, "po", "disp-1")
    subject = SUBJECT.of("holder-7")
    first = await subject_access(t.world.redis, subject, limit=2)
    assert len(first.entries) == 2 and first.next_cursor is not None
    rest = await subject_access(t.world.redis, subject, cursor=first.next_cursor)
    assert len(rest.entries) == 1 and rest.next_cursor is None
    capped = await subject_access(t.world.redis, subject, scan_max=1)
    assert capped.scanned == 1 and capped.next_cursor is not None  # stops after scan_max entries


async def test_the_trail_and_the_approvals_carry_the_hash_never_the_holder_reference(traced: Traced) -> None:
    t = traced
    approval = await _approval(t, "po", "disp-1")
    await _approve(t, "po", "nobody-1")  # a refused grant
    await _trace(t, "dispatcher", approval_id="apv_" + "1" * 32)  # a refused trace
    assert (await _trace(t, "dispatcher", approval_id=approval))[0] == 200
    await t.dw.get("h-clinic", f"/v1/cases/{t.west_case}/holder")
    await t.world.client.post("/v1/privacy/subject-access", headers=t.world.auth("po2"),
                              json={"holder_ref": "holder-7", "purpose": "subject_access"})
    raw = await t.world.redis.xrange(AUDIT_STREAM)
    stream_bytes = b"\n".join(k + b"=" + v for _, f in raw for k, v in f.items())
    assert SUBJECT.of("holder-7").encode() in stream_bytes
    assert b"holder-7" not in stream_bytes and b"holder-8" not in stream_bytes
    stored = b""
    async for key in t.world.redis.scan_iter(match="pg:approval:*"):
        stored += key + b"".join(k + v for k, v in (await t.world.redis.hgetall(key)).items())
    assert stored and b"holder-7" not in stored and SUBJECT.of("holder-7").encode() in stored


async def test_a_day_whose_key_has_expired_is_unlinkable(traced: Traced) -> None:
    t = traced
    gone = day_of(NOW - timedelta(days=3))
    await t.world.redis.delete(day_key(gone))  # the key expires; the partition is still there
    assert await t.world.redis.exists(scan_log_key(gone))
    status, body = await _trace(t, "po", approval_id=await _approval(t, "po2", "po-1"))
    assert status == 200 and body["days"][gone] == "unlinkable"
    assert [v["day"] for v in body["visits"]] == [day_of(NOW - timedelta(days=d)) for d in (2, 1, 0)]
    # Nothing left in Redis can link that day's records to the holder: no remaining key reproduces them.
    stored = {f[b"pseudonym"] for _, f in await t.world.redis.xrange(scan_log_key(gone))}
    remaining = [await t.world.redis.get(k) async for k in t.world.redis.scan_iter(match="pg:daykey:*")]
    for key in remaining:
        assert key is not None
        assert not {pseudonym(key, h) for h in ("holder-7", "holder-8")} & stored


async def test_tracing_never_creates_a_day_key(traced: Traced) -> None:
    t = traced
    before = {k async for k in t.world.redis.scan_iter(match="pg:daykey:*")}
    status, body = await _trace(t, "po", approval_id=await _approval(t, "po2", "po-1"))
    assert status == 200 and list(body["days"].values()).count("absent") == 21 - 4
    assert {k async for k in t.world.redis.scan_iter(match="pg:daykey:*")} == before


async def test_the_audit_query_is_bounded_and_filters(traced: Traced) -> None:
    t = traced
    await _trace(t, "po", approval_id=await _approval(t, "po2", "po-1"))
    base_q = {"since": (NOW - timedelta(days=1)).isoformat(), "until": (NOW + timedelta(hours=1)).isoformat()}
    for params, code in (({"until": base_q["until"]}, "invalid_range"),
                         ({**base_q, "since": (NOW - timedelta(days=40)).isoformat()}, "range_too_long"),
                         ({**base_q, "limit": "501"}, "page_too_large"), ({**base_q, "limit": "0"}, "page_too_large"),
                         ({**base_q, "cursor": "abc"}, "invalid_range")):
        resp = await t.world.client.get("/v1/privacy/audit", params=params, headers=t.world.auth("po"))
        assert (resp.status, (await resp.json())["error"]) == (422, code), params
    resp = await t.world.client.get("/v1/privacy/audit", params={**base_q, "action": "contact_trace"},
                                    headers=t.world.auth("po"))
    entries = (await resp.json())["entries"]
    assert [(e["who"], e["case_ref"]) for e in entries] == [("po-1", t.west_case)]
    mine = await t.world.client.get("/v1/privacy/audit", params={**base_q, "principal": "po-1", "limit": "500"},
                                    headers=t.world.auth("po"))
    assert {e["who"] for e in (await mine.json())["entries"]} == {"po-1"}
    assert (await _trail(t))[-1]["action"] == "audit_query"  # reading the trail is itself audited
    verify = await (await t.world.client.get("/v1/privacy/audit/verify", headers=t.world.auth("po"))).json()
    assert verify["ok"] is True and verify["count"] >= 3


async def test_retention_report_and_ropa_reflect_the_running_configuration(traced: Traced) -> None:
    t = traced
    report = await (await t.world.client.get("/v1/privacy/retention", headers=t.world.auth("po"))).json()
    assert report["retention_days"] == 21
    days = {p["day"]: p for p in report["scan_log"]["partitions"]}
    assert set(days) == {day_of(NOW - timedelta(days=d)) for d in (0, 1, 2, 3)}
    assert all(p["day_key"] == "present" for p in days.values())
    assert sorted(p["entries"] for p in days.values()) == [2, 2, 2, 4]
    ropa = await (await t.world.client.get("/v1/privacy/ropa", headers=t.world.auth("po"))).json()
    assert ropa["purposes"] == ["epidemic_prevention"] and ropa["settings"]["retention_days"] == 21
    assert ropa["access"]["POST /v1/privacy/trace"] == ["dispatcher", "privacy_officer", "supervisor"]
    assert ropa["access"]["POST /v1/privacy/subject-access"] == ["privacy_officer"]


def _placegate(*args: str, redis_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLACEGATE_DATA_DIR": str(tmp_path), "PLACEGATE_SECRET": base.SECRET.reveal().hex(),
           "PLACEGATE_RETENTION_DAYS": "21"}
    return subprocess.run([sys.executable, "-m", "gateway", "privacy", *args, "--redis-url", redis_url],
                          capture_output=True, text=True, env=env, timeout=60, check=False)  # fmt: skip


async def test_the_cli_trace_needs_another_officers_approval_too(
    traced: Traced, redis_url: str, tmp_path: Path
) -> None:
    t = traced
    token_file = tmp_path / "po-1.token"  # the CLI acts as an officer only with that officer's token
    token_file.write_text(t.world.tokens["po"])
    token_file.chmod(0o600)
    args = ["trace", "--token-file", str(token_file), "--holder", "holder-7", "--case-ref", t.west_case]
    alone = await asyncio.to_thread(_placegate, *args, "--approval", "apv_" + "0" * 32, redis_url=redis_url,
                                    tmp_path=tmp_path)
    assert alone.returncode == 2 and "approval_required" in alone.stderr
    approval = await _approval(t, "po2", "po-1")
    done = await asyncio.to_thread(_placegate, *args, "--approval", approval, redis_url=redis_url,
                                   tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"result_count": 5' in done.stdout
    entry = (await _trail(t))[-1]
    assert (entry["action"], entry["who"], entry["subject"]) == ("contact_trace", "po-1", SUBJECT.of("holder-7"))
    again = await asyncio.to_thread(_placegate, *args, "--approval", approval, redis_url=redis_url,
                                    tmp_path=tmp_path)
    assert again.returncode == 2 and "approval_invalid" in again.stderr
