"""No acknowledged case is lost: SIGKILL the persistent embedded server while cases are being created and
transitioned, restart it on the same data directory, and find every acknowledged write exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

from gateway.dispatch.store import CaseStore
from gateway.embedded import EmbeddedServer
from gateway.errors import GatewayError
from gateway.keyspace import DISPATCH_OPEN
from gateway.redisio import connect_redis
from policy.casework import Action, Actor, Case, Role, apply_transition, new_case
from policy.deadlines import load_default_deadline_table
from policy.routing import EventClass

DEADLINES = load_default_deadline_table()
SYSTEM = Actor("w", Role.SYSTEM)
HANDLER = Actor("h", Role.DEPARTMENT, "east-cdc")
STEPS = [(Action.ACCEPT, SYSTEM), (Action.FILE, SYSTEM), (Action.DISPATCH, SYSTEM), (Action.START, HANDLER),
         (Action.FEED_BACK, HANDLER)]  # fmt: skip


def _new(i: int, writer: int) -> Case:
    return new_case(case_id=f"c{writer:04x}{i:016x}", event_class=EventClass.STATUS_RED, place_id="p",
                    jurisdiction=("metro", "east", "s1", "g1", "c1"), department="east-cdc",
                    actor=Actor("dev", Role.SOURCE), now=datetime.now(UTC), deadlines=DEADLINES)  # fmt: skip


async def _writer(store: CaseStore, writer: int, acked: dict[str, int]) -> None:
    """Create cases and walk them through the loop; record what each acknowledged write promised."""
    i = 0
    with contextlib.suppress(GatewayError):
        while True:
            case = _new(i, writer)
            assert await store.write(None, case)
            acked[case.case_id] = 1
            for action, actor in STEPS[: 1 + i % len(STEPS)]:
                new = apply_transition(case, action, actor=actor, now=datetime.now(UTC), deadlines=DEADLINES)
                assert await store.write(case, new)
                case = new
                acked[case.case_id] = len(case.history)
            i += 1


async def test_every_acknowledged_case_and_transition_survives_sigkill(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "redis", persistent=True).start()
    acked: dict[str, int] = {}
    try:
        redis = connect_redis(server.url)
        store = CaseStore(redis, waitaof_timeout_ms=5000)
        assert await store.aof_enabled()  # the wait is real here, unlike on the test server
        writers = [asyncio.create_task(_writer(store, w, acked)) for w in range(24)]
        while len(acked) < 40 or sum(acked.values()) < 120:
            await asyncio.sleep(0.05)
        server.stop(kill=True)  # SIGKILL, mid-write
        await asyncio.wait_for(asyncio.gather(*writers, return_exceptions=True), 30)
        await redis.aclose()
    finally:
        server.stop(kill=True)

    server = EmbeddedServer(tmp_path / "redis", persistent=True).start()
    try:
        redis = connect_redis(server.url)
        store = CaseStore(redis)
        for case_id, length in acked.items():
            case = await store.get(case_id)
            assert case is not None, case_id
            # Never fewer entries than acknowledged; never a duplicate (the writes are conditional on the length).
            assert len(case.history) >= length, case_id
            expected = [Action.REPORT] + [a for a, _ in STEPS]
            assert [e.action for e in case.history] == expected[: len(case.history)]
            assert case.state.value == case.history[-1].to_state.value
        open_ids = {m.decode() for m in await redis.smembers(DISPATCH_OPEN)}
        assert set(acked) <= open_ids
        await redis.aclose()
    finally:
        server.stop()
