"""Durability of the intake (issue 13, point 5) on the real Redis: no event the group has not finished is trimmed,
retention trimming is by time and needs no new traffic, and an event that reaches the retention unconsumed is
dead-lettered (without its personal fields) instead of being deleted unseen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crypto.sealing import event_binding
from gateway.batcher import CommandBatcher
from gateway.dispatch.worker import EXPIRED_DROPPED_FIELDS, GROUP, sweep_open_cases, trim_to_retention
from gateway.intake import scan_event_fields
from gateway.keyspace import DISPATCH_DEADLETTER, DISPATCH_INTAKE
from gateway.scan.scanlog import day_of, partition_expiry
from gateway.scan.store import ScanStore
from gateway.status.cache import StatusLocator
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld
from tests.gateway.dispatch.test_dispatch_worker import _worker

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw
RETENTION_DAYS = 21  # the test settings' retention_days


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _scan_event(event_id: str, at: datetime, *, holder_sealed: str = "sealed-ref") -> dict[str, str]:
    pairs = scan_event_fields(event_id, "status_red", "place-a", "city/d1/s1/g1/c1", "dev-a", str(_ms(at)),
                              holder_sealed, "sh_" + "0" * 32)  # fmt: skip
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


async def _ids(dw: DispatchWorld, key: str = DISPATCH_INTAKE) -> list[bytes]:
    return [fields[b"event_id"] for _, fields in await dw.world.redis.xrange(key)]


async def test_an_unconsumed_event_from_yesterday_2359_survives_a_scan_exception_today(dw: DispatchWorld) -> None:
    redis = dw.world.redis
    now = datetime.now(UTC)
    yesterday_2359 = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(minutes=1)
    sealed = dw.runtime.sealer.seal("holder-y", bound_to=event_binding("ev-yesterday"))
    fields = _scan_event("ev-yesterday", yesterday_2359, holder_sealed=sealed)
    await redis.xadd(DISPATCH_INTAKE, fields, id=f"{_ms(yesterday_2359)}-0")  # type: ignore[arg-type]
    # Today's scan exception, written by the scan path's own store (the reproduction: its MINID was today's
    # 00:00 UTC, which deleted the event above).
    batcher = CommandBatcher(redis)
    try:
        store = ScanStore(redis, batcher, StatusLocator(bytes(32), 16), retention_days=RETENTION_DAYS)
        today = day_of(now)
        entry = ("scan_id", "s1", "decision", "deny")
        event = scan_event_fields("ev-today", "status_red", "place-a", "city/d1/s1/g1/c1", "dev-a", str(_ms(now)),
                                  "", "")  # fmt: skip
        await store.record_scans([(today, partition_expiry(today, RETENTION_DAYS), entry, event)])
    finally:
        await batcher.aclose()
    assert await _ids(dw) == [b"ev-yesterday", b"ev-today"]
    # Nor does today's sweep drop it: it is inside the retention and the group has not consumed it.
    await sweep_open_cases(dw.runtime.store, now=now)
    assert await _ids(dw) == [b"ev-yesterday", b"ev-today"]
    assert await dw.pump() == {"created": 2}  # and the worker, back, makes it a case


async def test_trimming_keeps_pending_and_undelivered_events_and_drops_consumed_ones_past_retention(
    dw: DispatchWorld,
) -> None:
    redis = dw.world.redis
    now = datetime.now(UTC)
    consumed, pending, undelivered = now - timedelta(days=22), now - timedelta(days=20), now - timedelta(days=1)
    for name, at in (("consumed", consumed), ("pending", pending), ("undelivered", undelivered)):
        sealed = dw.runtime.sealer.seal("holder-t", bound_to=event_binding(name))
        await redis.xadd(DISPATCH_INTAKE, _scan_event(name, at, holder_sealed=sealed), id=f"{_ms(at)}-0")  # type: ignore[arg-type]
    ((_, delivered),) = await redis.xreadgroup(GROUP, "crashed", {DISPATCH_INTAKE: ">"}, count=2)
    await redis.xack(DISPATCH_INTAKE, GROUP, delivered[0][0])  # "consumed" made its case; "pending" did not yet
    report = await trim_to_retention(dw.runtime.store, now=now)
    assert (report.trimmed, report.expired) == (1, 0)
    assert await _ids(dw) == [b"pending", b"undelivered"]
    assert await _ids(dw, DISPATCH_DEADLETTER) == []
    # Both are still usable: a consumer takes over the crashed one's pending event and reads the other.
    assert await _worker(dw, "taker", claim_idle_ms=0).run_once() == {"created": 2}


async def test_an_event_reaching_the_retention_unconsumed_is_dead_lettered_without_its_personal_fields(
    dw: DispatchWorld,
) -> None:
    redis = dw.world.redis
    now = datetime.now(UTC)
    stuck, never, recent = now - timedelta(days=23), now - timedelta(days=22), now - timedelta(days=2)
    for name, at in (("stuck", stuck), ("never", never), ("recent", recent)):
        await redis.xadd(DISPATCH_INTAKE, _scan_event(name, at), id=f"{_ms(at)}-0")  # type: ignore[arg-type]
    await redis.xreadgroup(GROUP, "crashed", {DISPATCH_INTAKE: ">"}, count=1)  # "stuck": delivered, never acked
    report = await trim_to_retention(dw.runtime.store, now=now)
    assert report.expired == 2
    assert await _ids(dw) == [b"recent"]
    dead = {f[b"event_id"]: f for _, f in await redis.xrange(DISPATCH_DEADLETTER)}
    assert set(dead) == {b"stuck", b"never"}
    for name, deliveries in ((b"stuck", b"1"), (b"never", b"0")):
        letter = dead[name]
        assert (letter[b"dl_reason"], letter[b"dl_deliveries"]) == (b"expired_unconsumed", deliveries)
        assert all(letter[f.encode()] == b"" for f in EXPIRED_DROPPED_FIELDS if f.encode() in letter)
        assert (letter[b"place"], letter[b"event_class"]) == (b"place-a", b"status_red")
    assert int((await redis.xpending(DISPATCH_INTAKE, GROUP))["pending"]) == 0
    assert 0 < await redis.ttl(DISPATCH_DEADLETTER) <= RETENTION_DAYS * 86_400


async def test_expired_unconsumed_events_beyond_the_limit_stay_until_a_later_pass(dw: DispatchWorld) -> None:
    redis = dw.world.redis
    now = datetime.now(UTC)
    for i, name in enumerate(("first", "second", "third")):
        at = now - timedelta(days=25 - i)
        await redis.xadd(DISPATCH_INTAKE, _scan_event(name, at), id=f"{_ms(at)}-0")  # type: ignore[arg-type]
    assert (await trim_to_retention(dw.runtime.store, now=now, limit=2)).expired == 2
    assert await _ids(dw) == [b"third"]  # not dead-lettered yet, so not trimmed either
    assert (await trim_to_retention(dw.runtime.store, now=now, limit=2)).expired == 1
    assert await _ids(dw) == []
    assert sorted(await _ids(dw, DISPATCH_DEADLETTER)) == [b"first", b"second", b"third"]


async def test_a_consumed_event_is_trimmed_by_the_sweep_once_past_retention_with_no_new_traffic(
    dw: DispatchWorld,
) -> None:
    case_id = await dw.event()
    assert await dw.pump() == {"created": 1}  # made a case and acknowledged
    later = datetime.now(UTC) + timedelta(days=RETENTION_DAYS, minutes=1)
    report = await sweep_open_cases(dw.runtime.store, now=later)
    assert (report.trimmed, report.expired) == (1, 0)
    assert await _ids(dw) == [] and await _ids(dw, DISPATCH_DEADLETTER) == []
    assert (await dw.case(case_id)) is not None


async def test_without_a_consumer_group_nothing_inside_the_retention_is_trimmed(dw: DispatchWorld) -> None:
    redis = dw.world.redis
    await redis.xgroup_destroy(DISPATCH_INTAKE, GROUP)  # e.g. no worker ever started
    now = datetime.now(UTC)
    for name, at in (("old", now - timedelta(days=30)), ("young", now - timedelta(days=3))):
        await redis.xadd(DISPATCH_INTAKE, _scan_event(name, at), id=f"{_ms(at)}-0")  # type: ignore[arg-type]
    report = await trim_to_retention(dw.runtime.store, now=now)
    assert (report.expired, await _ids(dw), await _ids(dw, DISPATCH_DEADLETTER)) == (1, [b"young"], [b"old"])
