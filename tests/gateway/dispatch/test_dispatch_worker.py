"""The intake consumer on the real Redis: idempotent redelivery, XAUTOCLAIM of a crashed consumer's events,
the dead-letter path, permanent failures, and the dead letters' retention (by time, on every sweep)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

from gateway.dispatch.store import CaseStore
from gateway.dispatch.worker import GROUP, IntakeWorker, sweep_open_cases
from gateway.errors import StoreUnavailableError
from gateway.keyspace import DISPATCH_DEADLETTER, DISPATCH_INTAKE, DISPATCH_OPEN
from gateway.privacy.retention import retention_report
from policy.casework import Case
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw
RETENTION_S = 21 * 24 * 3600  # the test settings' retention_days


def _worker(dw: DispatchWorld, consumer: str, store: CaseStore | None = None, **options: int) -> IntakeWorker:
    r = dw.runtime
    return IntakeWorker(dw.world.redis, store or r.store, routing=r.routing, deadlines=r.deadlines,
                        sealer=r.sealer, consumer=consumer, clock=r.now, **options)  # fmt: skip


async def _pending(dw: DispatchWorld) -> int:
    return int((await dw.world.redis.xpending(DISPATCH_INTAKE, GROUP))["pending"])


async def test_a_redelivered_event_never_makes_a_second_case(dw: DispatchWorld) -> None:
    fields = {"event_id": "scan-0001"}
    case_id = await dw.event(**fields)
    await dw.event(**fields)  # the same event appended twice (a producer retry)
    assert await dw.pump() == {"created": 1, "duplicate": 1}
    # A consumer that made the case and died before XACK: the event is delivered again, to another consumer.
    await dw.event(**fields)
    crashed = _worker(dw, "crashed")
    await dw.world.redis.xreadgroup(GROUP, "crashed", {DISPATCH_INTAKE: ">"}, count=10)
    await asyncio.sleep(0.05)
    rescuer = _worker(dw, "rescuer", claim_idle_ms=10)
    assert await rescuer.run_once() == {"duplicate": 1}
    assert await _pending(dw) == 0
    case = await dw.case(case_id)
    assert [e.action.value for e in case.history] == ["report", "accept", "file", "dispatch"]
    assert await dw.world.redis.smembers(DISPATCH_OPEN) == {case_id.encode()}
    assert crashed.consumer == "crashed"


async def test_a_crashed_consumers_pending_events_are_reclaimed(dw: DispatchWorld) -> None:
    ids = [await dw.event() for _ in range(3)]
    await dw.world.redis.xreadgroup(GROUP, "crashed", {DISPATCH_INTAKE: ">"}, count=10)  # read, never acked
    assert await _pending(dw) == 3
    rescuer = _worker(dw, "rescuer", claim_idle_ms=60_000)
    assert await rescuer.run_once() == {}  # not idle long enough: the other consumer may still be working
    await asyncio.sleep(0.06)
    rescuer.claim_idle_ms = 50
    assert await rescuer.run_once() == {"created": 3}
    assert await _pending(dw) == 0
    for case_id in ids:
        assert (await dw.case(case_id)).state.value == "dispatched"


class _FailingStore(CaseStore):
    """A store whose disk never confirms: every write is refused as a transient failure."""

    async def write(self, old: Case | None, new: Case, *, holder: Mapping[str, str] | None = None) -> bool:
        raise StoreUnavailableError("injected")


async def test_an_event_that_keeps_failing_moves_to_the_dead_letters(dw: DispatchWorld) -> None:
    case_id = await dw.event()
    failing = _worker(dw, "w1", _FailingStore(dw.world.redis), claim_idle_ms=0, max_deliveries=3)
    outcomes = []
    for _ in range(4):
        outcomes.append(await failing.run_once())
        await asyncio.sleep(0.005)
    assert outcomes == [{"failed": 1}, {"failed": 1}, {"deadlettered": 1}, {}]
    assert await _pending(dw) == 0
    ((_, dead),) = await dw.world.redis.xrange(DISPATCH_DEADLETTER)
    assert (dead[b"dl_reason"], dead[b"dl_deliveries"]) == (b"store_unavailable", b"3")
    assert dead[b"holder_sealed"].startswith(b"s2.")  # copied as it was: still sealed (to the event id)
    assert await dw.case(case_id) is None
    # The dead letter keeps the intake stream's retention (the scan log's 21 days), never lives without it.
    assert RETENTION_S - 60 < await dw.world.redis.ttl(DISPATCH_DEADLETTER) <= RETENTION_S


async def test_events_that_can_never_succeed_are_dead_lettered_at_once(dw: DispatchWorld) -> None:
    await dw.event("no_such_class")
    # Outside the routing table's city: no dead letter but a case in the city's unrouted queue (issue 15,
    # tests/gateway/dispatch/test_unrouted.py).
    unrouted = await dw.event(jurisdiction="elsewhere/d1")
    await dw.world.redis.xadd(DISPATCH_INTAKE, {"event_id": "x", "source": "scan"})
    assert await dw.pump() == {"deadlettered": 2, "created": 1}
    reasons = [f[b"dl_reason"] for _, f in await dw.world.redis.xrange(DISPATCH_DEADLETTER)]
    assert reasons == [b"unknown_event_class", b"malformed_event"]
    assert (await dw.case(unrouted)).department == "unrouted"
    assert await _pending(dw) == 0


async def test_an_event_that_is_not_utf8_is_dead_lettered_and_the_consumer_goes_on(dw: DispatchWorld) -> None:
    await dw.world.redis.xadd(DISPATCH_INTAKE, {"event_id": b"\xff\xfe", "source": "scan"})
    case_id = await dw.event()
    assert await dw.pump() == {"deadlettered": 1, "created": 1}
    ((_, dead),) = await dw.world.redis.xrange(DISPATCH_DEADLETTER)
    assert (dead[b"dl_reason"], dead[b"event_id"]) == (b"malformed_event", "\ufffd\ufffd".encode())
    assert (await dw.case(case_id)).state.value == "dispatched"


def _stream_id(at: timedelta, now_ms: int) -> str:
    return f"{now_ms - int(at.total_seconds() * 1000)}-0"


async def test_the_sweep_drops_dead_letters_and_intake_events_past_retention_by_time(dw: DispatchWorld) -> None:
    """No new dead letter arrives: the sweep alone, at an injected ``now``, trims by the stream ids' time (intake
    events that the group has consumed and acknowledged; unconsumed ones: ``test_dispatch_intake_retention``)."""
    redis, now = dw.world.redis, dw.clock.now
    now_ms = int(now.timestamp() * 1000)
    old, recent = _stream_id(timedelta(days=21, minutes=1), now_ms), _stream_id(timedelta(days=20), now_ms)
    for key in (DISPATCH_DEADLETTER, DISPATCH_INTAKE):
        await redis.xadd(key, {"event_id": "old", "dl_reason": "no_route"}, id=old)
        await redis.xadd(key, {"event_id": "recent", "dl_reason": "no_route"}, id=recent)
    ((_, delivered),) = await redis.xreadgroup(GROUP, "c1", {DISPATCH_INTAKE: ">"})
    await redis.xack(DISPATCH_INTAKE, GROUP, *[mid for mid, _ in delivered])  # made cases (or dead-lettered)
    assert await redis.ttl(DISPATCH_DEADLETTER) == -1  # as dead letters were written before they had a TTL

    async def report() -> dict[str, object]:
        doc = await retention_report(redis, now=now, retention_days=21, status_ttl_s=172_800)
        return {"violations": doc["violations"], **doc["classes"]["dead_letters"]}  # type: ignore[index]

    before = await report()
    assert {(v["class"], v["key"], v["problem"]) for v in before["violations"]} == {  # type: ignore[attr-defined]
        ("dead_letters", DISPATCH_DEADLETTER, "no_expiry"),
        ("dead_letters", DISPATCH_DEADLETTER, "entries_past_retention"),
        ("dispatch_intake", DISPATCH_INTAKE, "entries_past_retention"),
    }
    assert (before["keys"], before["entries"], before["older_than_retention"]) == (1, 2, True)

    swept = await sweep_open_cases(dw.runtime.store, now=now)
    assert swept.trimmed == 2
    for key in (DISPATCH_DEADLETTER, DISPATCH_INTAKE):
        assert [f[b"event_id"] for _, f in await redis.xrange(key)] == [b"recent"], key
    assert 0 < await redis.ttl(DISPATCH_DEADLETTER) <= RETENTION_S
    assert await redis.ttl(DISPATCH_INTAKE) == -1  # the consumer group lives on the key: trimmed, never expired
    after = await report()
    assert after["violations"] == [] and (after["without_expiry"], after["older_than_retention"]) == (0, False)
    assert await sweep_open_cases(dw.runtime.store, now=now + timedelta(minutes=1)) == swept.__class__(trimmed=0)
