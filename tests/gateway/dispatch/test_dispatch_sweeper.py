"""The sweeper scales (issue 13, point 8) on the real Redis: the due index names exactly the due cases, a pass reads
only those, older cases without an index entry are still swept, and one process at a time holds the sweep lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from gateway import keyspace
from gateway.dispatch.lease import SweepLease
from gateway.dispatch.store import CaseStore, due_score
from gateway.dispatch.worker import SYSTEM_ACTOR, sweep_open_cases
from policy.casework import Action, Actor, Case, Role, apply_transition, new_case
from policy.deadlines import load_default_deadline_table, next_due_at, sweep
from policy.routing import EventClass
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_cli import _placegate
from tests.gateway.dispatch.test_dispatch_fixtures import T0, DispatchWorld

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw
DEADLINES = load_default_deadline_table()
HANDLER = Actor("h", Role.DEPARTMENT, "s1-clinic")
DISPATCHER = Actor("d", Role.INTAKE_OPERATOR)
US = timedelta(microseconds=1)


def _dispatched(i: int, at: datetime) -> Case:
    """A status_red case dispatched at ``at`` to a community centre: its department has 1 h to open it."""
    case = new_case(case_id=f"c{i:020x}", event_class=EventClass.STATUS_RED, place_id="place-a",
                    jurisdiction=("city", "d1", "s1", "g1", "c1"), department="s1-clinic",
                    actor=Actor("dev", Role.SOURCE), now=at, deadlines=DEADLINES)  # fmt: skip
    for action in (Action.ACCEPT, Action.FILE, Action.DISPATCH):
        case = apply_transition(case, action, actor=SYSTEM_ACTOR, now=at, deadlines=DEADLINES)
    return case


def _shapes() -> list[tuple[str, Case]]:
    fresh = _dispatched(1, T0)
    flagged = sweep(fresh, now=T0 + timedelta(hours=1))
    escalated = sweep(flagged, now=T0 + timedelta(hours=2))
    at_city = sweep(escalated, now=T0 + timedelta(hours=20))
    started = apply_transition(fresh, Action.START, actor=HANDLER, now=T0 + timedelta(minutes=5), deadlines=DEADLINES)
    cancelled = apply_transition(
        new_case(case_id="c" + "0" * 20, event_class=EventClass.OTHER, place_id="p", jurisdiction=("city", "d1"),
                 department="city-ops", actor=Actor("sm", Role.SOURCE), now=T0, deadlines=DEADLINES),
        Action.CANCEL, actor=DISPATCHER, now=T0, deadlines=DEADLINES, note="duplicate",
    )  # fmt: skip
    return [("fresh", fresh), ("flagged", flagged), ("escalated", escalated), ("at_city", at_city),
            ("started", started), ("cancelled", cancelled)]  # fmt: skip


@pytest.mark.parametrize(("shape", "case"), _shapes(), ids=[name for name, _ in _shapes()])
def test_next_due_at_is_the_first_instant_at_which_a_sweep_changes_the_case(shape: str, case: Case) -> None:
    due = next_due_at(case)
    if due is None:
        assert shape in ("at_city", "cancelled")
        assert sweep(case, now=T0 + timedelta(days=300)) is case
        return
    assert sweep(case, now=due - US) is case
    assert sweep(case, now=due) is not case
    assert next_due_at(sweep(case, now=due)) != due  # a swept case moves on: a pass never loops on it


def test_the_due_score_is_never_before_the_instant_and_closed_cases_have_none() -> None:
    shapes = dict(_shapes())
    assert due_score(shapes["fresh"]) == str(int((T0 + timedelta(hours=1)).timestamp() * 1000))
    assert due_score(shapes["at_city"]) == "+inf"  # open, but nothing more will happen to it
    assert due_score(shapes["cancelled"]) is None


async def _due_ids(redis: Redis) -> dict[str, float]:
    return {m.decode(): s for m, s in await redis.zrange(keyspace.DISPATCH_DUE, 0, -1, withscores=True)}


async def test_the_due_index_finds_exactly_the_due_cases_and_a_case_that_stops_being_due_leaves_it(
    redis: Redis,
) -> None:
    store = CaseStore(redis)
    cases = [_dispatched(i, T0 + timedelta(minutes=i)) for i in range(10)]
    for case in cases:
        assert await store.write(None, case)
    at = T0 + timedelta(hours=1, minutes=4)
    assert await store.due(at) == [c.case_id for c in cases[:5]]
    assert await store.due(at, offset=1, count=2) == [c.case_id for c in cases[1:3]]
    # Started: the handling clock (2 h) replaces the 1 h dispatch clock, so the case is no longer due.
    started = apply_transition(cases[0], Action.START, actor=HANDLER, now=T0 + timedelta(minutes=30),
                               deadlines=DEADLINES)  # fmt: skip
    assert await store.write(cases[0], started)
    assert await store.due(at) == [c.case_id for c in cases[1:5]]
    assert await redis.ttl(keyspace.DISPATCH_DUE) > 0 and await redis.ttl(keyspace.DISPATCH_DUE_STAMPS) > 0


async def test_a_closed_case_leaves_the_due_index(redis: Redis) -> None:
    store = CaseStore(redis)
    case = new_case(case_id="c" + "1" * 20, event_class=EventClass.OTHER, place_id="p", jurisdiction=("city", "d1"),
                    department="city-ops", actor=Actor("sm", Role.SOURCE), now=T0, deadlines=DEADLINES)  # fmt: skip
    assert await store.write(None, case)
    assert case.case_id in await _due_ids(redis)
    cancelled = apply_transition(case, Action.CANCEL, actor=DISPATCHER, now=T0, deadlines=DEADLINES, note="dup")
    assert await store.write(case, cancelled)
    assert case.case_id not in await _due_ids(redis)
    assert not await redis.sismember(keyspace.DISPATCH_OPEN, case.case_id)


async def test_a_stale_copy_never_moves_a_newer_score(redis: Redis) -> None:
    store = CaseStore(redis)
    case = _dispatched(3, T0)
    assert await store.write(None, case)
    started = apply_transition(case, Action.START, actor=HANDLER, now=T0 + timedelta(minutes=5), deadlines=DEADLINES)
    assert await store.write(case, started)
    before = await _due_ids(redis)
    await store.file_due([case])  # an index update of the older version arriving late
    assert await _due_ids(redis) == before


async def test_a_pass_reads_only_the_due_cases(redis: Redis) -> None:
    store = CaseStore(redis)
    for i in range(60):
        assert await store.write(None, _dispatched(i, T0 + timedelta(minutes=i)))
    report = await sweep_open_cases(store, now=T0 + timedelta(hours=1, minutes=2))
    assert (report.checked, report.flagged, report.escalated) == (3, 3, 0)
    again = await sweep_open_cases(store, now=T0 + timedelta(hours=1, minutes=2))
    assert (again.checked, again.flagged) == (0, 0)  # swept cases moved on to their next instant (2x)
    report = await sweep_open_cases(store, now=T0 + timedelta(hours=2, minutes=1))
    assert (report.checked, report.flagged, report.escalated) == (59, 57, 2)  # 57 unflagged + 2 at their 2x


async def test_a_pass_stops_when_the_lease_is_lost(redis: Redis) -> None:
    store = CaseStore(redis)
    assert await store.write(None, _dispatched(1, T0))

    async def lost() -> bool:
        return False

    report = await sweep_open_cases(store, now=T0 + timedelta(hours=3), keep=lost)
    assert (report.complete, report.checked) == (False, 0)


async def test_old_cases_without_an_index_entry_are_still_swept(redis: Redis) -> None:
    store = CaseStore(redis)
    old, indexed = _dispatched(1, T0), _dispatched(2, T0)
    for case in (old, indexed):
        assert await store.write(None, case)
    await store.mark_due_checked()
    # As code without the index wrote it: in the open set, no due entry. A pass inside the daily check misses it...
    await redis.zrem(keyspace.DISPATCH_DUE, old.case_id)
    await redis.hdel(keyspace.DISPATCH_DUE_STAMPS, old.case_id)
    report = await sweep_open_cases(store, now=T0 + timedelta(hours=1))
    assert report.checked == 1
    # ...and the next check (the marker expired) files it, and it is swept in that same pass.
    await redis.delete(keyspace.DISPATCH_DUE_CHECKED)
    report = await sweep_open_cases(store, now=T0 + timedelta(hours=2))
    assert (report.checked, report.flagged, report.escalated) == (2, 1, 2)
    assert 0 < await redis.ttl(keyspace.DISPATCH_DUE_CHECKED) <= keyspace.DUE_RECONCILE_S


async def test_a_missing_index_is_rebuilt_from_the_open_set(redis: Redis) -> None:
    store = CaseStore(redis)
    cases = [_dispatched(i, T0) for i in range(5)]
    for case in cases:
        assert await store.write(None, case)
    await store.mark_due_checked()
    await redis.delete(keyspace.DISPATCH_DUE, keyspace.DISPATCH_DUE_STAMPS)  # all of it gone: checked at once
    report = await sweep_open_cases(store, now=T0 + timedelta(hours=1))
    assert (report.checked, report.flagged) == (5, 5)
    assert set(await _due_ids(redis)) == {c.case_id for c in cases}


async def test_an_index_entry_whose_case_is_gone_is_dropped(redis: Redis) -> None:
    store = CaseStore(redis)
    case = _dispatched(4, T0)
    assert await store.write(None, case)
    await redis.delete(keyspace.case_key(case.case_id), keyspace.case_history_key(case.case_id))  # past retention
    report = await sweep_open_cases(store, now=T0 + timedelta(hours=1))
    assert report.checked == 0
    assert await _due_ids(redis) == {} and not await redis.sismember(keyspace.DISPATCH_OPEN, case.case_id)


# --- the lease ---------------------------------------------------------------------------------------------------
async def test_of_racing_sweepers_exactly_one_holds_the_lease(redis: Redis) -> None:
    for _ in range(30):
        leases = [SweepLease(redis, ttl_ms=10_000) for _ in range(8)]
        held = await asyncio.gather(*(lease.hold() for lease in leases))
        assert sum(held) == 1
        holder = leases[held.index(True)]
        assert await holder.hold() and await holder.renew()  # the holder keeps it
        assert not any(await asyncio.gather(*(lease.hold() for lease in leases if lease is not holder)))
        await holder.release()
        assert not await redis.exists(keyspace.SWEEP_LEASE)


async def test_a_crashed_holders_lease_expires_and_it_cannot_touch_its_successors(redis: Redis) -> None:
    crashed, successor = SweepLease(redis, ttl_ms=50), SweepLease(redis, ttl_ms=10_000)
    assert await crashed.hold()
    assert not await successor.hold()
    while await redis.exists(keyspace.SWEEP_LEASE):  # the crashed holder renews no more
        await asyncio.sleep(0.01)
    assert await successor.hold()
    assert not await crashed.renew()  # came back from a stall: it neither extends...
    crashed.held = True  # (even if it believes it still holds it)
    await crashed.release()  # ...nor deletes its successor's lease
    assert (await redis.get(keyspace.SWEEP_LEASE)).decode() == successor.token


async def test_the_sweep_command_says_so_when_another_process_holds_the_lease(
    make_dispatch_world: fx.DispatchWorldFactory, redis_url: str, tmp_path: Path
) -> None:
    # A committed pass runs at the clock: the case is made 2 h 10 min before it (past 2x its 1 h budget, short of 4x).
    dw: DispatchWorld = await make_dispatch_world(clock=datetime.now(UTC) - timedelta(hours=2, minutes=10))
    case_id = await dw.event()
    await dw.pump()
    gateway = SweepLease(dw.world.redis, ttl_ms=60_000)
    assert await gateway.hold()
    done = await asyncio.to_thread(_placegate, "sweep", redis_url=redis_url, tmp_path=tmp_path)
    assert done.returncode == 3 and "sweep lease" in done.stderr
    assert (await dw.case(case_id)).escalation_count == 0
    await gateway.release()
    done = await asyncio.to_thread(_placegate, "sweep", redis_url=redis_url, tmp_path=tmp_path)
    assert done.returncode == 0 and (await dw.case(case_id)).escalation_count == 1
    assert not await dw.world.redis.exists(keyspace.SWEEP_LEASE)  # released after its pass


async def test_of_two_gateways_one_sweeps(make_dispatch_world: fx.DispatchWorldFactory) -> None:
    first = await make_dispatch_world(env={"SWEEP_INTERVAL_S": "0.02"})
    second = await make_dispatch_world(env={"SWEEP_INTERVAL_S": "0.02"})
    for _ in range(200):
        if await first.world.redis.exists(keyspace.SWEEP_LEASE):
            break
        await asyncio.sleep(0.02)
    token = await first.world.redis.get(keyspace.SWEEP_LEASE)
    await asyncio.sleep(0.2)  # ten periods of both: the holder keeps it
    assert await second.world.redis.get(keyspace.SWEEP_LEASE) == token


@pytest.mark.single_node("builds a two-connection pool of one server to count the connections a case write holds")
async def test_case_writes_keep_to_one_connection_each_even_on_a_small_pool(redis_url: str) -> None:
    """WAITAOF counts the writes of its own connection, so a write never hands part of its work to a pipeline
    (redis-py runs one on another pool connection); with 8 writers on a pool of 2 a write that did would hang."""
    client = Redis.from_pool(BlockingConnectionPool.from_url(redis_url, max_connections=2, timeout=5))
    try:
        await client.flushdb()
        store = CaseStore(client)
        written = await asyncio.gather(*(store.write(None, _dispatched(i, T0)) for i in range(8)))
        assert all(written) and len(await _due_ids(client)) == 8
    finally:
        await client.aclose()
