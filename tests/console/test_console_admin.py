"""The administrator's page without a browser: a principal added with its token shown once, revoked and reissued;
a place added with its signed code as a QR image (inline SVG and a PNG download); a device bound to a place."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from crypto.keys import Alg
from crypto.native import verify_place_code
from crypto.trust import Usage
from gateway.trust.keystore import new_issuer_key
from gateway.trust.registry import Registry
from tests.console.conftest import ConsoleWorld, csrf_of, sign_in

_TOKEN = re.compile(r'<output id="new-token"><code>(pgt_[A-Za-z0-9_-]{43})</code>')


async def test_a_principal_is_added_with_its_token_shown_once_then_revoked_and_reissued(cw: ConsoleWorld) -> None:
    csrf = await sign_in(cw.client, cw.token("admin-1"))
    resp = await cw.client.post("/console/admin/principals", data={
        "csrf": csrf, "principal_id": "disp-new", "role": "dispatcher", "jurisdiction": "city/d1"})  # fmt: skip
    text = await resp.text()
    assert resp.status == 201, text[-600:]
    token = _TOKEN.search(text)[1]  # type: ignore[index]
    assert token not in await (await cw.client.get("/console/admin")).text()  # once only
    entries = await cw.dw.world.redis.xrevrange("pg:{audit}:log", count=3)
    issue = next(f for _, f in entries if f[b"action"] == b"token_issue")
    assert (issue[b"who"], issue[b"object"]) == (b"admin-1", b"principal:disp-new")  # audited under the admin

    await sign_in(cw.client, token)  # the new dispatcher signs in with it
    csrf = await sign_in(cw.client, cw.token("admin-1"))
    resp = await cw.client.post("/console/admin/principals/disp-new/revoke", data={"csrf": csrf})
    assert 'data-principal="disp-new" data-state="revoked"' in await resp.text()
    resp = await cw.client.post("/console/admin/principals/disp-new/reissue", data={"csrf": csrf})
    text = await resp.text()
    assert resp.status == 201 and 'data-principal="disp-new" data-state="active"' in text
    assert _TOKEN.search(text)[1] != token  # type: ignore[index]


async def test_a_principal_outside_the_routing_table_is_refused(cw: ConsoleWorld) -> None:
    csrf = await sign_in(cw.client, cw.token("admin-1"))
    resp = await cw.client.post("/console/admin/principals", data={
        "csrf": csrf, "principal_id": "h-x", "role": "handler", "department": "no-such-dept"})  # fmt: skip
    assert resp.status == 400 and "not in the routing table" in await resp.text()
    assert await Registry(cw.dw.world.redis).principal_by_id("h-x") is None


async def test_a_place_is_added_with_its_code_as_a_qr_image(cw: ConsoleWorld) -> None:
    registry = Registry(cw.dw.world.redis)
    key = await new_issuer_key(registry, cw.dw.world.settings, usage=Usage.PLACE, alg=Alg.ES256)
    csrf = await sign_in(cw.client, cw.token("admin-1"))
    resp = await cw.client.post("/console/admin/places", data={
        "csrf": csrf, "place_id": "place-new", "name": "Library", "venue_class": "B",
        "jurisdiction": "city/d1/s1/g1/c1"})  # fmt: skip
    text = await resp.text()
    assert resp.status == 201, text[-600:]
    assert '<svg width="' in text and 'class="segno"' in text
    code = re.search(r'<code class="code">([^<]+)</code>', text)[1]  # type: ignore[index]
    _, trust = await registry.load_trust()
    assert verify_place_code(code, trust, now=datetime.now(UTC)).place_id == "place-new"
    assert trust.get(key.kid) is not None  # signed with the local place key
    resp = await cw.client.post("/console/admin/places/place-new/qr.png", data={"csrf": csrf})
    body = await resp.read()
    assert (resp.status, resp.content_type) == (200, "image/png") and body.startswith(b"\x89PNG\r\n\x1a\n")


async def test_a_device_is_bound_to_a_registered_place(cw: ConsoleWorld) -> None:
    csrf = await sign_in(cw.client, cw.token("admin-1"))
    resp = await cw.client.post("/console/admin/devices", data={"csrf": csrf, "device_id": "dev-new",
                                                                "place": "place-b"})
    assert resp.status == 201 and _TOKEN.search(await resp.text())
    device = await Registry(cw.dw.world.redis).principal_by_id("dev-new")
    assert device is not None and device.places == frozenset({"place-b"})


async def test_the_admin_page_is_refused_to_other_roles_and_devices_cannot_sign_in(cw: ConsoleWorld) -> None:
    await sign_in(cw.client, cw.token("po-1"))
    resp = await cw.client.get("/console/admin")
    assert (resp.status, resp.headers["X-Placegate-Error"]) == (403, "forbidden")
    form = await cw.client.get("/console/signin")
    assert csrf_of(await form.text())
