"""Evidence on a case over HTTP on the real Redis: real PNG, JPEG and PDF files (tests/evidence_files.py), the type
decided by the content, the size and count bounded, the bytes sealed at rest, every download audited, and who may
do what."""

from __future__ import annotations

import io
import os
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway import keyspace
from gateway.keyspace import AUDIT_STREAM
from gateway.privacy.retention import retention_report
from policy.evidence import ATTACHMENT_MAX_BYTES, ATTACHMENTS_MAX, sniff_attachment
from tests.evidence_files import jpeg as _jpeg
from tests.evidence_files import pdf as _pdf
from tests.evidence_files import png as _png
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import T0, DispatchWorld
from tests.gateway.privacy.test_privacy_storage import _dump

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw


async def _case(dw: DispatchWorld) -> str:
    """A site manager's report at place-a (sm-a), made a case and dispatched to d1-police."""
    body = {"event_class": "forced_entry", "place": "place-a", "time": T0.isoformat()}
    resp = await dw.world.client.post("/v1/reports", json=body, headers=dw.world.auth("sm-a"))
    case_id: str = (await resp.json())["case_id"]
    await dw.pump()
    for action in ("accept", "file", "dispatch"):
        assert (await dw.act("dispatcher", case_id, action))[0] == 200
    return case_id


async def _upload(dw: DispatchWorld, who: str, case_id: str, data: Any, ctype: str = "application/octet-stream",
                  **kw: Any) -> tuple[int, dict[str, Any]]:  # fmt: skip
    body = io.BytesIO(data) if isinstance(data, bytes) and len(data) > 65536 else data  # aiohttp warns on big bytes
    resp = await dw.world.client.post(f"/v1/cases/{case_id}/attachments", data=body,
                                      headers={**dw.world.auth(who), "Content-Type": ctype}, **kw)  # fmt: skip
    return resp.status, await resp.json()


async def _download(dw: DispatchWorld, who: str, case_id: str, n: int) -> Any:
    return await dw.world.client.get(f"/v1/cases/{case_id}/attachments/{n}", headers=dw.world.auth(who))


async def _audits(dw: DispatchWorld, action: str) -> list[dict[str, str]]:
    entries = [{k.decode(): v.decode() for k, v in f.items()} for _, f in await dw.world.redis.xrange(AUDIT_STREAM)]
    return [e for e in entries if e.get("action") == action]


async def test_real_png_jpeg_and_pdf_are_attached_by_content_listed_and_downloaded_audited(dw: DispatchWorld) -> None:
    case_id = await _case(dw)
    files = {"image/png": _png(b"m1"), "image/jpeg": _jpeg(b"m2"), "application/pdf": _pdf(b"m3")}
    declared = ["image/jpeg", "image/png", "text/plain"]  # every declared type wrong: the content decides
    for n, ((kind, data), claim) in enumerate(zip(files.items(), declared, strict=True), start=1):
        status, entry = await _upload(dw, "h-police", case_id, data, claim)
        assert status == 201, entry
        assert (entry["n"], entry["content_type"], entry["size"], entry["uploaded_by"]) == (n, kind, len(data),
                                                                                            "h-police")
    status, case = await dw.get("dispatcher", f"/v1/cases/{case_id}")
    assert status == 200 and [a["content_type"] for a in case["attachments"]] == list(files)
    status, listing = await dw.get("sup-d1", f"/v1/cases/{case_id}/attachments")
    assert status == 200 and [a["n"] for a in listing["attachments"]] == [1, 2, 3]
    assert await _audits(dw, "attachment_read") == []
    for n, (kind, data) in enumerate(files.items(), start=1):
        resp = await _download(dw, "dispatcher", case_id, n)
        assert resp.status == 200 and await resp.read() == data
        assert resp.headers["Content-Type"] == kind
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Disposition"].startswith("attachment; filename=")
    reads = await _audits(dw, "attachment_read")
    assert [(e["who"], e["object"], e["case_ref"]) for e in reads] == [
        ("disp-1", f"attachment:{case_id}:{n}", case_id) for n in (1, 2, 3)]
    assert [e["object"] for e in await _audits(dw, "attachment_add")] == [
        f"attachment:{case_id}:{n}" for n in (1, 2, 3)]


async def test_no_stored_value_holds_the_file_in_clear(dw: DispatchWorld) -> None:
    case_id = await _case(dw)
    marker = b"PLACEGATE-EVIDENCE-" + os.urandom(8).hex().encode()
    png = _png(marker) + b""
    assert (await _upload(dw, "h-police", case_id, png))[0] == 201
    assert (await _upload(dw, "h-police", case_id, _pdf(marker)))[0] == 201
    stored = b"\n".join(k + b" " + v for k, (_, v) in (await _dump(dw.world.redis)).items())
    for needle in (marker, b"\x89PNG", b"IHDR", b"%PDF-", zlib.compress(b"\x00\xff\x00\x00")):
        assert needle not in stored, needle
    raw = await dw.world.redis.get(keyspace.case_attachment_key(case_id, 1))
    assert raw is not None and len(raw) == len(png) + 31  # sealed: prefix, nonce and tag, no base64
    assert 0 < await dw.world.redis.pttl(keyspace.case_attachment_key(case_id, 1)) <= keyspace.CASE_RETENTION_S * 1000
    # Every new key (the files, their list, the reporter's index) is classified and within its class's retention.
    report = await retention_report(dw.world.redis, now=datetime.now(UTC), retention_days=21, status_ttl_s=3600)
    classes = report["classes"]
    assert isinstance(classes, dict) and report["violations"] == []
    assert (classes["case_attachments"]["keys"], classes["reporter_reports"]["keys"]) == (3, 2)


@pytest.mark.parametrize(
    ("data", "claim"),
    [
        (b"just some text, renamed photo.png\n", "image/png"),
        (b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>", "image/png"),  # a signature glued on
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"\xff\xd8\xff\xe0 not a jpeg at all", "image/jpeg"),
        (b"%PDF-1.4 never ends", "application/pdf"),
        (b"", "image/png"),
    ],
)
async def test_anything_but_a_framed_png_jpeg_or_pdf_is_refused_415(dw: DispatchWorld, data: bytes, claim: str) -> None:
    case_id = await _case(dw)
    status, body = await _upload(dw, "h-police", case_id, data, claim)
    assert (status, body["error"]) == (415, "unsupported_attachment_type")
    assert await dw.world.redis.exists(keyspace.case_attachments_key(case_id)) == 0


async def test_over_2_mb_is_refused_413_with_or_without_a_length(dw: DispatchWorld) -> None:
    case_id = await _case(dw)
    png = _png(b"x")
    big = png[:-12] + b"\x00" * (ATTACHMENT_MAX_BYTES + 1 - len(png)) + png[-12:]
    assert len(big) == ATTACHMENT_MAX_BYTES + 1 and sniff_attachment(big) == "image/png"
    status, body = await _upload(dw, "h-police", case_id, big, "image/png")
    assert (status, body["error"]) == (413, "attachment_too_large")

    async def chunks() -> Any:
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    status, body = await _upload(dw, "h-police", case_id, chunks(), "image/png")  # chunked: no Content-Length
    assert (status, body["error"]) == (413, "attachment_too_large")
    exact = png[:-12] + b"\x00" * (ATTACHMENT_MAX_BYTES - len(png)) + png[-12:]
    assert (await _upload(dw, "h-police", case_id, exact, "image/png"))[0] == 201  # 2 MB exactly is taken


async def test_a_case_takes_a_bounded_count_and_a_closed_case_takes_none(dw: DispatchWorld) -> None:
    case_id = await _case(dw)
    for _ in range(ATTACHMENTS_MAX):
        assert (await _upload(dw, "h-police", case_id, _png(b"x")))[0] == 201
    status, body = await _upload(dw, "h-police", case_id, _png(b"x"))
    assert (status, body["error"]) == (409, "attachments_full")
    resp = await dw.world.client.post("/v1/reports", json={"event_class": "crowding", "place": "place-a",
                                      "time": T0.isoformat()}, headers=dw.world.auth("sm-a"))  # fmt: skip
    other = (await resp.json())["case_id"]
    await dw.pump()
    assert (await dw.act("dispatcher", other, "cancel", note="duplicate"))[0] == 200
    status, body = await _upload(dw, "sm-a", other, _png(b"x"))
    assert (status, body["error"]) == (409, "case_closed")


async def test_who_may_attach_and_download(dw: DispatchWorld) -> None:
    case_id = await _case(dw)
    assert (await _upload(dw, "h-police", case_id, _png(b"handler's")))[0] == 201
    # The reporting site manager attaches evidence to their own report's case...
    status, mine = await _upload(dw, "sm-a", case_id, _jpeg(b"manager's"))
    assert (status, mine["n"]) == (201, 2)
    # ...and lists and downloads only what they uploaded.
    status, listing = await dw.get("sm-a", f"/v1/cases/{case_id}/attachments")
    assert status == 200 and [a["n"] for a in listing["attachments"]] == [2]
    assert (await _download(dw, "sm-a", case_id, 2)).status == 200
    assert (await _download(dw, "sm-a", case_id, 1)).status == 404
    # Out of scope: another manager, another district, another department: the answer of a missing case.
    for who in ("sm-z", "disp-d2", "sup-d2", "h-clinic"):
        assert (await _upload(dw, who, case_id, _png(b"x")))[0] == 404, who
        assert (await _download(dw, who, case_id, 1)).status == 404, who
        assert (await dw.get(who, f"/v1/cases/{case_id}/attachments"))[0] == 404, who
    assert (await _download(dw, "sup-d1", case_id, 3)).status == 404  # no such number
    assert (await _download(dw, "sup-d1", case_id, 999999)).status == 404
    resp = await dw.world.client.get(f"/v1/cases/{case_id}/attachments/{'1' * 5000}", headers=dw.world.auth("sup-d1"))
    assert resp.status == 404  # thousands of digits: int() would raise, so the length is checked first
    assert (await _download(dw, "sup-d1", "c" + "0" * 20, 1)).status == 404  # no such case
    resp = await dw.world.client.get(f"/v1/cases/{case_id}/attachments/1", headers=dw.world.auth("dev-a"))
    assert resp.status == 403  # a device is none of these roles
    assert len(await _audits(dw, "attachment_read")) == 1  # refusals leave no file and no read entry


async def test_a_sealed_file_copied_to_another_number_does_not_open(dw: DispatchWorld) -> None:
    case_id = await _case(dw)
    for marker in (b"a", b"b"):
        assert (await _upload(dw, "h-police", case_id, _png(marker)))[0] == 201
    redis = dw.world.redis
    await redis.set(keyspace.case_attachment_key(case_id, 2), await redis.get(keyspace.case_attachment_key(case_id, 1)))
    resp = await _download(dw, "h-police", case_id, 2)
    assert (resp.status, (await resp.json())["error"]) == (409, "unseal_failed")
