"""The console without a browser (aiohttp's client on a live gateway and the suite's Redis): sessions, form
tokens, security headers and role refusals, and each role's main task end to end."""

from __future__ import annotations

import io
import re

import aiohttp
import orjson

from crypto.native import Colour
from gateway.appstate import ACCESS_LOG
from gateway.console.web import COOKIE, CSP
from gateway.dispatch.store import valid_case_id
from gateway.keyspace import console_session_key
from gateway.trust.registry import Registry
from tests.console.conftest import ConsoleWorld, ConsoleWorldFactory, csrf_of, sign_in
from tests.evidence_files import png


async def test_sign_in_sets_a_strict_http_only_expiring_cookie_and_stores_no_token(cw: ConsoleWorld) -> None:
    form = await cw.client.get("/console/signin")
    resp = await cw.client.post("/console/signin", data={"csrf": csrf_of(await form.text()),
                                                         "token": cw.token("disp-1")}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/console/queue")
    cookie = resp.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/console/"
    assert int(cookie["max-age"]) == cw.dw.world.settings.console_session_s
    assert not cookie["secure"]  # plain HTTP here; behind TLS: the next test
    keys = [k.decode() for k in [k async for k in cw.dw.world.redis.scan_iter(match="pg:console:session:*")]]
    assert len(keys) == 1 and re.fullmatch(r"pg:console:session:[0-9a-f]{64}", keys[0])
    assert cookie.value not in keys[0]  # named by the id's hash, not the id
    stored = {k.decode(): v.decode() for k, v in (await cw.dw.world.redis.hgetall(keys[0])).items()}
    assert stored["principal"] == "disp-1" and cw.token("disp-1") not in str(stored)
    assert 0 < await cw.dw.world.redis.ttl(keys[0]) <= cw.dw.world.settings.console_session_s


async def test_the_cookie_is_secure_behind_tls(cw: ConsoleWorld) -> None:
    form = await cw.client.get("/console/signin", headers={"X-Forwarded-Proto": "https"})
    pre = form.cookies["pg_console_pre"]
    assert pre["secure"]
    # The client's jar keeps a Secure cookie off plain HTTP, as a browser would: the proxy's hop is TLS.
    resp = await cw.client.post("/console/signin", data={"csrf": csrf_of(await form.text()),
                                                         "token": cw.token("disp-1")},
                                headers={"X-Forwarded-Proto": "https", "Cookie": f"pg_console_pre={pre.value}"},
                                allow_redirects=False)
    assert resp.status == 303 and resp.cookies[COOKIE]["secure"]


async def test_devices_apps_and_the_feeder_cannot_sign_in(cw: ConsoleWorld) -> None:
    for who in ("dev-a", "app", "feeder"):
        form = await cw.client.get("/console/signin")
        resp = await cw.client.post("/console/signin", data={"csrf": csrf_of(await form.text()),
                                                             "token": cw.token(who)}, allow_redirects=False)
        assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "forbidden"), who
        assert COOKIE not in resp.cookies


async def test_an_unknown_token_is_refused_like_a_malformed_one(cw: ConsoleWorld) -> None:
    for token in ("pgt_" + "A" * 43, "nonsense"):
        form = await cw.client.get("/console/signin")
        resp = await cw.client.post("/console/signin", data={"csrf": csrf_of(await form.text()), "token": token})
        assert (resp.status, resp.headers["X-Placegate-Error"]) == (401, "invalid_token")


async def test_a_post_without_the_form_token_is_refused(cw: ConsoleWorld) -> None:
    await cw.client.get("/console/signin")
    resp = await cw.client.post("/console/signin", data={"token": cw.token("disp-1")})
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "csrf_failed")
    csrf = await sign_in(cw.client, cw.token("sm-a"))
    body = {"place": "place-a", "event_class": "crowding", "ago": "0"}
    for bad in ({}, {"csrf": "x" * 43}):
        resp = await cw.client.post("/console/site/report", data={**body, **bad})
        assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "csrf_failed")
    assert await cw.dw.world.redis.xlen("pg:dispatch:intake") == 0
    resp = await cw.client.post("/console/site/report", data={**body, "csrf": csrf})
    assert resp.status == 202


async def test_every_console_answer_carries_the_strict_policy(cw: ConsoleWorld) -> None:
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "frame-ancestors 'none'" in CSP
    await sign_in(cw.client, cw.token("disp-1"))
    for path in ("/console/signin", "/console/queue", "/console/figures", "/console/static/console.css",
                 "/console/site"):
        resp = await cw.client.get(path, allow_redirects=False)
        assert resp.headers["Content-Security-Policy"] == CSP, path
        assert resp.headers["X-Frame-Options"] == "DENY", path
        text = await resp.text()
        assert "<script>" not in text and " style=" not in text and "onclick" not in text, path


async def test_another_roles_page_is_refused(cw: ConsoleWorld) -> None:
    await sign_in(cw.client, cw.token("sm-a"))
    for path in ("/console/queue", "/console/figures"):
        resp = await cw.client.get(path)
        assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "forbidden"), path
    await sign_in(cw.client, cw.token("h-police"))
    resp = await cw.client.get("/console/site")
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "forbidden")
    resp = await cw.client.get("/console/figures")
    assert resp.status == 403


async def test_signed_out_pages_lead_to_the_sign_in_form(cw: ConsoleWorld) -> None:
    resp = await cw.client.get("/console/queue", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/console/signin")


async def test_sign_out_deletes_the_session(cw: ConsoleWorld) -> None:
    csrf = await sign_in(cw.client, cw.token("disp-1"))
    session_id = cw.client.session.cookie_jar.filter_cookies(cw.client.make_url("/console/"))[COOKIE].value
    resp = await cw.client.post("/console/signout", data={"csrf": csrf}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/console/signin")
    assert [k async for k in cw.dw.world.redis.scan_iter(match="pg:console:session:*")] == []
    assert console_session_key("0" * 64).startswith("pg:console:session:")
    cw.client.session.cookie_jar.update_cookies({COOKIE: session_id}, cw.client.make_url("/console/"))
    resp = await cw.client.get("/console/queue", allow_redirects=False)
    assert resp.status == 303  # the old cookie opens nothing


async def test_a_revoked_token_ends_its_console_session(make_cw: ConsoleWorldFactory) -> None:
    cw = await make_cw(principal_cache_s=0)  # no cache delay before the revocation counts
    await sign_in(cw.client, cw.token("disp-1"))
    assert (await cw.client.get("/console/queue", allow_redirects=False)).status == 200
    assert await Registry(cw.dw.world.redis).revoke_principal("disp-1")
    resp = await cw.client.get("/console/queue", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/console/signin")


async def test_a_report_becomes_a_case_dispatched_handled_and_passed(cw: ConsoleWorld) -> None:
    csrf = await sign_in(cw.client, cw.token("sm-a"))
    resp = await cw.client.post("/console/site/report", data={
        "csrf": csrf, "place": "place-a", "event_class": "refused_verification", "ago": "15",
        "note": "refused at the door, call 13812345678"})  # fmt: skip
    page = await resp.text()
    assert resp.status == 202
    case_id = re.search(r'data-case="([^"]+)"', page)[1]  # type: ignore[index]
    assert valid_case_id(case_id) and "13812345678" not in page
    await cw.dw.pump()

    async def act(who: str, action: str, **extra: str) -> str:
        csrf = await sign_in(cw.client, cw.token(who))
        resp = await cw.client.post(f"/console/cases/{case_id}/act",
                                    data={"csrf": csrf, "action": action, **extra})
        text = await resp.text()
        assert resp.status == 200 and f'data-done="{action}"' in text, text[-1500:]
        return re.search(r'data-state="([a-z_]+)"', text)[1]  # type: ignore[index]

    refused = await cw.client.get("/console/queue")  # a site manager sees no case queue
    assert refused.status == 403 and case_id not in await refused.text()
    await sign_in(cw.client, cw.token("disp-1"))
    assert case_id in await (await cw.client.get("/console/queue")).text()
    for action, state in (("accept", "accepted"), ("file", "filed"), ("dispatch", "dispatched")):
        assert await act("disp-1", action) == state
    assert await act("h-police", "start") == "in_progress"
    assert await act("h-police", "feed_back", note="spoke to the guard") == "checking"
    await sign_in(cw.client, cw.token("sup-d1"))
    checks = await (await cw.client.get("/console/queue?state=checking")).text()
    assert case_id in checks
    assert await act("sup-d1", "check", result="pass") == "closed"


async def test_the_privacy_officer_filters_pages_and_verifies_the_trail(cw: ConsoleWorld) -> None:
    for _ in range(3):  # three audited case reads by the dispatcher
        await sign_in(cw.client, cw.token("disp-1"))
    csrf = await sign_in(cw.client, cw.token("po-1"))
    page = await (await cw.client.get("/console/privacy/audit")).text()
    assert 'data-action="case_list"' in page
    resp = await cw.client.post("/console/privacy/audit", data={"csrf": csrf, "hours": "1", "principal": "disp-1",
                                                                "action": "case_list"})
    text = await resp.text()
    assert resp.status == 200 and text.count('data-action="case_list"') == 3 and 'data-action="audit_query"' not in text
    resp = await cw.client.post("/console/privacy/audit/verify", data={"csrf": csrf})
    assert 'data-chain="ok"' in await resp.text()
    entries = await cw.dw.world.redis.xrevrange("pg:{audit}:log", count=5)
    actions = [f[b"action"].decode() for _, f in entries]
    assert "audit_verify" in actions and "audit_query" in actions  # the officer's own reads are in the trail


async def test_the_audit_filter_never_goes_into_a_url(cw: ConsoleWorld) -> None:
    csrf = await sign_in(cw.client, cw.token("po-1"))
    resp = await cw.client.post("/console/privacy/audit", data={"csrf": csrf, "principal": "holder-secret-1"})
    assert resp.status == 200 and str(resp.url).endswith("/console/privacy/audit")
    text = await resp.text()
    assert "?principal" not in text and "holder-secret-1" in text  # kept in the form's field, not a link


async def test_the_retention_report_highlights_violations(cw: ConsoleWorld) -> None:
    await cw.dw.world.redis.set("pg:console:session:" + "ab" * 32, "x")  # a session key without its TTL
    await sign_in(cw.client, cw.token("po-1"))
    text = await (await cw.client.get("/console/privacy/retention")).text()
    assert 'data-violations="' in text and "no_expiry" in text and 'class="broken"' in text


async def test_an_officer_grants_an_approval_and_sees_it_pending_then_used(cw: ConsoleWorld) -> None:
    case_id = await cw.dw.event("status_red")
    await cw.dw.pump()
    csrf = await sign_in(cw.client, cw.token("po-2"))
    resp = await cw.client.post("/console/privacy/approvals", data={
        "csrf": csrf, "purpose": "epidemic_prevention", "requester": "disp-1", "case_ref": case_id,
        "holder_ref": "holder-x", "days": "7", "valid_h": "1"})  # fmt: skip
    text = await resp.text()
    assert resp.status == 201, text[-800:]
    approval_id = re.search(r'data-approval="(apv_[0-9a-f]{32})"', text)[1]  # type: ignore[index]
    assert f'data-approval="{approval_id}" data-state="pending"' in text
    assert "holder-x" not in text  # the reference is not echoed back
    trace = await cw.client.post("/v1/privacy/trace", headers=cw.dw.world.auth("disp-1"), json={
        "holder_ref": "holder-x", "purpose": "epidemic_prevention", "case_ref": case_id,
        "approval_id": approval_id})  # fmt: skip
    assert trace.status == 200, await trace.text()
    text = await (await cw.client.get("/console/privacy/approvals")).text()
    assert f'data-approval="{approval_id}" data-state="used"' in text
    resp = await cw.client.post("/console/privacy/approvals", data={
        "csrf": csrf, "purpose": "epidemic_prevention", "requester": "po-2", "case_ref": case_id,
        "holder_ref": "holder-x"})  # fmt: skip
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "approval_invalid")  # not to oneself


async def test_the_privacy_pages_are_refused_to_other_roles(cw: ConsoleWorld) -> None:
    await sign_in(cw.client, cw.token("sup-d1"))
    for path in ("/console/privacy/audit", "/console/privacy/approvals", "/console/privacy/retention"):
        resp = await cw.client.get(path)
        assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "forbidden"), path


async def test_the_holder_read_asks_the_purpose_first_and_shows_that_it_was_recorded(cw: ConsoleWorld) -> None:
    case_id = await cw.dw.event("status_red", holder="holder-77")
    await cw.dw.pump()  # a scan's case is accepted, filed and dispatched to the clinic at once
    csrf = await sign_in(cw.client, cw.token("h-clinic"))
    page = await (await cw.client.get(f"/console/cases/{case_id}")).text()
    assert f'action="/console/cases/{case_id}/holder"' in page and 'name="purpose"' in page
    assert "holder-77" not in page
    resp = await cw.client.post(f"/console/cases/{case_id}/holder", data={"csrf": csrf})
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "purpose_not_allowed")
    resp = await cw.client.post(f"/console/cases/{case_id}/holder", data={"csrf": csrf,
                                                                         "purpose": "epidemic_prevention"})
    text = await resp.text()
    assert resp.status == 200 and '<output id="holder-ref">holder-77</output>' in text
    assert str(resp.url).endswith(f"/console/cases/{case_id}/holder")  # the reference is in no URL
    audit_id = re.search(r'data-audit="([0-9]+-[0-9]+)"', text)[1]  # type: ignore[index]
    [(_, fields)] = await cw.dw.world.redis.xrange("pg:{audit}:log", audit_id, audit_id)
    assert (fields[b"action"], fields[b"who"], fields[b"case_ref"]) == (b"read_holder_ref", b"h-clinic",
                                                                         case_id.encode())


async def test_a_city_dispatcher_routes_a_case_of_the_unrouted_queue(make_cw: ConsoleWorldFactory) -> None:
    cw = await make_cw()
    case_id = await cw.dw.event("status_red", place="place-q", jurisdiction="elsewhere/x1/y1/z1/w1")
    await cw.dw.pump()
    await sign_in(cw.client, cw.token("disp-1"))  # a district dispatcher does not see the city's queue
    assert case_id not in await (await cw.client.get("/console/queue?unrouted=yes")).text()
    csrf = await sign_in(cw.client, cw.token("disp-city"))
    assert case_id in await (await cw.client.get("/console/queue?unrouted=yes")).text()
    page = await (await cw.client.get(f"/console/cases/{case_id}")).text()
    assert 'data-action="route"' in page
    resp = await cw.client.post(f"/console/cases/{case_id}/act",
                                data={"csrf": csrf, "action": "route", "department": "city-cdc"})
    assert resp.status == 200 and 'data-done="route"' in await resp.text()
    assert (await cw.dw.case(case_id)).department == "city-cdc"


async def test_a_refused_action_shows_the_case_with_its_stable_code(cw: ConsoleWorld) -> None:
    case_id = await cw.dw.event("status_red")
    await cw.dw.pump()
    csrf = await sign_in(cw.client, cw.token("h-clinic"))
    resp = await cw.client.post(f"/console/cases/{case_id}/act", data={"csrf": csrf, "action": "return"})
    assert (resp.status, await _error_of(resp)) == (422, "reason_required")
    resp = await cw.client.post(f"/console/cases/{case_id}/act", data={"csrf": csrf, "action": "close"})
    assert (resp.status, await _error_of(resp)) == (409, "illegal_transition")  # not from "dispatched"
    await sign_in(cw.client, cw.token("h-police"))  # another department: the case does not exist for it
    resp = await cw.client.get(f"/console/cases/{case_id}")
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (404, "not_found")


async def _error_of(resp: object) -> str:
    text = await resp.text()  # type: ignore[attr-defined]
    return re.search(r'data-error="([a-z_]+)"', text)[1]  # type: ignore[index]


async def test_a_site_manager_follows_their_reports_and_the_exception_counts_of_their_places(
    cw: ConsoleWorld,
) -> None:
    world = cw.dw.world
    await world.set_status("holder-red", Colour.RED)
    assert (await world.scan(world.code("holder-red"), who="dev-a"))[1]["reason"] == "status_red"
    assert (await world.scan(world.code("holder-red"), who="dev-b"))[1]["reason"] == "status_red"  # not theirs
    csrf = await sign_in(cw.client, cw.token("sm-a"))
    resp = await cw.client.post("/console/site/report", data={"csrf": csrf, "place": "place-a",
                                                              "event_class": "crowding", "ago": "0"})
    case_id = re.search(r'data-case="([^"]+)"', await resp.text())[1]  # type: ignore[index]
    page = await (await cw.client.get("/console/site")).text()
    assert f'data-report="{case_id}" data-state="queued"' in page
    await cw.dw.pump()
    page = await (await cw.client.get("/console/site")).text()
    assert f'data-report="{case_id}" data-state="reported"' in page
    # Today's and the last 14 days' counts of their own place only, per reason; no holder, no case of the scans.
    row = re.search(r'data-place="place-a">.*?<tr data-reason="status_red">.*?<td>(\d+)</td><td>(\d+)</td>',
                    page, flags=re.S)
    assert row is not None and row[2] == "1" and row[1] in ("0", "1")  # "today" is 0 if the UTC day just turned
    assert 'data-place="place-b"' not in page and "holder-red" not in page


async def test_a_dispatcher_merges_a_case_into_another(cw: ConsoleWorld) -> None:
    kept = await cw.dw.event("status_red", holder="holder-1")
    absorbed = await cw.dw.event("status_red", holder="holder-2")
    await cw.dw.pump()
    csrf = await sign_in(cw.client, cw.token("disp-1"))
    assert 'data-action="merge"' in await (await cw.client.get(f"/console/cases/{absorbed}")).text()
    resp = await cw.client.post(f"/console/cases/{absorbed}/act", data={"csrf": csrf, "action": "merge",
                                                                       "into": kept})
    text = await resp.text()
    assert resp.status == 200 and 'data-state="cancelled"' in text and f"merged into {kept}" in text
    assert [e.action.value for e in (await cw.dw.case(kept)).history][-1] == "merge"


async def test_a_handler_attaches_a_photo_and_downloads_it_audited(cw: ConsoleWorld) -> None:
    case_id = await cw.dw.event("status_red")
    await cw.dw.pump()
    csrf = await sign_in(cw.client, cw.token("h-clinic"))
    photo = png(b"scene")
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("file", photo, filename="scene.png", content_type="application/octet-stream")
    resp = await cw.client.post(f"/console/cases/{case_id}/attachments", data=form)
    text = await resp.text()
    assert resp.status == 200 and 'data-done="attach"' in text and 'data-attachment="1"' in text
    resp = await cw.client.get(f"/console/cases/{case_id}/attachments/1")
    assert (resp.status, resp.content_type, await resp.read()) == (200, "image/png", photo)
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    [(_, last)] = await cw.dw.world.redis.xrevrange("pg:{audit}:log", count=1)
    assert (last[b"action"], last[b"object"]) == (b"attachment_read", f"attachment:{case_id}:1".encode())
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("file", b"not a picture", filename="x.txt")
    resp = await cw.client.post(f"/console/cases/{case_id}/attachments", data=form)
    assert (resp.status, await _error_of(resp)) == (415, "unsupported_attachment_type")
    await sign_in(cw.client, cw.token("h-police"))  # another department: neither the case nor its files
    assert (await cw.client.get(f"/console/cases/{case_id}/attachments/1")).status == 404


async def test_numbers_from_input_never_cause_a_500(cw: ConsoleWorld) -> None:
    csrf = await sign_in(cw.client, cw.token("sup-d1"))
    for raw in ("9" * 5000, "²", "١٢", "-1"):
        assert (await cw.client.get("/console/figures", params={"days": raw})).status == 200
        assert (await cw.client.get("/console/queue", params={"cursor": raw})).status == 200
    csrf = await sign_in(cw.client, cw.token("po-1"))
    resp = await cw.client.post("/console/privacy/audit", data={"csrf": csrf, "hours": "9" * 5000})
    assert resp.status == 200
    await sign_in(cw.client, cw.token("h-clinic"))
    resp = await cw.client.get(f"/console/cases/c{'0' * 20}/attachments/{'9' * 5000}")
    assert resp.status == 404


async def test_a_site_manager_attaches_evidence_to_their_own_reports_case_only(cw: ConsoleWorld) -> None:
    mine = await cw.dw.event("status_red")  # not a report of theirs
    csrf = await sign_in(cw.client, cw.token("sm-a"))
    resp = await cw.client.post("/console/site/report", data={"csrf": csrf, "place": "place-a",
                                                              "event_class": "crowding", "ago": "0"})
    case_id = re.search(r'data-case="([^"]+)"', await resp.text())[1]  # type: ignore[index]
    await cw.dw.pump()
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("file", png(b"crowd"), filename="crowd.png")
    resp = await cw.client.post(f"/console/site/reports/{case_id}/attachments", data=form)
    assert resp.status == 201 and f'data-attached="{case_id}:1"' in await resp.text()
    form = aiohttp.FormData()
    form.add_field("csrf", csrf)
    form.add_field("file", png(b"other"), filename="other.png")
    resp = await cw.client.post(f"/console/site/reports/{mine}/attachments", data=form)
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (404, "not_found")


async def test_the_access_log_names_the_signed_in_person_never_the_token_or_a_note(cw: ConsoleWorld) -> None:
    sink = io.BytesIO()
    cw.client.app[ACCESS_LOG].stream = sink
    csrf = await sign_in(cw.client, cw.token("sm-a"))
    await cw.client.post("/console/site/report", data={"csrf": csrf, "place": "place-a", "event_class": "crowding",
                                                       "ago": "0", "note": "Jane Doe, jane@example.org"})
    cw.client.app[ACCESS_LOG].flush()
    lines = [orjson.loads(line) for line in sink.getvalue().splitlines()]
    assert [(x["route"], x["principal"]) for x in lines][-2:] == [("/console/site", "sm-a"),
                                                                  ("/console/site/report", "sm-a")]
    assert cw.token("sm-a").encode() not in sink.getvalue() and b"Jane" not in sink.getvalue()


async def test_the_record_of_processing_is_shown_to_officers_and_admins(cw: ConsoleWorld) -> None:
    for who in ("po-1", "admin-1"):
        await sign_in(cw.client, cw.token(who))
        resp = await cw.client.get("/console/privacy/ropa")
        text = await resp.text()
        assert resp.status == 200 and "entry verification (scan)" in text and "legal_basis" in text, who
    await sign_in(cw.client, cw.token("disp-1"))
    assert (await cw.client.get("/console/privacy/ropa")).status == 403


async def test_a_malformed_or_foreign_form_body_is_a_stable_refusal(cw: ConsoleWorld) -> None:
    csrf = await sign_in(cw.client, cw.token("h-clinic"))
    case = f"/console/cases/c{'0' * 20}/act"
    resp = await cw.client.post(case, data=b"--x\r\nnot a part", headers={
        "Content-Type": "multipart/form-data; boundary=x"})  # fmt: skip
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (400, "invalid_request")
    resp = await cw.client.post(case, json={"csrf": csrf, "action": "start"})
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (415, "unsupported_media_type")
    resp = await cw.client.post(case, data={"csrf": csrf, "note": "x" * 20_000})
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (413, "payload_too_large")
