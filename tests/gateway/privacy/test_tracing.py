"""Contact tracing and the privacy officer's API over HTTP on the real Redis: purpose, case reference, the
two-person rule, the retention window, unlinkable days, bounded audit queries, and every query audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.keyspace import AUDIT_STREAM, day_key, scan_log_key
from gateway.principals import Principal, Role
from gateway.privacy.tracing import pseudonym
from gateway.scan.scanlog import day_of
from gateway.scan.state import SCANNER
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway.conftest import PLACES, World, WorldFactory

NOW = datetime.now(UTC)


@pytest.fixture
async def traced(make_world: WorldFactory) -> World:
    world = await make_world(principal_cache_s=0)
    registry = Registry(world.redis)
    world.tokens["po"] = await create_principal(registry, Principal("po-1", Role.PRIVACY_OFFICER))
    world.tokens["po2"] = await create_principal(registry, Principal("po-2", Role.PRIVACY_OFFICER))
    world.tokens["sup"] = await create_principal(registry, Principal("sup-1", Role.SUPERVISOR, jurisdiction="city"))
    world.tokens["sm"] = await create_principal(registry, Principal("sm-1", Role.SITE_MANAGER,
                                                                    frozenset({"place-a"})))
    scanner = world.client.app[SCANNER]
    for days_ago, place in ((0, 0), (1, 1), (3, 2), (3, 0)):
        at = NOW - timedelta(days=days_ago, minutes=5)
        await scanner.scan(world.code("holder-7", now=at), PLACES[place], f"dev-{'abc'[place]}", now=at)
        await scanner.scan(world.code("holder-8", now=at), PLACES[place], f"dev-{'abc'[place]}", now=at)
    return world


async def _trace(world: World, who: str, **body: Any) -> tuple[int, dict[str, Any]]:
    payload = {"holder_ref": "holder-7", "purpose": "epidemic_prevention", "case_ref": "case-0042", **body}
    resp = await world.client.post("/v1/privacy/trace", json=payload, headers=world.auth(who))
    return resp.status, await resp.json()


async def _trail(world: World) -> list[dict[bytes, bytes]]:
    return [f for _, f in await world.redis.xrange(AUDIT_STREAM)]


async def test_a_privacy_officer_traces_one_holder_and_the_query_is_audited(traced: World) -> None:
    status, body = await _trace(traced, "po")
    assert status == 200, body
    assert [(v["place"], v["day"]) for v in body["visits"]] == [
        ("place-c", day_of(NOW - timedelta(days=3))), ("place-a", day_of(NOW - timedelta(days=3))),
        ("place-b", day_of(NOW - timedelta(days=1))), ("place-a", day_of(NOW))]
    assert body["result_count"] == 4 and len(body["days"]) == 22
    entry = (await _trail(traced))[-1]
    assert entry[b"action"] == b"contact_trace" and entry[b"who"] == b"po-1" and entry[b"role"] == b"privacy_officer"
    assert entry[b"case_ref"] == b"case-0042" and entry[b"result_count"] == b"4"
    assert entry[b"purpose"] == b"epidemic_prevention"
    assert all(b"holder-7" not in b"".join(f.values()) for f in await _trail(traced))


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"purpose": "marketing"}, 403, "purpose_not_allowed"),
        ({"purpose": ""}, 403, "purpose_not_allowed"),
        ({"case_ref": ""}, 422, "case_ref_required"),
        ({"since": (NOW - timedelta(days=23)).isoformat()}, 422, "outside_retention"),
        ({"until": (NOW + timedelta(days=2)).isoformat()}, 422, "outside_retention"),
        ({"since": "yesterday"}, 422, "invalid_range"),
        ({"since": "2024-01-01T00:00:00"}, 422, "invalid_range"),
        ({"holder_ref": ""}, 400, "invalid_request"),
        ({"holder_ref": "x" * 65}, 400, "invalid_request"),
    ],
)
async def test_refused_traces_have_stable_codes_and_are_audited(
    traced: World, body: dict[str, Any], status: int, code: str
) -> None:
    got_status, got = await _trace(traced, "po", **body)
    assert (got_status, got["error"]) == (status, code)
    if status != 400:
        last = (await _trail(traced))[-1]
        assert last[b"action"] == b"contact_trace_refused" and last[b"outcome"] == code.encode()


async def test_roles_outside_the_trace_list_get_forbidden(traced: World) -> None:
    for who in ("sm", "dev-a", "app", "feeder"):
        status, body = await _trace(traced, who)
        assert (status, body["error"]) == (403, "forbidden")


async def test_an_investigator_needs_a_single_use_approval_from_another_privacy_officer(traced: World) -> None:
    assert (await _trace(traced, "dispatcher"))[1]["error"] == "approval_required"
    resp = await traced.client.post("/v1/privacy/approvals", headers=traced.auth("po"), json={
        "requester": "disp-1", "case_ref": "case-0042", "purpose": "epidemic_prevention", "valid_s": 600})
    assert resp.status == 201
    approval = (await resp.json())["approval_id"]
    status, body = await _trace(traced, "dispatcher", approval_id=approval)
    assert status == 200 and body["result_count"] == 4
    last = (await _trail(traced))[-1]
    assert last[b"who"] == b"disp-1" and last[b"approver"] == b"po-1" and last[b"approval"] == approval.encode()
    assert (await _trace(traced, "dispatcher", approval_id=approval)) == (
        403, {"error": "approval_invalid", "detail": "no usable approval"})


async def test_a_privacy_officer_cannot_approve_their_own_trace(traced: World) -> None:
    resp = await traced.client.post("/v1/privacy/approvals", headers=traced.auth("po"), json={
        "requester": "po-1", "case_ref": "case-0042", "purpose": "epidemic_prevention"})
    assert (resp.status, (await resp.json())["error"]) == (403, "approval_invalid")


async def test_a_foreign_approval_gets_the_same_answer_as_a_missing_one(traced: World) -> None:
    resp = await traced.client.post("/v1/privacy/approvals", headers=traced.auth("po"), json={
        "requester": "sup-1", "case_ref": "case-0042", "purpose": "epidemic_prevention"})
    for_supervisor = (await resp.json())["approval_id"]
    other_case = (await (await traced.client.post("/v1/privacy/approvals", headers=traced.auth("po2"), json={
        "requester": "disp-1", "case_ref": "case-0099", "purpose": "epidemic_prevention"})).json())["approval_id"]
    answers = {str(await _trace(traced, "dispatcher", approval_id=a))
               for a in (for_supervisor, other_case, "apv_" + "0" * 32, "nonsense")}
    assert answers == {str((403, {"error": "approval_invalid", "detail": "no usable approval"}))}
    assert (await _trace(traced, "sup", approval_id=for_supervisor))[0] == 200  # unharmed by the attempts


async def test_a_day_whose_key_has_expired_is_unlinkable(traced: World) -> None:
    gone = day_of(NOW - timedelta(days=3))
    await traced.redis.delete(day_key(gone))  # the key expires; the partition is still there
    assert await traced.redis.exists(scan_log_key(gone))
    status, body = await _trace(traced, "po")
    assert status == 200 and body["days"][gone] == "unlinkable"
    assert [v["day"] for v in body["visits"]] == [day_of(NOW - timedelta(days=1)), day_of(NOW)]
    # Nothing left in Redis can link that day's records to the holder: no remaining key reproduces them.
    stored = {f[b"pseudonym"] for _, f in await traced.redis.xrange(scan_log_key(gone))}
    remaining = [await traced.redis.get(k) async for k in traced.redis.scan_iter(match="pg:daykey:*")]
    for key in remaining:
        assert key is not None
        assert not {pseudonym(key, h) for h in ("holder-7", "holder-8")} & stored


async def test_tracing_never_creates_a_day_key(traced: World) -> None:
    before = {k async for k in traced.redis.scan_iter(match="pg:daykey:*")}
    status, body = await _trace(traced, "po")
    assert status == 200 and list(body["days"].values()).count("absent") == 22 - 3
    assert {k async for k in traced.redis.scan_iter(match="pg:daykey:*")} == before


async def test_the_audit_query_is_bounded_and_filters(traced: World) -> None:
    await _trace(traced, "po")
    base = {"since": (NOW - timedelta(days=1)).isoformat(), "until": (NOW + timedelta(hours=1)).isoformat()}
    for params, code in (({"until": base["until"]}, "invalid_range"),
                         ({**base, "since": (NOW - timedelta(days=40)).isoformat()}, "range_too_long"),
                         ({**base, "limit": "501"}, "page_too_large"), ({**base, "limit": "0"}, "page_too_large"),
                         ({**base, "cursor": "abc"}, "invalid_range")):
        resp = await traced.client.get("/v1/privacy/audit", params=params, headers=traced.auth("po"))
        assert (resp.status, (await resp.json())["error"]) == (422, code), params
    resp = await traced.client.get("/v1/privacy/audit", params={**base, "action": "contact_trace"},
                                   headers=traced.auth("po"))
    entries = (await resp.json())["entries"]
    assert [(e["who"], e["case_ref"]) for e in entries] == [("po-1", "case-0042")]
    mine = await traced.client.get("/v1/privacy/audit", params={**base, "principal": "po-1", "limit": "500"},
                                   headers=traced.auth("po"))
    assert {e["who"] for e in (await mine.json())["entries"]} == {"po-1"}
    assert (await _trail(traced))[-1][b"action"] == b"audit_query"  # reading the trail is itself audited
    verify = await (await traced.client.get("/v1/privacy/audit/verify", headers=traced.auth("po"))).json()
    assert verify["ok"] is True and verify["count"] >= 3


async def test_retention_report_and_ropa_reflect_the_running_configuration(traced: World) -> None:
    report = await (await traced.client.get("/v1/privacy/retention", headers=traced.auth("po"))).json()
    assert report["violations"] == [] and report["retention_days"] == 21
    days = {p["day"]: p for p in report["scan_log"]["partitions"]}
    assert set(days) == {day_of(NOW - timedelta(days=d)) for d in (0, 1, 3)}
    assert all(p["day_key"] == "present" for p in days.values())
    assert sorted(p["entries"] for p in days.values()) == [2, 2, 4]
    assert len(report["scan_log"]["expired_days"]) == 14
    assert report["classes"]["audit"]["without_expiry"] >= 1 and report["classes"]["status_cache"]["keys"] == 0
    ropa = await (await traced.client.get("/v1/privacy/ropa", headers=traced.auth("po"))).json()
    assert ropa["purposes"] == ["epidemic_prevention"] and ropa["settings"]["retention_days"] == 21
    assert ropa["access"]["POST /v1/privacy/trace"] == ["dispatcher", "privacy_officer", "supervisor"]
    names = {a["name"]: a for a in ropa["activities"]}
    assert "21 days" in names["entry verification (scan)"]["retention"]
    assert names["entry verification (scan)"]["recipients"] == ["app", "device"]
