"""The retention report checks every key against its class's limit under the running configuration, and the
background retention trim keeps the intake stream and the dead letters inside the retention without a dispatch
sweeper. All on the real server: keys of each violation kind are planted and must each be listed, over HTTP and
by `placegate privacy retention` (exit 1); a store the gateway wrote itself reports none (exit 0)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis, RedisCluster

from crypto.native import Colour
from gateway import keyspace
from gateway.dispatch.worker import GROUP
from gateway.principals import Principal, Role
from gateway.privacy.retention import PROBLEMS, retention_report
from gateway.redisio import is_cluster
from gateway.scan.scanlog import day_of, partition_expiry
from gateway.settings import DispatchSettings
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway.conftest import SECRET, World, WorldFactory
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world

DAY_S = 24 * 3600
RETENTION_S = 21 * DAY_S  # the test settings' retention_days
CASE = "c" + "0123456789abcdef0123"
Violation = tuple[str | None, str, str]


async def _officer(world: World) -> dict[str, str]:
    token = await create_principal(Registry(world.redis), Principal("po-1", Role.PRIVACY_OFFICER))
    return {"Authorization": f"Bearer {token}"}


async def _http_report(world: World) -> dict[str, Any]:
    resp = await world.client.get("/v1/privacy/retention", headers=await _officer(world))
    assert resp.status == 200
    report: dict[str, Any] = await resp.json()
    return report


def _cli_report(redis_url: str, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "PLACEGATE_DATA_DIR": str(tmp_path), "PLACEGATE_RETENTION_DAYS": "21",
           "PLACEGATE_SECRET": SECRET.reveal().hex()}  # an external store requires the deployment's secret
    done = subprocess.run([sys.executable, "-m", "gateway", "privacy", "retention", "--redis-url", redis_url],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    return done.returncode, json.loads(done.stdout)


def _found(report: dict[str, Any]) -> set[Violation]:
    return {(v["class"], v["key"], v["problem"]) for v in report["violations"]}


def _id_at(at: datetime) -> str:
    return f"{int(at.timestamp() * 1000)}-0"


async def test_a_store_the_gateway_wrote_itself_has_no_violations(
    make_dispatch_world: DispatchWorldFactory, redis_url: str, tmp_path: Path
) -> None:
    dw: DispatchWorld = await make_dispatch_world(clock=None)
    world = dw.world
    for i, colour in enumerate((Colour.RED, Colour.YELLOW, Colour.GREEN)):
        await world.set_status(f"holder-{i}", colour)
        assert (await world.scan(world.code(f"holder-{i}")))[0] == 200
    await dw.event("no_such_class")  # unknown class: a dead letter (an unroutable place makes a case)
    assert (await dw.pump())["created"] == 2
    await world.redis.set(keyspace.approval_key("apv_" + "ab" * 16), "x", ex=3600)
    report = await _http_report(world)
    assert report["violations"] == [] and report["violation_counts"] == {}
    classes = report["classes"]
    for name in ("status_cache", "replay_memory", "cases", "case_history", "case_holder", "dead_letters",
                 "dispatch_open", "dispatch_days", "due_index", "approvals", "places", "principals", "audit"):
        assert classes[name]["keys"] >= 1, name
    assert classes["unclassified"]["keys"] == 0
    assert set(classes) == {c.name for c in keyspace.DATA_CLASSES} | {"unclassified"}  # every class is named
    assert (classes["scan_log"]["keys"], classes["day_keys"]["keys"]) == (1, 1)
    assert [p["day"] for p in report["scan_log"]["partitions"]] == [day_of(datetime.now(UTC))]
    code, cli = _cli_report(redis_url, tmp_path)
    assert (code, cli["violations"]) == (0, [])


async def test_every_planted_violation_is_listed_by_class_key_and_problem(
    make_dispatch_world: DispatchWorldFactory, redis_url: str, tmp_path: Path
) -> None:
    dw: DispatchWorld = await make_dispatch_world(clock=None)
    redis: Redis = dw.world.redis
    now = datetime.now(UTC)
    today, old_day = day_of(now), day_of(now - timedelta(days=30))
    status_ttl_s = dw.world.settings.status_ttl_s
    expected: set[Violation] = set()

    async def plant(key: str, ttl_s: int | None, *problems: tuple[str | None, str]) -> None:
        await redis.set(key, "x")
        if ttl_s is not None:
            await redis.expire(key, ttl_s)
        expected.update((cls, key, problem) for cls, problem in problems)

    await plant("pg:mystery:1", 60, (None, "unclassified"))
    await plant(keyspace.case_key(CASE), None, ("cases", "no_expiry"))
    await plant(keyspace.DISPATCH_OPEN, None, ("dispatch_open", "no_expiry"))
    await plant(keyspace.case_holder_key(CASE), RETENTION_S + DAY_S, ("case_holder", "expires_too_late"))
    case_too_long = keyspace.CASE_RETENTION_S + DAY_S
    await plant(keyspace.case_history_key(CASE), case_too_long, ("case_history", "expires_too_late"))
    await plant(keyspace.status_bucket_key(7), status_ttl_s + 3600, ("status_cache", "expires_too_late"))
    await plant(keyspace.nonce_key("00aa11bb22cc33dd:" + "0f" * 12), 3600, ("replay_memory", "expires_too_late"))
    await plant(keyspace.static_replay_key("ab" * 16), 600, ("static_replay_memory", "expires_too_late"))
    await plant(keyspace.approval_key("apv_" + "cd" * 16), 2 * DAY_S, ("approvals", "expires_too_late"))
    await plant(keyspace.day_key(old_day), 3600, ("day_keys", "past_retention"), ("day_keys", "expires_too_late"))
    log = keyspace.scan_log_key(today)
    await redis.xadd(log, {"t": str(int(now.timestamp() * 1000))})
    await redis.expireat(log, partition_expiry(today, 21) + 3600)
    expected.add(("scan_log", log, "expires_too_late"))
    await redis.xadd(keyspace.DISPATCH_INTAKE, {"event_id": "old"}, id=_id_at(now - timedelta(days=22)))
    expected.add(("dispatch_intake", keyspace.DISPATCH_INTAKE, "entries_past_retention"))
    await redis.xadd(keyspace.DISPATCH_DEADLETTER, {"event_id": "old"}, id=_id_at(now - timedelta(days=22)))
    await redis.expire(keyspace.DISPATCH_DEADLETTER, RETENTION_S + DAY_S)
    for problem in ("entries_past_retention", "expires_too_late"):
        expected.add(("dead_letters", keyspace.DISPATCH_DEADLETTER, problem))

    report = await _http_report(dw.world)
    assert _found(report) == expected
    assert {p for _, _, p in expected} == set(PROBLEMS)  # every kind of violation is among them
    assert all(v["detail"] for v in report["violations"])
    assert report["classes"]["unclassified"]["keys"] == 1
    code, cli = _cli_report(redis_url, tmp_path)
    assert (code, _found(cli)) == (1, expected)


async def test_a_ttl_inside_the_limit_and_a_fresh_stream_entry_are_no_violation(redis: Redis) -> None:
    now = datetime.now(UTC)
    await redis.set(keyspace.case_holder_key(CASE), "x", ex=RETENTION_S)
    await redis.set(keyspace.status_bucket_key(7), "x", ex=300)
    await redis.xadd(keyspace.DISPATCH_INTAKE, {"event_id": "new"}, id=_id_at(now - timedelta(days=20)))
    day = day_of(now - timedelta(days=21))  # the oldest retained day, expiring exactly on schedule
    await redis.set(keyspace.day_key(day), "k", exat=partition_expiry(day, 21))
    report = await retention_report(redis, now=now, retention_days=21, status_ttl_s=300)
    assert report["violations"] == []
    # A shorter retention makes the same store a violation: the limit is the running configuration's.
    shorter = await retention_report(redis, now=now, retention_days=14, status_ttl_s=300)
    assert {(c, p) for c, _, p in _found(shorter)} == {
        ("case_holder", "expires_too_late"), ("dispatch_intake", "entries_past_retention"),
        ("day_keys", "past_retention"), ("day_keys", "expires_too_late"),
    }  # fmt: skip


async def test_the_report_reads_every_primary_of_a_cluster(redis: Redis) -> None:
    """On one server the same report; under `make test-cluster` the planted keys sit on every primary (asserted)
    and each one is listed: the report SCANs each primary (PRIVACY.md F3)."""
    keys = [keyspace.case_key("c" + f"{i:020x}") for i in range(24)]
    for key in keys:
        await redis.set(key, "x")  # no TTL: each one a no_expiry violation
    if is_cluster(redis):
        cluster = cast(RedisCluster, redis)
        assert {cluster.get_node_from_key(k).name for k in keys} == {n.name for n in cluster.get_primaries()}
    report = await retention_report(redis, now=datetime.now(UTC), retention_days=21, status_ttl_s=300)
    assert _found(report) == {("cases", key, "no_expiry") for key in keys}
    assert report["classes"]["cases"]["keys"] == len(keys)


async def test_an_intake_entry_within_the_trim_period_past_retention_is_tolerated(redis: Redis) -> None:
    now = datetime.now(UTC)
    await redis.xadd(keyspace.DISPATCH_INTAKE, {"event_id": "e"}, id=_id_at(now - timedelta(days=21, seconds=30)))
    assert (await retention_report(redis, now=now, retention_days=21, status_ttl_s=300, grace_s=60))["violations"] == []
    late = await retention_report(redis, now=now, retention_days=21, status_ttl_s=300, grace_s=10)
    assert _found(late) == {("dispatch_intake", keyspace.DISPATCH_INTAKE, "entries_past_retention")}


async def _trimming_world(make_world: WorldFactory, dispatch_env: Callable[..., DispatchSettings]) -> World:
    # No intake consumer and no dispatch sweeper in this gateway: only the privacy feature's trim runs.
    world = await make_world(dispatch=dispatch_env(WORKER="0", SWEEP_INTERVAL_S="0"), retention_trim_s=0.1)
    assert world.settings.dispatch.sweep_interval_s == 0 and not world.settings.dispatch.worker
    return world


async def _plant_intake(redis: Redis, now: datetime) -> tuple[str, str, str]:
    """An old event the group consumed, an old one it never got, a recent one it never got."""
    consumed, unconsumed = _id_at(now - timedelta(days=23)), _id_at(now - timedelta(days=22))
    recent = _id_at(now - timedelta(days=1))
    await redis.xgroup_create(keyspace.DISPATCH_INTAKE, GROUP, id="0", mkstream=True)
    await redis.xadd(keyspace.DISPATCH_INTAKE, {"event_id": "consumed", "pseudonym": "p" * 32}, id=consumed)
    ((_, delivered),) = await redis.xreadgroup(GROUP, "c1", {keyspace.DISPATCH_INTAKE: ">"}, count=1)
    await redis.xack(keyspace.DISPATCH_INTAKE, GROUP, *[mid for mid, _ in delivered])
    await redis.xadd(keyspace.DISPATCH_INTAKE, {"event_id": "unconsumed", "pseudonym": "p" * 32}, id=unconsumed)
    await redis.xadd(keyspace.DISPATCH_INTAKE, {"event_id": "recent", "pseudonym": "p" * 32}, id=recent)
    return consumed, unconsumed, recent


async def _intake_ids(redis: Redis) -> list[str]:
    return [mid.decode() for mid, _ in await redis.xrange(keyspace.DISPATCH_INTAKE)]


async def test_the_background_trim_keeps_the_intake_inside_retention_with_no_dispatch_sweeper(
    make_world: WorldFactory, dispatch_env: Callable[..., DispatchSettings]
) -> None:
    world = await _trimming_world(make_world, dispatch_env)
    redis = world.redis
    old_dead_letter = _id_at(datetime.now(UTC) - timedelta(days=22))
    await redis.xadd(keyspace.DISPATCH_DEADLETTER, {"event_id": "old-dl"}, id=old_dead_letter)
    _, unconsumed, recent = await _plant_intake(redis, datetime.now(UTC))
    for _ in range(500):
        if await _intake_ids(redis) == [recent]:
            break
        await asyncio.sleep(0.02)
    assert await _intake_ids(redis) == [recent]  # the consumed old event gone, the recent unconsumed one kept
    # The old unconsumed event was never deleted unseen: it is a dead letter now, without its pseudonym.
    dead = [(f[b"dl_event_id"].decode(), f[b"dl_reason"], f.get(b"pseudonym")) for _, f in
            await redis.xrange(keyspace.DISPATCH_DEADLETTER)]
    assert dead == [(unconsumed, b"expired_unconsumed", None)]  # and the old dead letter trimmed by time
    assert 0 < await redis.ttl(keyspace.DISPATCH_DEADLETTER) <= RETENTION_S
    assert 0 < await redis.pttl(keyspace.RETENTION_LEASE) <= keyspace.sweep_lease_ttl_ms(0.1)
    assert not await redis.exists(keyspace.SWEEP_LEASE)  # the dispatch sweeper never ran
    assert (await _http_report(world))["violations"] == []


async def test_only_the_lease_holder_trims(
    make_world: WorldFactory, dispatch_env: Callable[..., DispatchSettings]
) -> None:
    redis = (await _trimming_world(make_world, dispatch_env)).redis
    await redis.set(keyspace.RETENTION_LEASE, "another-process", px=60_000)
    await redis.delete(keyspace.DISPATCH_INTAKE)
    consumed, unconsumed, recent = await _plant_intake(redis, datetime.now(UTC))
    await asyncio.sleep(0.5)  # five periods: the lease belongs to someone else, so this process leaves it alone
    assert await _intake_ids(redis) == [consumed, unconsumed, recent]
    await redis.delete(keyspace.RETENTION_LEASE)  # the other process died and its lease expired
    for _ in range(500):
        if await _intake_ids(redis) == [recent]:
            break
        await asyncio.sleep(0.02)
    assert await _intake_ids(redis) == [recent]
