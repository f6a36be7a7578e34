"""Trust-list sync: the gateway pulls a signed DSC list from a local HTTP server serving a list this test signs,
checks it against the configured trust anchor (and CSCA -> DSC chains), imports it, and refuses (and audits) a
list whose signature fails while the previous one stays. Real Redis, real servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from crypto.dcc_trustlist import load_anchor
from gateway import keyspace
from gateway.app import create_app
from gateway.cli import main
from gateway.privacy.audit import query_audit
from gateway.settings import Settings, SettingsError
from gateway.trust.dsc import DscRegistry
from gateway.trust.sync import RETRY_AFTER_FAILURE_S, sync_dsc_list
from tests.crypto.conftest import make_dsc
from tests.crypto.test_dcc_trustlist import Authority, entry, issued_dsc, make_authority, signed_list
from tests.gateway.conftest import WorldFactory
from tests.gateway.scan.test_hc1_scan import T0, hc1, scan, vaccination

NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Backend:
    """A national backend on 127.0.0.1 serving whatever body the test puts in ``body``."""

    server: TestServer
    body: bytes = b""
    status: int = 200
    hits: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("/trustList/DSC"))


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    app = web.Application()
    state: list[Backend] = []

    async def serve(_request: web.Request) -> web.Response:
        state[0].hits.append(time.monotonic())
        return web.Response(body=state[0].body, status=state[0].status)

    app.router.add_get("/trustList/DSC", serve)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.append(Backend(server))
    try:
        yield state[0]
    finally:
        await server.close()


@pytest.fixture(scope="module")
def anchor() -> Authority:
    return make_authority()


def _tampered(body: bytes) -> bytes:
    head, _, content = body.partition(b"\n")
    signature = bytearray(base64.b64decode(head))
    signature[-1] ^= 1
    return base64.b64encode(bytes(signature)) + b"\n" + content


async def _audit(redis: Redis, action: str) -> list[dict[str, str]]:
    now = datetime.now(UTC)
    page = await query_audit(redis, since=now - timedelta(hours=3), until=now + timedelta(hours=3), limit=50,
                             action=action)
    return [dict(e.fields) for e in page.entries]


async def test_a_signed_list_is_imported(redis: Redis, backend: Backend, anchor: Authority) -> None:
    one, two = make_dsc(), make_dsc("rsa")
    backend.body = signed_list(anchor, [entry(one.der), entry(two.der, country="AT")])
    outcome = await sync_dsc_list(redis, url=backend.url, anchor=load_anchor(anchor.pem), now=NOW)
    assert (outcome.outcome, outcome.stored) == ("imported", 2)
    snapshot = await DscRegistry(redis).load()
    assert {key.kid for key in snapshot.trust.keys} == {one.kid, two.kid} and snapshot.imported_at == NOW
    assert [(e["who"], e["mode"]) for e in await _audit(redis, "dsc_import")] == [("gateway", "replace")]


async def test_a_list_failing_its_signature_is_refused_audited_and_the_previous_one_stays(
    redis: Redis, backend: Backend, anchor: Authority
) -> None:
    kept = make_dsc()
    backend.body = signed_list(anchor, [entry(kept.der)])
    assert (await sync_dsc_list(redis, url=backend.url, anchor=load_anchor(anchor.pem), now=NOW)).outcome == (
        "imported")
    forged = signed_list(anchor, [entry(make_dsc().der)])
    for body in (_tampered(forged), signed_list(make_authority("not the anchor"), [entry(make_dsc().der)])):
        backend.body = body
        outcome = await sync_dsc_list(redis, url=backend.url, anchor=load_anchor(anchor.pem),
                                      now=NOW + timedelta(hours=1))
        assert (outcome.outcome, outcome.code) == ("refused", "trust_list_signature_invalid")
    snapshot = await DscRegistry(redis).load()
    assert [key.kid for key in snapshot.trust.keys] == [kept.kid]
    assert snapshot.imported_at == NOW  # its age keeps counting from the last good list
    refusals = await _audit(redis, "dsc_sync_refused")
    assert [(e["who"], e["outcome"]) for e in refusals] == [("gateway", "trust_list_signature_invalid")] * 2


async def test_only_dscs_a_listed_csca_issued_are_imported(redis: Redis, backend: Backend, anchor: Authority) -> None:
    csca = make_authority("placegate test CSCA DE")
    good, forged = issued_dsc(csca), issued_dsc(make_authority("placegate test CSCA DE"))
    backend.body = signed_list(anchor, [entry(csca.der, "CSCA"), entry(good.der), entry(forged.der)])
    outcome = await sync_dsc_list(redis, url=backend.url, anchor=load_anchor(anchor.pem), now=NOW)
    assert (outcome.outcome, outcome.stored, outcome.dropped) == ("imported", 1, 1)
    assert [key.kid for key in (await DscRegistry(redis).load()).trust.keys] == [good.kid]


async def test_an_unreachable_backend_changes_nothing_and_is_tried_again_soon(
    redis: Redis, backend: Backend, anchor: Authority
) -> None:
    backend.status = 503
    await redis.set(keyspace.DSC_SYNC_LOCK, "1", ex=3600)
    outcome = await sync_dsc_list(redis, url=backend.url, anchor=load_anchor(anchor.pem), now=NOW)
    assert outcome.outcome == "unreachable"
    assert 0 < await redis.ttl(keyspace.DSC_SYNC_LOCK) <= RETRY_AFTER_FAILURE_S
    assert await redis.exists(keyspace.DSC_TRUST_IMPORTED_AT) == 0
    assert await _audit(redis, "dsc_sync_refused") == []


async def test_the_gateway_pulls_the_list_on_its_schedule(
    make_world: WorldFactory, backend: Backend, anchor: Authority, tmp_path: Path
) -> None:
    signer = make_dsc(not_before=T0 - timedelta(days=100), not_after=T0 + timedelta(days=300))
    backend.body = signed_list(anchor, [entry(signer.der)])
    (tmp_path / "anchor.pem").write_bytes(anchor.pem)
    world = await make_world(dsc_sync_url=backend.url, dsc_sync_anchor_file=tmp_path / "anchor.pem",
                             dsc_sync_interval_s=1.0)
    deadline = time.monotonic() + 20
    body: dict[str, object] = {}
    while time.monotonic() < deadline:
        _, body = await scan(world, hc1(signer), who="dev-c")
        if body["reason"] != "trust_list_stale":
            break
        await asyncio.sleep(0.2)
    assert (body["decision"], body["reason"]) == ("admit", "ok")
    # A forged list on the next rounds: refused and audited, and the signer pulled before still verifies.
    backend.body = _tampered(signed_list(anchor, [entry(make_dsc().der)]))
    while time.monotonic() < deadline + 20 and not await _audit(world.redis, "dsc_sync_refused"):
        await asyncio.sleep(0.2)
    assert await _audit(world.redis, "dsc_sync_refused")
    text = (await (await world.client.get("/metrics")).text()).splitlines()
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text if line.startswith("placegate_dsc_sync")}
    assert counts['placegate_dsc_sync_total{outcome="imported"}'] >= 1
    assert counts['placegate_dsc_sync_total{outcome="refused"}'] >= 1
    _, body = await scan(world, hc1(signer, vaccination(ci="URN:UVCI:01DE/S/2#2")), who="dev-c")
    assert (body["decision"], body["reason"]) == ("admit", "ok")


async def test_trust_sync_command_pulls_once(
    redis_url: str, redis: Redis, backend: Backend, anchor: Authority, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend.body = signed_list(anchor, [entry(make_dsc().der)])
    (tmp_path / "anchor.pem").write_bytes(anchor.pem)
    args = ["trust", "sync", "--url", backend.url, "--anchor", str(tmp_path / "anchor.pem"), "--redis-url", redis_url]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PLACEGATE_SECRET", bytes(range(32)).hex())
        assert await asyncio.to_thread(main, args) == 0
        assert "outcome=imported stored=1" in capsys.readouterr().out
        backend.body = _tampered(backend.body)
        assert await asyncio.to_thread(main, args) == 1
        assert "code=trust_list_signature_invalid" in capsys.readouterr().out
    # The operator who ran the command is the one the trail names, for the import and for the refusal.
    assert [e["who"][:4] for e in await _audit(redis, "dsc_import")] == ["cli:"]
    assert [e["who"][:4] for e in await _audit(redis, "dsc_sync_refused")] == ["cli:"]


def test_a_sync_url_needs_an_anchor_and_an_http_scheme(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PLACEGATE_DSC_SYNC_URL"):
        Settings(dsc_sync_url="https://backend.example/trustList/DSC").validate()
    with pytest.raises(SettingsError, match="PLACEGATE_DSC_SYNC_URL"):
        Settings(dsc_sync_url="file:///etc/passwd", dsc_sync_anchor_file=tmp_path / "a.pem").validate()
    Settings(dsc_sync_url="https://backend.example/trustList/DSC", dsc_sync_anchor_file=tmp_path / "a.pem").validate()


def test_a_bad_anchor_file_stops_the_start_naming_its_variable(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "anchor.pem").write_bytes(b"not a certificate")
    for anchor_file in (tmp_path / "anchor.pem", tmp_path / "absent.pem"):
        bad = replace(settings, dsc_sync_url="https://backend.example/x", dsc_sync_anchor_file=anchor_file)
        with pytest.raises(ValueError, match="PLACEGATE_DSC_SYNC_ANCHOR_FILE"):
            create_app(bad)
