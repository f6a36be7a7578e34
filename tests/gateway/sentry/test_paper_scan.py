"""The paper code at the gate (issue 18 part 1, item 2): a printed code for a week, no signed colour, decided on the
live status only (never admitted in degraded mode), and `placegate issue --paper` prints it and writes its QR."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.native import Colour
from crypto.paper import issue_paper_code
from gateway import keyspace
from gateway.scan.state import SCANNER
from gateway.trust.refresh import refresh_trust
from tests.gateway.conftest import World, WorldFactory
from tests.gateway.test_keys_cli import assert_refused, run_cli


def paper(world: World, holder: str = "holder-1", *, issued: datetime | None = None) -> str:
    return issue_paper_code(world.health_key, holder_ref=holder, now=issued or datetime.now(UTC),
                            nonce=os.urandom(12))


@pytest.mark.parametrize(("colour", "decision", "reason"), [
    (Colour.GREEN, "admit", "ok"), (Colour.RED, "deny", "status_red"), (Colour.YELLOW, "deny", "status_yellow"),
])
async def test_a_paper_code_is_decided_on_the_live_status(world: World, colour: Colour, decision: str,
                                                         reason: str) -> None:
    await world.set_status("holder-1", colour)
    # Six days old: still valid (a native code would have died five minutes after issue).
    _, body = await world.scan(paper(world, issued=datetime.now(UTC) - timedelta(days=6)), who="dev-c")
    assert (body["decision"], body["reason"]) == (decision, reason)
    assert body["colour"] == (None if colour is Colour.GREEN else colour.label)  # no colour was signed


async def test_a_paper_code_without_a_status_is_unknown(world: World) -> None:
    _, body = await world.scan(paper(world, "nobody"), who="dev-c")
    assert (body["decision"], body["reason"]) == ("review", "status_unknown")


async def test_a_paper_code_past_seven_days_is_expired(world: World) -> None:
    await world.set_status("holder-1")
    _, body = await world.scan(paper(world, issued=datetime.now(UTC) - timedelta(days=7, minutes=1)), who="dev-c")
    assert (body["decision"], body["reason"]) == ("deny", "code_expired")


@pytest.mark.parametrize("device", ["dev-a", "dev-b", "dev-c"])
async def test_a_paper_code_is_never_admitted_in_degraded_mode(make_world: WorldFactory, device: str) -> None:
    # The device and its place are read once with the store answering (cached for the test), then only the scan
    # path's deadline passes at once: a world built with redis_timeout_ms=0 raced its own place read against that
    # deadline too, and on a loaded cluster lost it (a 503 for the place instead of the degraded answer).
    world = await make_world(principal_cache_s=3600)
    status, _ = await world.scan(world.code(), who=device)
    assert status == 200
    world.client.app[SCANNER].redis_timeout_s = 0.0
    # dev-c's class C admits a green native code in degraded mode; a paper code carries no colour to trust.
    _, native = await world.scan(world.code(), who=device)
    _, body = await world.scan(paper(world), who=device)
    assert body["degraded"] is True and body["decision"] != "admit" and body["reason"] == "status_unavailable"
    assert native["decision"] == ("admit" if device == "dev-c" else body["decision"])


async def test_the_same_sheet_at_two_places_within_the_window_is_shared(world: World) -> None:
    await world.set_status("holder-1")
    code = paper(world)
    assert (await world.scan(code, who="dev-c"))[1]["decision"] == "admit"
    _, body = await world.scan(code, who="dev-b")
    assert (body["decision"], body["reason"]) == ("deny", "code_shared")
    # Remembered under a MAC of its identifier for the static window, not for its week.
    keys = [k async for k in world.redis.scan_iter(match="pg:nonce:*")]
    assert len(keys) == 1
    data_class = keyspace.data_class_of(keys[0].decode())
    assert data_class is not None and data_class.name == "static_replay_memory"
    assert 0 < await world.redis.ttl(keys[0]) <= world.settings.dcc_replay_window_s


async def test_issue_paper_prints_the_code_and_writes_a_qr_image(world: World, redis_url: str,
                                                                 tmp_path: Path) -> None:
    assert (await run_cli("keys", "new", "--usage", "health", redis_url=redis_url, data_dir=tmp_path)).returncode == 0
    target = tmp_path / "sheet.png"
    done = await run_cli("issue", "--paper", "--holder", "holder-p", "--qr", str(target), redis_url=redis_url,
                         data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "for demos and tests" in done.stderr and str(target) in done.stderr
    (code,) = done.stdout.splitlines()
    assert code.startswith("PGQ:")
    image = target.read_bytes()
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 200
    import segno
    qr = segno.make_qr(code, error="m")
    assert qr.mode == "alphanumeric"  # base45 fits QR's compact mode as it is
    await refresh_trust(world.client.app, force=True)
    await world.set_status("holder-p")
    _, body = await world.scan(code, who="dev-c")
    assert (body["decision"], body["reason"]) == ("admit", "ok")


async def test_issue_paper_refuses_more_than_one_code_and_a_lifetime_over_seven_days(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    assert (await run_cli("keys", "new", "--usage", "health", redis_url=redis_url, data_dir=tmp_path)).returncode == 0
    cli = {"redis_url": redis_url, "data_dir": tmp_path}
    assert_refused(await run_cli("issue", "--paper", "--holder", "h", "--count", "2", **cli), "one code")
    assert_refused(await run_cli("issue", "--paper", "--holder", "h", "--lifetime", str(8 * 86400), **cli),
                   "cannot issue")


async def test_a_batch_decides_paper_codes_beside_native_codes(world: World) -> None:
    await world.set_status("holder-1")
    await world.set_status("holder-2", Colour.RED)
    codes = [world.code("holder-1"), paper(world, "holder-1"),
             {"code": paper(world, "holder-2"), "temperature_c": 36.2}, paper(world, "nobody")]
    resp = await world.client.post("/v1/scan/batch", json={"codes": codes}, headers=world.auth("dev-c"))
    assert resp.status == 200
    assert [r["reason"] for r in (await resp.json())["results"]] == ["ok", "ok", "status_red", "status_unknown"]
