# ruff: noqa: RUF001  # a Chinese note uses full-width punctuation: that is what is stored and searched
"""The whole gateway, then every stored byte searched (issue 14, PRIVACY.md's closing claim).

On a private server with AOF on (so the data directory holds every write the server ever accepted, not only
what is left), the test drives every feature the way its users do, over real HTTP: the health authority's
statuses, scans (admits, red and yellow holders, replays, a shared code), a site manager's report whose note
carries a name, an ID-card number, mobile numbers and an e-mail address, case work with personal notes (accept,
dispatch, start, feed back, check fail), a holder read, a two-person trace, a subject-access request and an
audit query; and a digital sentry (issue 18): statuses fed with residents' identity card numbers, ID-card scans
(one in the 15-digit old form), temperatures (one a fever, whose case's holder is read with its reading). Then
every Redis value and every byte of the server's data directory is searched for the raw holder references, the
name, the ID numbers (the note's and the residents', in every form), the temperature readings, the phone numbers,
the e-mail address, every bearer token and the master secret.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from crypto.native import Colour
from gateway.principals import Principal, Role
from gateway.privacy.audit import set_trail_secret
from gateway.redisio import connect_redis
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from policy.masking import id_check_char
from tests.gateway.conftest import SECRET, PrivateServerFactory
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld, DispatchWorldFactory
from tests.gateway.privacy.test_privacy_storage import _dump

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world

NAME = ("Li Xiaoming", "李晓明")
ID = "11010519491231002" + id_check_char("11010519491231002")
PHONES = ("13912345678", "+86 138-0013-8000")
PHONE_DIGITS = ("13912345678", "13800138000")
EMAIL = "li.xiaoming@example.cn"
NOTE = f"住户{NAME[1]}（{NAME[0]}）身份证{ID}，电话{PHONES[0]} / {PHONES[1]}，邮箱{EMAIL}，拒绝扫码"
HOLDERS = [f"citizen-{i:04d}" for i in range(24)]
# Residents who pass the digital sentry by identity card (issue 18): (holder, 18-character number).
RESIDENTS = [(HOLDERS[i], f"31010419{50 + i:02d}0{1 + i % 9}1{i % 3}05{i}" + id_check_char(
    f"31010419{50 + i:02d}0{1 + i % 9}1{i % 3}05{i}")) for i in (3, 4, 5)]
FEVER, NORMAL = 38.6, 36.4  # the readings the sentry takes


@pytest.fixture
async def private_store(make_private_server: PrivateServerFactory) -> AsyncIterator[tuple[Redis, Path]]:
    server = make_private_server(persistent=True)  # AOF on: the directory keeps every accepted write
    client = connect_redis(server.url)
    try:
        yield client, server.directory
    finally:
        await client.aclose()


@pytest.fixture
async def redis(private_store: tuple[Redis, Path]) -> Redis:
    """This module's worlds live on the private server, whose files the test can read."""
    set_trail_secret(SECRET.reveal())  # the audit trail's signing key, as the app under test will set it
    return private_store[0]


def _files(directory: Path) -> bytes:
    return b"\n".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file() and not p.is_socket())


async def _post(dw: DispatchWorld, who: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    resp = await dw.world.client.post(path, json=body, headers=dw.world.auth(who))
    return resp.status, await resp.json()


async def _pump(dw: DispatchWorld) -> None:
    while sum((await dw.pump()).values()):
        pass


async def test_privacy_store_scan(
    make_dispatch_world: DispatchWorldFactory, private_store: tuple[Redis, Path]
) -> None:
    dw: DispatchWorld = await make_dispatch_world(clock=None)
    world, (redis, directory) = dw.world, private_store
    registry = Registry(redis)
    for principal, name in ((Principal("po-a", Role.PRIVACY_OFFICER, jurisdiction="city"), "po-a"),
                            (Principal("po-b", Role.PRIVACY_OFFICER, jurisdiction="city"), "po-b")):
        world.tokens[name] = await create_principal(registry, principal)

    # The health authority's feed, then the morning at three gates.
    colours = {h: Colour.RED if i % 6 == 0 else Colour.YELLOW if i % 6 == 1 else Colour.GREEN
               for i, h in enumerate(HOLDERS)}
    for holder, colour in colours.items():
        await world.set_status(holder, colour)
    for i, holder in enumerate(HOLDERS):
        code = world.code(holder, colour=colours[holder])
        assert (await world.scan(code, who="dev-a"))[0] == 200
        if i % 5 == 2:
            assert (await world.scan(code, who="dev-a"))[1]["reason"] == "replayed"
        if i % 7 == 3:
            assert (await world.scan(code, who="dev-b"))[1]["reason"] == "code_shared"

    # A digital sentry at place-a: the feed names three residents' identity cards, the sentry reads their cards
    # (one in the 15-digit old form) and takes temperatures, one a fever.
    world.tokens["sentry-a"] = await create_principal(
        registry, Principal("sentry-a", Role.DEVICE, frozenset({"place-a"}), id_card=True))
    now_s = int(datetime.now(UTC).timestamp())
    fed = await world.client.put("/v1/status", headers=world.auth("feeder"), json={"records": [
        {"holder": holder, "colour": "green", "updated_at": now_s + 1, "tested_at": now_s - 3600,
         "test_result": "negative", "id_card": number} for holder, number in RESIDENTS]})
    assert fed.status == 200 and (await fed.json())["applied"] == len(RESIDENTS), await fed.text()
    old_form = RESIDENTS[1][1][:6] + RESIDENTS[1][1][8:17]
    for body, reason in (({"id_card": RESIDENTS[0][1], "temperature_c": NORMAL}, "ok"),
                         ({"id_card": old_form}, "ok"),
                         ({"id_card": RESIDENTS[2][1], "temperature_c": FEVER}, "fever")):
        resp = await world.client.post("/v1/scan", json=body, headers=world.auth("sentry-a"))
        assert resp.status == 200 and (await resp.json())["reason"] == reason
    await _pump(dw)

    # A site manager's report with everything personal a note can hold.
    status, report = await _post(dw, "sm-a", "/v1/reports", {
        "event_class": "forced_entry", "place": "place-a", "note": NOTE,
        "time": (datetime.now(UTC) - timedelta(minutes=2)).isoformat(),
    })  # fmt: skip
    assert status == 202, report
    await _pump(dw)

    # Case work on the red holder's case, with personal notes at each step.
    status, queue = await dw.get("dispatcher", "/v1/cases?limit=100")
    assert status == 200
    cases = {c["event_class"]: c for c in queue["cases"]}
    assert {"status_red", "status_yellow", "replayed", "code_shared", "forced_entry", "fever"} <= set(cases)
    world.tokens["h-health"] = await create_principal(
        registry, Principal("h-health", Role.HANDLER, department=cases["fever"]["department"]))
    status, fever = await dw.get("h-health", f"/v1/cases/{cases['fever']['case_id']}/holder")
    assert (status, fever["holder_ref"], fever["temperature_c"]) == (200, RESIDENTS[2][0], FEVER)
    red_case = cases["status_red"]
    handler = next(p.principal_id for p in fx.PRINCIPALS if p.department == red_case["department"])
    assert (await dw.act(handler, red_case["case_id"], "start"))[0] == 200
    status, _ = await dw.act(handler, red_case["case_id"], "feed_back", note=f"visited {NAME[0]}, {PHONES[1]}")
    assert status == 200
    assert (await dw.act("sup-d1", red_case["case_id"], "check", result="fail", note=f"call {EMAIL}"))[0] == 200
    assert (await dw.get("dispatcher", f"/v1/cases/{report['case_id']}"))[0] == 200

    # The people who may see the holder: a holder read, a two-person trace, a subject-access request.
    status, read = await dw.get(handler, f"/v1/cases/{red_case['case_id']}/holder")
    red = read.get("holder_ref")
    assert status == 200 and colours.get(red) is Colour.RED, read
    window = {"since": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
              "until": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}
    status, approval = await _post(dw, "po-a", "/v1/privacy/approvals", {
        "requester": "disp-1", "case_ref": red_case["case_id"], "holder_ref": red, "purpose": "epidemic_prevention",
        "valid_s": 600, **window,
    })  # fmt: skip
    assert status == 201, approval
    status, traced = await _post(dw, "dispatcher", "/v1/privacy/trace", {
        "holder_ref": red, "purpose": "epidemic_prevention", "case_ref": red_case["case_id"],
        "approval_id": approval["approval_id"], **window,
    })  # fmt: skip
    assert status == 200 and traced["result_count"] >= 1, traced
    status, access = await _post(dw, "po-b", "/v1/privacy/subject-access",
                                 {"holder_ref": red, "purpose": "subject_access"})
    assert status == 200 and len(access["entries"]) >= 3, access  # the read, the approval, the trace
    since, until = (datetime.now(UTC) - timedelta(hours=1)).isoformat(), datetime.now(UTC).isoformat()
    audit = await world.client.get("/v1/privacy/audit", params={"since": since, "until": until},
                                    headers=world.auth("po-a"))
    assert audit.status == 200

    # Every stored value, and every byte the server wrote to its directory.
    await redis.execute_command("BGREWRITEAOF")  # an old AOF generation must hold nothing either
    stored = await _dump(redis)
    values = b"\n".join(k + b" " + v for k, (_, v) in stored.items())
    files = _files(directory)
    assert len(files) > 10_000, "the AOF holds the morning's writes"
    for seen in (b"place-a", b"disp-1", red_case["case_id"].encode()):  # the search sees what is stored
        assert seen in values and seen in files, seen
    secret = SECRET.reveal()
    needles: dict[str, bytes] = {
        **{f"holder {h}": h.encode() for h in HOLDERS},
        "name (latin)": NAME[0].encode(), "name (hanzi)": NAME[1].encode(), "ID number": ID.encode(),
        **{f"ID card of {h}": n.encode() for h, n in RESIDENTS},
        **{f"ID card of {h} without its check character": n[:17].encode() for h, n in RESIDENTS},
        "ID card in the old form": old_form.encode(),
        **{f"phone {d}": d.encode() for d in PHONE_DIGITS}, "phone as written": PHONES[1].encode(),
        "e-mail": EMAIL.encode(),
        **{f"token of {who}": token.encode() for who, token in world.tokens.items()},
        "secret (hex)": secret.hex().encode(), "secret (raw)": secret,
    }  # fmt: skip
    found = [what for what, needle in needles.items() if needle in values or needle in files]
    # A reading as a bare number: not a clock's seconds (":38.6"), nor inside a longer number.
    for reading in (FEVER, NORMAL):
        bare = re.compile(rb"(?<![0-9:.])" + re.escape(str(reading).encode()) + rb"(?![0-9])")
        found += [f"reading {reading}"] if bare.search(values) or bare.search(files) else []
    assert found == []
