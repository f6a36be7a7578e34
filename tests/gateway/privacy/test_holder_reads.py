"""Holder reads are minimal and the day pseudonym stays in its log partition (issue 14, items 1b and 6), through
the real HTTP API, the real intake consumer and a real Redis: open cases only, event classes that need a holder
only, 30 reads per principal per hour across gateway processes, the answer holds only the reference, the sealed
reference opens only in its own case, and no stored value outside the log links a case to the day's log."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.kdf import derive_key
from crypto.native import Colour
from crypto.sealing import case_binding, event_binding
from gateway import keyspace
from gateway.app import create_app
from gateway.dispatch.runtime import DISPATCH
from gateway.dispatch.store import case_id_for_event
from gateway.intake import LINKING_FIELDS
from gateway.keyspace import AUDIT_STREAM, DISPATCH_DEADLETTER, DISPATCH_INTAKE
from gateway.scan.scanlog import day_of, pseudonym
from gateway.settings import Settings, SettingsError
from tests.gateway.conftest import SECRET
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw


async def _reads(dw: DispatchWorld) -> list[dict[str, str]]:
    entries = [{k.decode(): v.decode() for k, v in f.items()} for _, f in await dw.world.redis.xrange(AUDIT_STREAM)]
    return [e for e in entries if e.get("action") == "read_holder_ref"]


async def _read(dw: DispatchWorld, who: str, case_id: str) -> tuple[int, dict[str, Any]]:
    return await dw.get(who, f"/v1/cases/{case_id}/holder")


def _legacy_seal(holder_ref: str) -> str:
    """A reference sealed as before the binding (``s1.``: one constant associated data for every blob)."""
    aead = AESGCM(derive_key(SECRET.reveal(), b"placegate/seal/v1"))
    nonce = os.urandom(12)
    return "s1." + base64.urlsafe_b64encode(nonce + aead.encrypt(nonce, holder_ref.encode(),
                                                                 b"placegate/holder-ref/v1")).decode()


async def test_the_answer_is_only_the_case_id_and_holder_ref_and_the_audit_names_the_subject(dw: DispatchWorld) -> None:
    case_id = await dw.event(holder="holder-77")
    await dw.pump()
    status, body = await _read(dw, "h-clinic", case_id)
    assert status == 200
    assert body == {"case_id": case_id, "holder_ref": "holder-77"}
    (audit,) = await _reads(dw)
    assert (audit["who"], audit["case_ref"], audit["purpose"], audit["outcome"]) == (
        "h-clinic", case_id, "epidemic_prevention", "ok")  # fmt: skip
    assert audit["subject"] == dw.runtime.subjects.of("holder-77")
    assert "holder-77" not in str(audit)


async def test_a_closed_case_refuses_holder_reads(dw: DispatchWorld) -> None:
    case_id = await dw.event(holder="holder-c")
    await dw.pump()
    assert (await dw.act("h-clinic", case_id, "start"))[0] == 200
    assert (await _read(dw, "h-clinic", case_id))[0] == 200  # open: readable
    assert (await dw.act("h-clinic", case_id, "feed_back", note="done"))[0] == 200
    status, closed = await dw.act("sup-d1", case_id, "check", result="pass")
    assert (status, closed["state"]) == (200, "closed")
    for who in ("h-clinic", "sup-d1"):
        status, body = await _read(dw, who, case_id)
        assert (status, body["error"]) == (409, "case_closed")
    assert len(await _reads(dw)) == 1  # the refusals read nothing


async def test_a_replayed_case_needs_no_holder_and_refuses_the_read(dw: DispatchWorld) -> None:
    replayed = await dw.event("replayed", holder="holder-green")
    red = await dw.event("status_red", holder="holder-red")
    await dw.pump()
    status, body = await _read(dw, "sup-d1", replayed)
    assert (status, body["error"]) == (403, "holder_not_needed")
    assert (await _read(dw, "sup-d1", red))[0] == 200
    assert [e["case_ref"] for e in await _reads(dw)] == [red]


async def test_the_holder_read_classes_are_a_setting(make_dispatch_world: DispatchWorldFactory) -> None:
    dw = await make_dispatch_world(settings={"holder_read_classes": frozenset({"replayed"})})
    replayed = await dw.event("replayed", holder="holder-green")
    red = await dw.event("status_red", holder="holder-red")
    await dw.pump()
    assert await _read(dw, "sup-d1", replayed) == (200, {"case_id": replayed, "holder_ref": "holder-green"})
    assert (await _read(dw, "sup-d1", red))[1]["error"] == "holder_not_needed"


def test_the_holder_read_settings_parse_strictly() -> None:
    env = {"PLACEGATE_HOLDER_READ_CLASSES": "status_red, replayed", "PLACEGATE_HOLDER_READS_PER_HOUR": "5"}
    parsed = Settings.from_env(env)
    assert (parsed.holder_read_classes, parsed.holder_reads_per_hour) == (frozenset({"status_red", "replayed"}), 5)
    default = Settings.from_env({})
    assert "replayed" not in default.holder_read_classes and default.holder_reads_per_hour == 30
    for name, raw in (("PLACEGATE_HOLDER_READ_CLASSES", "status_red,fire"), ("PLACEGATE_HOLDER_READ_CLASSES", "a,,b"),
                      ("PLACEGATE_HOLDER_READS_PER_HOUR", "0")):
        with pytest.raises(SettingsError) as caught:
            Settings.from_env({name: raw})
        assert caught.value.variable == name


async def test_the_31st_read_in_an_hour_is_rate_limited_across_two_gateway_apps_on_one_store(dw: DispatchWorld) -> None:
    cases = [await dw.event(holder=f"holder-{i}") for i in range(2)]
    await dw.pump()
    # A second gateway on the same store (as a second worker process would be): its own app, runtime and limiter.
    other = TestClient(TestServer(create_app(dw.world.settings, redis=dw.world.redis)))
    await other.start_server()
    try:
        other.app[DISPATCH].clock = dw.clock
        headers = dw.world.auth("h-clinic")
        for i in range(30):
            client = dw.world.client if i % 2 else other
            resp = await client.get(f"/v1/cases/{cases[i % 2]}/holder", headers=headers)
            assert resp.status == 200, (i, await resp.json())
        for client in (dw.world.client, other):
            resp = await client.get(f"/v1/cases/{cases[0]}/holder", headers=headers)
            assert (resp.status, (await resp.json())["error"]) == (429, "rate_limited")
            assert resp.headers["Retry-After"] == "3600"  # every read was at T0: the first frees at T0 + 1 h
    finally:
        await other.close()
    assert len(await _reads(dw)) == 30  # the refused reads opened nothing
    assert (await _read(dw, "sup-d1", cases[0]))[0] == 200  # the limit is per principal
    ttl = await dw.world.redis.ttl(keyspace.holder_reads_key("h-clinic"))
    assert 0 < ttl <= 3600
    dw.clock.advance(minutes=59)
    assert (await _read(dw, "h-clinic", cases[0]))[0] == 429  # a sliding hour, not a window that resets
    dw.clock.advance(minutes=1)
    assert (await _read(dw, "h-clinic", cases[0]))[0] == 200


async def test_concurrent_reads_never_pass_the_limit(dw: DispatchWorld) -> None:
    case_id = await dw.event(holder="holder-burst")
    await dw.pump()
    answers = await asyncio.gather(*[_read(dw, "sup-d1", case_id) for _ in range(36)])
    assert sorted(status for status, _ in answers) == [200] * 30 + [429] * 6
    assert len(await _reads(dw)) == 30


async def test_a_sealed_reference_copied_into_another_case_fails_to_open_and_is_audited(dw: DispatchWorld) -> None:
    first, second = await dw.event(holder="holder-a"), await dw.event(holder="holder-b")
    await dw.pump()
    redis = dw.world.redis
    blob = await redis.hget(keyspace.case_holder_key(first), "holder_sealed")
    assert blob is not None and blob.startswith(b"s2.")
    await redis.hset(keyspace.case_holder_key(second), "holder_sealed", blob)
    status, body = await _read(dw, "h-clinic", second)
    assert (status, body["error"]) == (409, "unseal_failed")
    assert "holder-a" not in str(body)
    (audit,) = await _reads(dw)
    assert (audit["who"], audit["case_ref"], audit["outcome"], audit["result_count"]) == (
        "h-clinic", second, "unseal_failed", "0")  # fmt: skip
    assert "subject" not in audit
    assert await _read(dw, "h-clinic", first) == (200, {"case_id": first, "holder_ref": "holder-a"})
    # The event's own blob (bound to the event id) does not open as a case's either.
    event_blob = dw.runtime.sealer.seal("holder-a", bound_to=event_binding("e1"))
    await redis.hset(keyspace.case_holder_key(second), "holder_sealed", event_blob)
    assert (await _read(dw, "h-clinic", second))[1]["error"] == "unseal_failed"
    assert dw.runtime.sealer.open(blob.decode(), bound_to=case_binding(first)) == "holder-a"


async def test_an_event_whose_blob_is_bound_to_another_event_is_dead_lettered(dw: DispatchWorld) -> None:
    foreign = dw.runtime.sealer.seal("holder-x", bound_to=event_binding("some-other-event"))
    case_id = await dw.event(holder=None, holder_sealed=foreign, day="20260302", pseudonym="f" * 32)
    assert await dw.pump() == {"deadlettered": 1}
    assert await dw.case(case_id) is None
    ((_, letter),) = await dw.world.redis.xrange(DISPATCH_DEADLETTER)
    assert letter[b"dl_reason"] == b"unseal_failed"
    assert not {b"day", b"pseudonym"} & set(letter)


async def test_an_old_format_event_becomes_a_case_without_its_day_or_pseudonym(dw: DispatchWorld) -> None:
    """An event written before issue 14 (day, pseudonym, ``s1.`` seal) is read; the case gets none of them."""
    old_pseudonym = "0123456789abcdef" * 2
    case_id = await dw.event(holder=None, holder_sealed=_legacy_seal("holder-old"), day="20260302",
                             pseudonym=old_pseudonym)  # fmt: skip
    broken = await dw.event("nonsense_class", holder=None, day="20260302", pseudonym=old_pseudonym)
    assert await dw.pump() == {"created": 1, "deadlettered": 1}
    assert await dw.case(broken) is None
    stored = await dw.world.redis.hgetall(keyspace.case_holder_key(case_id))
    assert set(stored) == {b"holder_sealed", b"purpose"}
    assert stored[b"holder_sealed"].startswith(b"s2.")  # re-sealed, now bound to the case id
    ((_, letter),) = await dw.world.redis.xrange(DISPATCH_DEADLETTER)
    assert not {b"day", b"pseudonym"} & set(letter)
    assert old_pseudonym.encode() not in b"".join([*stored.values(), *letter.values()])
    assert await _read(dw, "h-clinic", case_id) == (200, {"case_id": case_id, "holder_ref": "holder-old"})
    # The old format is read only by the worker's re-seal: planted in a case's holder key it does not open.
    await dw.world.redis.hset(keyspace.case_holder_key(case_id), "holder_sealed", _legacy_seal("holder-old"))
    assert (await _read(dw, "h-clinic", case_id))[1]["error"] == "unseal_failed"


async def _every_value_outside_the_log(dw: DispatchWorld) -> tuple[set[bytes], list[bytes]]:
    """Field names and values of every key except the scan log partitions and their day keys."""
    redis = dw.world.redis
    names: set[bytes] = set()
    values: list[bytes] = []
    async for raw in redis.scan_iter(match="pg:*"):
        key = raw.decode()
        if key.startswith(("pg:log:", "pg:daykey:")):
            continue
        kind = (await redis.type(key)).decode()
        if kind == "stream":
            for _, fields in await redis.xrange(key):
                names |= set(fields)
                values += [*fields.values()]
        elif kind == "hash":
            fields = await redis.hgetall(key)
            names |= set(fields)
            values += [*fields.keys(), *fields.values()]
        elif kind == "string":
            values.append(await redis.get(key))
        elif kind == "set":
            values += list(await redis.smembers(key))
        elif kind == "zset":
            values += list(await redis.zrange(key, 0, -1))
        else:
            raise AssertionError(f"{key}: unexpected type {kind}")
    return names, values


async def test_no_stored_value_outside_the_log_carries_the_day_pseudonym_or_the_day(
    make_dispatch_world: DispatchWorldFactory,
) -> None:
    """Real scans (a red holder, a replayed code) through POST /v1/scan, their cases, a dead letter and holder
    reads; then every key but the day's log partition and its key: no ``pseudonym``/``day`` field, and no value
    holding the holder's pseudonym of that day."""
    dw = await make_dispatch_world(clock=None)
    world = dw.world
    holders = ("holder-red", "holder-twice")
    await world.set_status("holder-red", Colour.RED)
    await world.set_status("holder-twice", Colour.GREEN)
    _, red = await world.scan(world.code("holder-red"))
    code = world.code("holder-twice")
    await world.scan(code)
    _, replayed = await world.scan(code)
    assert (red["reason"], replayed["reason"]) == ("status_red", "replayed")
    # A third exception never becomes a case: its event goes to the dead letters as it is.
    await world.redis.xadd(DISPATCH_INTAKE, {"event_id": "broken", "source": "scan"})
    assert await dw.pump() == {"created": 2, "deadlettered": 1}
    red_case = case_id_for_event(red["scan_id"])
    assert await _read(dw, "h-clinic", red_case) == (200, {"case_id": red_case, "holder_ref": "holder-red"})
    events = [f for _, f in await world.redis.xrange(DISPATCH_INTAKE)]
    assert [set(f) & {b"day", b"pseudonym"} for f in events] == [set(), set(), set()]
    assert events[0][b"subject"].decode() == dw.runtime.subjects.of("holder-red")

    day = day_of(datetime.now(UTC))
    day_keys = [k for k in [await world.redis.get(keyspace.day_key(d)) for d in
                            (day, day_of(datetime.now(UTC) - timedelta(days=1)))] if k]  # fmt: skip
    assert day_keys
    linking = {pseudonym(k, h).encode() for k in day_keys for h in holders}
    log = b" ".join(v for _, f in await world.redis.xrange(keyspace.scan_log_key(day)) for v in f.values())
    assert any(p in log for p in linking)  # the search below looks for values that do occur in the log
    names, values = await _every_value_outside_the_log(dw)
    assert not names & {name.encode() for name in LINKING_FIELDS}
    assert not [v for v in values if any(p in v for p in linking)]
    # The day itself is in none of the intake events, dead letters or case holder keys.
    carried = [v for _, f in await world.redis.xrange(DISPATCH_INTAKE) for v in f.values()]
    carried += [v for _, f in await world.redis.xrange(DISPATCH_DEADLETTER) for v in f.values()]
    for case_id in (red_case, case_id_for_event(replayed["scan_id"])):
        carried += list((await world.redis.hgetall(keyspace.case_holder_key(case_id))).values())
    assert len(carried) > 20 and not [v for v in carried if day.encode() in v]
