"""PLACEGATE_VERIFY_THREADS (issue 19, point 3): a batch's signature checks split between a verify pool's threads and
the loop thread answer, log, raise events and count exactly as the loop thread alone; a single code never leaves the
loop; the pool's threads end with the app. Real Redis, real aiohttp server."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from crypto.base45 import b45decode, b45encode
from crypto.cbor import encode_cbor
from crypto.keys import Alg, SigningKey
from crypto.native import HEALTH_PREFIX, Colour
from crypto.paper import issue_paper_code
from gateway import keyspace
from gateway.appstate import CLOCK, METRICS
from gateway.scan.offload import THREAD_PREFIX, VerifyPool, usable_cores, verify_threads
from gateway.scan.state import SCANNER
from gateway.settings import Settings, SettingsError, unknown_variables
from gateway.trust.dsc import DscRegistry
from gateway.trust.refresh import refresh_dsc
from tests.crypto.conftest import VACCINATION_DCC, Dsc, make_dsc, make_hc1, sign_cose, wrap_hc1
from tests.gateway.conftest import World, WorldFactory
from tests.gateway.sentry.conftest import add_sentry, feed, id_number

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime.now(UTC).replace(microsecond=0)  # every world's clock: the answers carry the same time in both runs
OFFLOADED = "placegate_scan_verifications_offloaded_total"


@pytest.fixture(scope="module")
def dsc() -> Dsc:
    return make_dsc(not_before=T0 - timedelta(days=100), not_after=T0 + timedelta(days=300))


async def _world(make_world: WorldFactory, dsc: Dsc, threads: int) -> World:
    world = await make_world(verify_threads=threads)
    world.client.app[CLOCK].now = lambda: T0
    await DscRegistry(world.redis).import_certificates([dsc.der], now=T0)
    assert await refresh_dsc(world.client.app)
    for holder, colour in (("holder-1", Colour.GREEN), ("holder-2", Colour.RED), ("holder-3", Colour.GREEN),
                           ("holder-4", Colour.GREEN), ("holder-5", Colour.YELLOW), ("holder-6", Colour.GREEN)):
        await world.set_status(holder, colour)
    return world


def _native(world: World, holder: str, **options: Any) -> str:
    options.setdefault("now", T0)
    return world.code(holder, **options)


def _forged(code: str) -> str:
    raw = bytearray(b45decode(code[len(HEALTH_PREFIX):]))
    raw[-1] ^= 0xFF  # the last signature byte: still a code, its signature no longer verifies
    return HEALTH_PREFIX + b45encode(bytes(raw))


def _hc1(signer: Dsc, ci: str, **options: Any) -> str:
    dcc = {**VACCINATION_DCC, "v": [{**VACCINATION_DCC["v"][0], "ci": ci}]}
    options.setdefault("iat", T0 - timedelta(days=1))
    options.setdefault("exp", T0 + timedelta(days=30))
    return make_hc1(signer, dcc, **options)


def _corpus(world: World, dsc: Dsc) -> tuple[list[object], list[str]]:
    """A turnstile bank's 16 items, every kind of answer the scan path gives, and the reason each must get."""
    replayed = _native(world, "holder-3")
    forger = make_dsc()
    claims = encode_cbor({1: "DE", 4: int((T0 + timedelta(days=9)).timestamp()),
                          6: int((T0 - timedelta(days=1)).timestamp()), -260: {1: VACCINATION_DCC}})
    items: list[tuple[object, str]] = [
        (_native(world, "holder-1"), "ok"),
        (_native(world, "holder-2"), "status_red"),
        (_forged(_native(world, "holder-1")), "bad_signature"),
        (_native(world, "holder-1", now=T0 - timedelta(minutes=10)), "code_expired"),
        (replayed, "ok"),
        (replayed, "replayed"),
        (_native(world, "holder-1", key=SigningKey.generate(Alg.ES256)), "unknown_key"),
        ("not a code", "malformed_code"),
        (issue_paper_code(world.health_key, holder_ref="holder-6", now=T0, nonce=os.urandom(12)), "ok"),
        (issue_paper_code(world.health_key, holder_ref="nobody", now=T0, nonce=os.urandom(12)), "status_unknown"),
        (_hc1(dsc, "URN:UVCI:01DE/IZ12345A/THREADS1#1"), "ok"),
        (wrap_hc1(sign_cose(forger, claims, protected={1: -7, 4: dsc.kid})), "bad_signature"),
        (_hc1(dsc, "URN:UVCI:01DE/IZ12345A/THREADS2#2", exp=T0 - timedelta(hours=1)), "code_expired"),
        ({"code": _native(world, "holder-4"), "temperature_c": 39.0}, "fever"),
        (_native(world, "holder-5"), "status_yellow"),
        (_native(world, "unknown-holder"), "status_unknown"),
    ]
    return [item for item, _ in items], [reason for _, reason in items]


async def _post(world: World, codes: list[object]) -> list[dict[str, Any]]:
    resp = await world.client.post("/v1/scan/batch", json={"codes": codes}, headers=world.auth("dev-c"))
    assert resp.status == 200
    results: list[dict[str, Any]] = (await resp.json())["results"]
    return results


def _labeller(results: dict[str, list[dict[str, Any]]]) -> Callable[[str], str]:
    """A scan id (random) as the position of its answer: "batch#3"."""
    names = {r["scan_id"]: f"{request}#{at}" for request, answers in results.items()
             for at, r in enumerate(answers) if "scan_id" in r}
    return lambda scan_id: names.get(scan_id, f"unknown {scan_id}")


async def _stored(world: World, label: Callable[[str], str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The scan-log records and intake events of the run, random values replaced by what they must relate to: a
    scan id by its answer's position, a day pseudonym by the first answer it appears in (equal holders stay
    equal), a sealed value by whether it is there."""
    redis: Any = world.redis

    def normalised(fields: dict[bytes, bytes]) -> dict[str, str]:
        out = {k.decode(): v.decode() for k, v in fields.items()}
        for name in ("scan_id", "event_id"):
            if name in out:
                out[name] = label(out[name])
        for name in ("holder_sealed", "reading_sealed"):
            if out.get(name):
                out[name] = "sealed"
        return out

    log_keys = sorted([key async for key in redis.scan_iter(match="pg:log:*")])
    records = sorted([normalised(fields) for key in log_keys for _, fields in await redis.xrange(key)],
                     key=lambda record: record["scan_id"])
    pseudonyms: dict[str, str] = {}  # in the order of the answers, not of the stream (turns may differ)
    for record in records:
        if record["pseudonym"]:
            record["pseudonym"] = pseudonyms.setdefault(record["pseudonym"], f"holder {len(pseudonyms)}")
    events = [normalised(fields) for _, fields in await redis.xrange(keyspace.DISPATCH_INTAKE)]
    return records, sorted(events, key=lambda event: event["event_id"])


def _counts(world: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The scan path's counters (answers, exception events, sentry inputs, store errors) by label set."""
    wanted = ("placegate_scans_total", "placegate_exception_events_total", "placegate_sentry_inputs_total",
              "placegate_redis_errors_total")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in world.client.app[METRICS].registry.collect() for s in family.samples
            if s.name in wanted}


def _offloaded(world: World) -> float:
    value = world.client.app[METRICS].registry.get_sample_value(OFFLOADED)
    assert value is not None
    return value


async def _run(world: World, dsc: Dsc) -> tuple[Any, ...]:
    """One batch alone, then two batches and a single scan sent at once (a turn may then hold several requests, as on
    a busy gateway), each answer with its scan id replaced by its position."""
    codes, reasons = _corpus(world, dsc)
    alone = await _post(world, codes)
    answers = [r.get("reason", r.get("error")) for r in alone]
    assert answers == reasons  # the corpus gives every answer it claims to, in order
    second, _ = _corpus(world, dsc)  # new codes; its valid EU DCC is the first one's UVCI again: replayed
    third = [_native(world, "holder-1"), _native(world, "holder-2"), _native(world, "holder-6")]
    single = _native(world, "holder-6")
    together = await asyncio.gather(_post(world, second), _post(world, third),
                                     world.scan(single, who="dev-c"))
    status, single_answer = together[2]
    assert status == 200
    results = {"alone": alone, "second": together[0], "third": together[1], "single": [single_answer]}
    label = _labeller(results)
    shown = {name: [{**r, "scan_id": label(r["scan_id"])} if "scan_id" in r else r for r in answers]
             for name, answers in results.items()}
    return shown, await _stored(world, label), _counts(world)


async def test_a_mixed_batch_answers_logs_and_counts_the_same_with_and_without_threads(
    make_world: WorldFactory, redis: Redis, dsc: Dsc
) -> None:
    plain = await _world(make_world, dsc, 0)
    assert plain.client.app[SCANNER].verify_pool is None
    without = await _run(plain, dsc)
    assert _offloaded(plain) == 0
    await plain.client.close()
    await redis.flushdb()  # the second world starts from an empty store, as the first did

    threaded = await _world(make_world, dsc, 2)
    pool = threaded.client.app[SCANNER].verify_pool
    assert pool is not None and pool.threads == 2
    with_threads = await _run(threaded, dsc)
    assert with_threads[0] == without[0]  # the answers, in order, each with its position's scan id
    assert with_threads[1] == without[1]  # the scan-log records and the intake events
    assert with_threads[2] == without[2]  # the counters of answers, exception events, sentry inputs, store errors
    assert len(without[1][0]) == 2 * (16 - 1) + 3 + 1  # every code but the two batches' malformed ones is logged
    assert {e["reason"] for e in without[1][1]} >= {"status_red", "bad_signature", "replayed", "fever"}
    # The verifications did run on the pool's threads: the names come from the threads themselves.
    assert pool.ran_on and all(name.startswith(THREAD_PREFIX) for name in pool.ran_on)
    assert _offloaded(threaded) > 0


async def test_a_batch_alone_hands_all_but_the_loop_threads_share_to_the_pool(make_world: WorldFactory,
                                                                               dsc: Dsc) -> None:
    world = await _world(make_world, dsc, 2)
    codes, reasons = _corpus(world, dsc)
    answers = await _post(world, codes)
    assert [r.get("reason", r.get("error")) for r in answers] == reasons
    # 16 codes in three parts of 6, 5 and 5: the first two to the two threads, the last on the loop thread.
    assert _offloaded(world) == 11


async def test_a_single_code_never_leaves_the_loop_thread(make_world: WorldFactory, dsc: Dsc) -> None:
    world = await _world(make_world, dsc, 2)
    pool = world.client.app[SCANNER].verify_pool
    assert pool is not None
    assert (await world.scan(_native(world, "holder-1"), who="dev-c"))[1]["reason"] == "ok"
    assert [r["reason"] for r in await _post(world, [_native(world, "holder-1")])] == ["ok"]
    # Eight single scans in one loop turn: many codes in the turn, but none of a request with two or more.
    answers = await asyncio.gather(*(world.scan(_native(world, "holder-1"), who="dev-c") for _ in range(8)))
    assert [body["reason"] for _, body in answers] == ["ok"] * 8
    assert _offloaded(world) == 0 and pool.ran_on == set()
    # A batch of two does go to a thread (one code each side): the counter can move.
    await _post(world, [_native(world, "holder-1"), _native(world, "holder-6")])
    assert _offloaded(world) == 1 and pool.ran_on


def _verify_threads_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]


async def test_the_pool_threads_end_when_the_app_closes(make_world: WorldFactory, dsc: Dsc) -> None:
    before = _verify_threads_alive()
    world = await _world(make_world, dsc, 2)
    await asyncio.gather(*(_post(world, _corpus(world, dsc)[0][:8]) for _ in range(3)))
    started = [t for t in _verify_threads_alive() if t not in before]
    assert started  # the pool's threads exist while the app serves
    await world.client.close()
    assert [t for t in started if t.is_alive()] == []


async def test_the_served_worker_count_sizes_auto(make_world: WorldFactory) -> None:
    for workers in (1, 2):
        world = await make_world(workers=workers)  # what `serve --workers N` passes to every worker process
        pool = world.client.app[SCANNER].verify_pool
        expected = verify_threads("auto", workers=workers)
        assert (0 if pool is None else pool.threads) == expected
        await world.client.close()


@pytest.mark.parametrize(("setting", "workers", "cores", "threads"), [
    ("auto", 1, 2, 1), ("auto", 2, 2, 0), ("auto", 1, 1, 0), ("auto", 3, 2, 0), ("auto", 1, 8, 4),
    ("auto", 2, 8, 3), ("auto", 1, 64, 4), (0, 1, 8, 0), (16, 4, 2, 16), (3, 1, 1, 3),
])
def test_auto_is_the_cores_per_worker_minus_the_loop_thread_at_most_four(
    setting: int | str, workers: int, cores: int, threads: int
) -> None:
    assert verify_threads(setting, workers=workers, cores=cores) == threads  # type: ignore[arg-type]


def test_auto_counts_the_cores_this_process_may_run_on() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))
    assert verify_threads("auto", workers=1) == max(0, min(4, len(os.sched_getaffinity(0)) - 1))


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError):
        VerifyPool(0)


@pytest.mark.parametrize(("raw", "value"), [("auto", "auto"), ("0", 0), ("1", 1), ("16", 16), ("", "auto")])
def test_the_setting_takes_auto_or_0_to_16(raw: str, value: int | str) -> None:
    assert Settings.from_env({"PLACEGATE_VERIFY_THREADS": raw}).verify_threads == value
    assert Settings().verify_threads == "auto"
    assert unknown_variables({"PLACEGATE_VERIFY_THREADS": raw}) == []  # a known name, never reported as a typo


@pytest.mark.parametrize("raw", ["17", "-1", "junk", "AUTO", " 2", "2.0", "1_0", "+2"])
def test_the_setting_refuses_anything_else_naming_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"PLACEGATE_VERIFY_THREADS": raw})
    assert refused.value.variable == "PLACEGATE_VERIFY_THREADS"


def test_the_operations_doc_has_the_setting_and_the_counter() -> None:
    text = (ROOT / "docs" / "operations.md").read_text("utf-8")
    (row,) = [line for line in text.splitlines() if line.startswith("| `PLACEGATE_VERIFY_THREADS` |")]
    assert re.match(r"\| `PLACEGATE_VERIFY_THREADS` \| `auto` \| 0\N{EN DASH}16, or `auto` \|", row)
    assert "test_verify_threads.py" in row
    assert any(line.startswith(f"| `{OFFLOADED}` |") for line in text.splitlines())


@pytest.mark.parametrize("threads", [0, 2])
async def test_an_aged_signer_list_degrades_then_fails_closed_on_the_pool_threads_too(
    make_world: WorldFactory, dsc: Dsc, threads: int
) -> None:
    # The list's age is judged on the loop thread once per request and handed to the threads with their chunk.
    world = await _world(make_world, dsc, threads)
    answers = {}
    for days, name in ((3, "degraded"), (8, "stale")):
        at = T0 + timedelta(days=days)  # past PLACEGATE_DSC_TRUST_DEGRADED_AFTER_S (2 d), then FAIL_AFTER_S (7 d)
        world.client.app[CLOCK].now = lambda at=at: at
        codes = [_hc1(dsc, f"URN:UVCI:01DE/AGED/{name}{i}#1", exp=at + timedelta(days=30)) for i in range(3)]
        codes.insert(1, _native(world, "holder-1", now=at))
        answers[name] = [(r["reason"], r["degraded"]) for r in await _post(world, codes)]
    # The native code's list is not the signer list: never degraded by its age (its holder's status, set days
    # before the moved clock, is too old to decide on: status_unknown).
    assert answers["degraded"] == [("ok", True), ("status_unknown", False), ("ok", True), ("ok", True)]
    assert answers["stale"] == [("trust_list_stale", True), ("status_unknown", False), ("trust_list_stale", True),
                                ("trust_list_stale", True)]
    assert _offloaded(world) == (0 if threads == 0 else 2 * 3)  # 4 codes in parts of 2, 1, 1: 3 to the threads


@pytest.mark.parametrize("threads", [0, 2])
async def test_a_sentry_batch_of_codes_and_identity_cards_is_answered_the_same(make_world: WorldFactory, dsc: Dsc,
                                                                               threads: int) -> None:
    world = await _world(make_world, dsc, threads)
    world.client.app[CLOCK].now = lambda: datetime.now(UTC)  # the fed status is judged at the real time
    await add_sentry(world)
    known = id_number(42)
    assert (await feed(world, {"holder": "res-1", "id_card": known, "colour": "green"}))["applied"] == 1
    codes = [world.code("holder-1"), {"id_card": known}, {"id_card": "123"}, {"id_card": id_number(9)},
             {"code": world.code("holder-2"), "temperature_c": 36.5}]
    resp = await world.client.post("/v1/scan/batch", json={"codes": codes}, headers=world.auth("sentry-c"))
    assert resp.status == 200
    results = (await resp.json())["results"]
    assert [(r.get("reason") or r.get("error"), r.get("via")) for r in results] == [
        ("ok", None), ("ok", "id_card"), ("invalid_id_card", None), ("status_unknown", "id_card"), ("status_red", None)]
    # The bad number is answered by the route; the four presentations are split 2, 1, 1: three go to the threads.
    assert _offloaded(world) == (0 if threads == 0 else 3)
