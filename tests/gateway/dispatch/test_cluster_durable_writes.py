"""The dispatch store's durable writes on a Redis Cluster with AOF on (issue 16.1): every write that waits for the
disk (``WAITAOF``) runs on a connection of the node it wrote to, so the wait is real there too. The session's test
cluster runs without persistence, where no wait is made: these run on the suite's private AOF cluster
(``aof_cluster``, tests/conftest.py), in both suites.

What is checked: each path answers as on one server and its ``WAITAOF`` was sent to the node that took its writes
(the node's ``cmdstat_waitaof`` count grows), never to a node picked at random. Not checked here: a crash of
every node and a restart from the files (tests/gateway/dispatch/test_dispatch_durability.py does that on one
server).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from gateway import keyspace
from gateway.dispatch.store import CaseStore
from gateway.localcluster import LocalCluster, node_command
from gateway.redisio import connect_redis
from policy.casework import Action, Actor, Case, Role, apply_transition, new_case
from policy.deadlines import load_default_deadline_table
from policy.routing import EventClass

DEADLINES = load_default_deadline_table()
SYSTEM = Actor("w", Role.SYSTEM)


@pytest.fixture
async def store(aof_cluster: LocalCluster) -> AsyncIterator[CaseStore]:
    # Generous bounds: a loaded 2-core machine, and a cluster whose nodes fsync and rewrite their AOF.
    redis: Redis = connect_redis(aof_cluster.url, connect_timeout_s=10.0, socket_timeout_s=30.0)
    await redis.flushdb()
    case_store = CaseStore(redis, waitaof_timeout_ms=5000)
    try:
        yield case_store
    finally:
        await redis.aclose()


def _case(case_id: str) -> Case:
    return new_case(case_id=case_id, event_class=EventClass.STATUS_RED, place_id="p",
                    jurisdiction=("metro", "east", "s1", "g1", "c1"), department="east-cdc",
                    actor=Actor("dev", Role.SOURCE), now=datetime.now(UTC), deadlines=DEADLINES)  # fmt: skip


def _waits(cluster: LocalCluster) -> dict[int, int]:
    """WAITAOF calls each primary has served so far."""
    counts: dict[int, int] = {}
    for port in cluster.primaries():
        line = next((x for x in node_command(port, "INFO", "commandstats").splitlines()
                     if x.startswith("cmdstat_waitaof:")), "")  # fmt: skip
        counts[port] = int(line.partition("calls=")[2].partition(",")[0] or 0)
    return counts


def _node_of(cluster: LocalCluster, key: str) -> int:
    slot = int(node_command(cluster.ports[0], "CLUSTER", "KEYSLOT", key).strip())
    for port in cluster.primaries():
        line = next(x for x in node_command(port, "CLUSTER", "NODES").splitlines() if "myself" in x)
        for span in line.split()[8:]:
            low, _, high = span.partition("-")
            if not span.startswith("[") and int(low) <= slot <= int(high or low):
                return port
    raise AssertionError(f"no primary serves slot {slot}")


def _grew_only_on(before: dict[int, int], after: dict[int, int], port: int) -> bool:
    return after[port] > before[port] and all(after[p] == before[p] for p in after if p != port)


async def test_case_writes_extension_and_intake_wait_on_the_node_they_wrote(
    aof_cluster: LocalCluster, store: CaseStore
) -> None:
    assert await store.aof_enabled()  # the wait is real here, unlike on the test cluster
    case = _case("c00000000000000000001")
    node = _node_of(aof_cluster, keyspace.case_key(case.case_id))

    before = _waits(aof_cluster)
    assert await store.write(None, case)
    new = apply_transition(case, Action.ACCEPT, actor=SYSTEM, now=datetime.now(UTC), deadlines=DEADLINES)
    assert await store.write(case, new)
    assert _grew_only_on(before, _waits(aof_cluster), node)
    stored = await store.get(case.case_id)
    assert stored is not None and len(stored.history) == 2

    before = _waits(aof_cluster)
    await store.ensure_durable(new)
    assert await store.request_extension(case.case_id, {"requested_at": datetime.now(UTC).isoformat()})
    assert not await store.request_extension(case.case_id, {"requested_at": datetime.now(UTC).isoformat()})
    assert _grew_only_on(before, _waits(aof_cluster), node)

    before = _waits(aof_cluster)
    mid = await store.append_intake({"event_class": "status_red", "place_id": "p"})
    assert mid and _grew_only_on(before, _waits(aof_cluster), _node_of(aof_cluster, keyspace.DISPATCH_INTAKE))


async def test_folds_count_on_the_case_and_wait_on_its_node(aof_cluster: LocalCluster, store: CaseStore) -> None:
    first = _case("c00000000000000000010")
    assert await store.write(None, first)
    node = _node_of(aof_cluster, keyspace.case_key(first.case_id))
    fold, now_ms = keyspace.fold_key("status_red", "holder-hash", "p"), int(time.time() * 1000)

    assert await store.fold(fold, first.case_id, "e-1", now_ms, 60_000) == (first.case_id, "open")
    before = _waits(aof_cluster)
    assert await store.fold(fold, "c00000000000000000011", "e-2", now_ms, 60_000) == (first.case_id, "folded")
    assert await store.fold(fold, "c00000000000000000011", "e-2", now_ms, 60_000) == (first.case_id, "duplicate")
    assert _grew_only_on(before, _waits(aof_cluster), node)

    before = _waits(aof_cluster)
    batch = [(fold, f"c0000000000000000002{i}", f"e-1{i}", now_ms) for i in range(3)]
    assert await store.fold_many(batch, 60_000) == [(first.case_id, "folded")] * 3
    assert _grew_only_on(before, _waits(aof_cluster), node)
    occurrences = await store.occurrences(first)
    assert occurrences.count == 5  # e-1 (the opener's own), e-2 and the batch's three, each once
