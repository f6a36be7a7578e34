"""Merging (issue 15): exceptions of one class, one holder and one place within the fold window, and site
managers' reports of one kind at one place, fold into one open case with an occurrence count and times; race-free
across consumers, a redelivered event counted once. On the real Redis, through the real intake worker."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest

from gateway import keyspace
from gateway.dispatch.store import FOLD_MAX_OCCURRENCES
from gateway.dispatch.worker import GROUP, IntakeWorker
from gateway.keyspace import DISPATCH_INTAKE, DISPATCH_OPEN
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import T0, DispatchWorld

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world
WINDOW_S = 600


async def _fold_world(make_dispatch_world: fx.DispatchWorldFactory, **options: Any) -> DispatchWorld:
    world: DispatchWorld = await make_dispatch_world(fold_window_s=WINDOW_S, **options)
    return world


def _worker(dw: DispatchWorld, consumer: str, **options: int) -> IntakeWorker:
    r = dw.runtime
    return IntakeWorker(dw.world.redis, r.store, routing=r.routing, deadlines=r.deadlines, sealer=r.sealer,
                        consumer=consumer, clock=r.now, fold_window_s=WINDOW_S, **options)  # fmt: skip


async def _open(dw: DispatchWorld) -> set[str]:
    return {m.decode() for m in await dw.world.redis.smembers(DISPATCH_OPEN)}


async def test_ten_presentations_of_one_forwarded_screenshot_fold_into_one_case(
    make_dispatch_world: fx.DispatchWorldFactory,
) -> None:
    dw = await _fold_world(make_dispatch_world)
    code = dw.world.code("holder-s")
    await dw.world.set_status("holder-s")
    assert (await dw.world.scan(code, who="dev-b"))[1]["decision"] == "admit"  # the holder, at place B
    answers = [await dw.world.scan(code, who="dev-a") for _ in range(10)]  # the screenshot, at place A
    assert {(s, a["reason"]) for s, a in answers} == {(200, "code_shared")}
    assert await dw.pump() == {"created": 1, "folded": 9}
    (case_id,) = await _open(dw)
    status, doc = await dw.get("dispatcher", f"/v1/cases/{case_id}")
    assert status == 200
    assert doc["event_class"] == "code_shared" and doc["place_id"] == "place-a"
    assert doc["occurrences"]["count"] == 10
    assert len(doc["occurrences"]["times"]) == 10
    assert doc["occurrences"]["times"] == sorted(doc["occurrences"]["times"])
    assert doc["occurrences"]["times_max"] == FOLD_MAX_OCCURRENCES
    # Another holder's exception at the same place, or the same holder at another place, is another case.
    other = dw.world.code("holder-t")
    await dw.world.set_status("holder-t")
    await dw.world.scan(other, who="dev-b")
    await dw.world.scan(other, who="dev-a")
    assert await dw.pump() == {"created": 1}
    assert len(await _open(dw)) == 2


async def test_two_consumers_racing_on_the_same_events_make_one_case_and_count_each_event_once(
    make_dispatch_world: fx.DispatchWorldFactory,
) -> None:
    dw = await _fold_world(make_dispatch_world)
    events = [await dw.event("replayed", at=T0 + timedelta(seconds=i)) for i in range(20)]
    a, b = _worker(dw, "a", batch=3), _worker(dw, "b", batch=3)
    totals: dict[str, int] = {}
    while True:
        rounds = await asyncio.gather(a.run_once(), b.run_once())
        if not any(rounds):
            break
        for counts in rounds:
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
    assert totals == {"created": 1, "folded": 19}
    (case_id,) = await _open(dw)
    assert case_id in events
    found = await dw.runtime.store.occurrences(await dw.case(case_id))
    assert found.count == 20
    assert list(found.times) == [T0 + timedelta(seconds=i) for i in range(20)]
    # A consumer that folded events and died before XACK: redelivered to another, they are not counted again.
    for i in range(3):
        await dw.event("replayed", at=T0 + timedelta(seconds=30 + i))
    crashed = _worker(dw, "crashed")

    async def dies_before_ack(*mids: bytes) -> None:
        return None

    crashed._ack = dies_before_ack  # type: ignore[method-assign]
    assert await crashed.run_once() == {"folded": 3}
    assert int((await dw.world.redis.xpending(DISPATCH_INTAKE, GROUP))["pending"]) == 3
    await asyncio.sleep(0.05)
    assert await _worker(dw, "rescuer", claim_idle_ms=10).run_once() == {"duplicate": 3}
    assert int((await dw.world.redis.xpending(DISPATCH_INTAKE, GROUP))["pending"]) == 0
    assert (await dw.runtime.store.occurrences(await dw.case(case_id))).count == 23


async def test_a_closed_case_takes_no_more_occurrences_the_next_event_opens_a_new_case(
    make_dispatch_world: fx.DispatchWorldFactory,
) -> None:
    dw = await _fold_world(make_dispatch_world)
    first = await dw.event("replayed")
    await dw.pump()
    await dw.world.redis.hset(keyspace.case_key(first), "state", "cancelled")  # closed by hand meanwhile
    second = await dw.event("replayed")
    assert await dw.pump() == {"created": 1}
    assert await dw.case(second) is not None
    await dw.event("replayed")
    assert await dw.pump() == {"folded": 1}
    assert (await dw.runtime.store.occurrences(await dw.case(second))).count == 2


async def test_a_full_case_rolls_over_to_a_new_case(make_dispatch_world: fx.DispatchWorldFactory) -> None:
    dw = await _fold_world(make_dispatch_world, batch=FOLD_MAX_OCCURRENCES + 5)
    for i in range(FOLD_MAX_OCCURRENCES + 1):
        await dw.event("status_red", at=T0 + timedelta(milliseconds=i))
    assert await dw.pump() == {"created": 2, "folded": FOLD_MAX_OCCURRENCES - 1}
    counts = sorted([(await dw.runtime.store.occurrences(await dw.case(c))).count for c in await _open(dw)])
    assert counts == [1, FOLD_MAX_OCCURRENCES]


async def test_events_without_a_holder_and_a_zero_window_open_a_case_each(
    make_dispatch_world: fx.DispatchWorldFactory,
) -> None:
    dw = await _fold_world(make_dispatch_world)
    for _ in range(2):
        await dw.event("forged_code", holder=None)
    assert await dw.pump() == {"created": 2}
    plain = await make_dispatch_world()  # the fixture's default: fold_window_s=0
    for _ in range(2):
        await plain.event("replayed")
    assert await plain.pump() == {"created": 2}


async def _report(dw: DispatchWorld, **body: Any) -> tuple[int, dict[str, Any]]:
    doc = {"event_class": "crowding", "place": "place-a", "time": (T0 - timedelta(minutes=3)).isoformat(), **body}
    resp = await dw.world.client.post("/v1/reports", json=doc, headers=dw.world.auth("sm-a"))
    return resp.status, await resp.json()


async def test_reports_of_one_kind_at_one_place_fold_and_every_answered_case_id_leads_to_the_case(
    make_dispatch_world: fx.DispatchWorldFactory,
) -> None:
    dw = await _fold_world(make_dispatch_world)
    answers = [await _report(dw) for _ in range(3)]
    assert {s for s, _ in answers} == {202}
    _, noted = await _report(dw, note="the queue blocks the fire exit")  # a note is new information: its own case
    _, other_kind = await _report(dw, event_class="device_fault")
    assert await dw.pump() == {"created": 3, "folded": 2}
    assert len(await _open(dw)) == 3
    ids = set()
    for _, answer in answers:
        status, doc = await dw.get("sup-d1", f"/v1/cases/{answer['case_id']}")
        assert status == 200
        ids.add(doc["case_id"])
    (case_id,) = ids
    assert case_id == answers[0][1]["case_id"]
    _, doc = await dw.get("sup-d1", f"/v1/cases/{case_id}")
    assert doc["occurrences"]["count"] == 3
    assert noted["case_id"] != case_id and other_kind["case_id"] != case_id


async def test_a_dispatcher_merges_two_cases_by_hand_over_http(make_dispatch_world: fx.DispatchWorldFactory) -> None:
    dw = await _fold_world(make_dispatch_world)
    a = await dw.event("status_red", holder="holder-a")
    b = await dw.event("status_red", holder="holder-b")
    far = await dw.event("status_red", holder="holder-c", place="place-z", jurisdiction="city/d2/s9/g1/c1")
    assert await dw.pump() == {"created": 3}
    status, doc = await dw.act("h-clinic", a, "merge", into=b)  # a handler does not merge
    assert (status, doc["error"]) == (403, "not_permitted_role")
    status, doc = await dw.act("dispatcher", a, "merge", into=a)
    assert (status, doc["error"]) == (422, "invalid_argument")
    status, doc = await dw.act("dispatcher", a, "merge", into=far)  # outside the dispatcher's scope
    assert status == 404
    status, doc = await dw.act("dispatcher", a, "merge")
    assert (status, doc["error"]) == (422, "invalid_argument")
    status, doc = await dw.act("dispatcher", a, "merge", into=b)
    assert status == 200
    assert doc["state"] == "cancelled"
    assert (doc["history"][-1]["action"], doc["history"][-1]["note"]) == ("cancel", f"merged into {b}")
    _, kept = await dw.get("dispatcher", f"/v1/cases/{b}")
    assert kept["state"] == "dispatched"  # no change of state or clock
    assert (kept["history"][-1]["action"], kept["history"][-1]["note"]) == ("merge", f"absorbed {a}")
    assert kept["occurrences"]["count"] == 2  # nothing is split or lost: a's event is now b's too
    assert a not in await _open(dw)
    status, doc = await dw.act("dispatcher", a, "merge", into=b)  # a cancelled case is not merged again
    assert (status, doc["error"]) == (409, "illegal_transition")


async def test_a_batch_fold_reloads_its_script_after_the_server_forgot_it(
    make_dispatch_world: fx.DispatchWorldFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The batch path's NOSCRIPT check read the message, which redis-py strips of its NOSCRIPT prefix: after a
    restart (or SCRIPT FLUSH) the first batch failed as ``store_unavailable`` and fell back to one event at a time."""
    dw = await _fold_world(make_dispatch_world)
    for i in range(2):
        await dw.event("replayed", at=T0 + timedelta(seconds=i))
    await dw.world.redis.script_flush()
    with caplog.at_level(logging.WARNING, logger="placegate.dispatch"):
        assert await dw.pump() == {"created": 1, "folded": 1}
    assert [r.getMessage() for r in caplog.records if "folding a batch" in r.getMessage()] == []
    (case_id,) = await _open(dw)
    assert (await dw.runtime.store.occurrences(await dw.case(case_id))).count == 2


async def test_a_merge_into_the_announced_id_of_a_folded_report_counts_on_the_case_that_holds_it(
    make_dispatch_world: fx.DispatchWorldFactory,
) -> None:
    """A folded report's announced case id leads to the case that holds it, for a merge too: the occurrences join
    that case, not a key of the announced id that nothing reads."""
    dw = await _fold_world(make_dispatch_world)
    _, opener = await _report(dw)
    _, folded = await _report(dw)
    _, noted = await _report(dw, note="the queue blocks the fire exit")
    assert await dw.pump() == {"created": 2, "folded": 1}
    status, doc = await dw.act("dispatcher", noted["case_id"], "merge", into=folded["case_id"])
    assert (status, doc["state"], doc["history"][-1]["note"]) == (
        200, "cancelled", f"merged into {opener['case_id']}")  # fmt: skip
    _, kept = await dw.get("dispatcher", f"/v1/cases/{opener['case_id']}")
    assert (kept["history"][-1]["action"], kept["occurrences"]["count"]) == ("merge", 3)
    assert not await dw.world.redis.exists(keyspace.case_occurrences_key(folded["case_id"]))


async def test_the_announced_id_of_a_folded_report_acts_reads_and_audits_as_the_case_that_holds_it(
    make_dispatch_world: fx.DispatchWorldFactory,
) -> None:
    """Everything done through a folded report's announced id is done to the case that holds it: an extension
    requested through it shows on the case, and every read through it is audited under the case's own id."""
    dw = await _fold_world(make_dispatch_world)
    _, opener = await _report(dw, event_class="forced_entry")  # d1-police at place-a
    _, folded = await _report(dw, event_class="forced_entry")
    assert await dw.pump() == {"created": 1, "folded": 1}
    case_id, alias = opener["case_id"], folded["case_id"]
    for who, action in (("dispatcher", "accept"), ("dispatcher", "file"), ("dispatcher", "dispatch"),
                        ("h-police", "start")):  # fmt: skip
        status, doc = await dw.act(who, alias, action)
        assert (status, doc["case_id"]) == (200, case_id)
    status, doc = await dw.act("h-police", alias, "request_extension", note="waiting for the locksmith")
    assert (status, doc["case_id"]) == (202, case_id)
    status, doc = await dw.get("sup-d1", f"/v1/cases/{alias}")
    assert (status, doc["case_id"], doc["extension_request"]["by"]) == (200, case_id, "h-police")
    assert not await dw.world.redis.exists(keyspace.case_extension_key(alias))
    entries = [{k.decode(): v.decode() for k, v in f.items()} for _, f in await dw.world.redis.xrange(
        keyspace.AUDIT_STREAM)]  # fmt: skip
    reads = [(e["object"], e["case_ref"]) for e in entries if e.get("action") == "case_read"]
    assert reads == [(f"case:{case_id}", case_id)] * 6
