"""Attacks on the audit trail by someone who can write Redis but does not hold the master secret: each must fail
``audit verify`` (the function, ``placegate audit verify`` with exit 1, and ``GET /v1/privacy/audit/verify`` with
ok=false), with and without an anchor kept outside Redis; and the one legitimate cut, ``audit trim``, must not."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from redis.asyncio import Redis

from gateway import keyspace
from gateway.principals import Principal, Role
from gateway.privacy.audit import (
    AUDIT_RETENTION,
    TrailBrokenError,
    record_access,
    trim_before,
    verify_chain,
)
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Registry
from tests.gateway.conftest import WorldFactory

NOW = datetime.now(UTC).replace(microsecond=0)
OFFICER = Principal("po-1", Role.PRIVACY_OFFICER)
CLI_ENV = {"PLACEGATE_SECRET": bytes(range(32)).hex()}  # tests/conftest.py's trail key and the worlds' secret
Rows = list[tuple[bytes, dict[bytes, bytes]]]


def case_id(i: int) -> str:
    return f"c{i:020x}"


async def _fill(redis: Redis, n: int, *, start: datetime = NOW) -> None:
    for i in range(n):
        await record_access(redis, principal=OFFICER, action="read_holder_ref", obj=f"case:{case_id(i)}",
                            purpose="epidemic_prevention", now=start + timedelta(seconds=i), case_ref=case_id(i),
                            result_count=1)


async def _rows(redis: Redis) -> Rows:
    return cast(Rows, await redis.xrange(keyspace.AUDIT_STREAM))


def _sha_chain_head(seq: int, digest: str, eid: str) -> str:
    """The head an attacker can compute (everything but the MAC): signed with a key of their own."""
    text = f"{seq} {digest} {eid}"
    return f"{text} {hmac.new(b'attacker', text.encode(), hashlib.sha256).hexdigest()}"


# --- the attacks: each returns the problem kinds verify must report -----------------------------------------
async def xtrim_oldest_and_forge_base(redis: Redis) -> set[str]:
    rows = await _rows(redis)
    _, cut = rows[6]
    await redis.xtrim(keyspace.AUDIT_STREAM, minid=rows[7][0].decode(), approximate=False)
    await redis.set(keyspace.AUDIT_BASE, f"{int(cut[b'seq'])} {cut[b'hash'].decode()}")  # the old base format
    return {"forged_base", "sequence_gap", "broken_link"}


async def xtrim_oldest_and_forge_checkpoint(redis: Redis) -> set[str]:
    rows = await _rows(redis)
    _, cut = rows[6]
    await redis.xtrim(keyspace.AUDIT_STREAM, minid=rows[7][0].decode(), approximate=False)
    text = f"1 {int(cut[b'seq'])} {cut[b'hash'].decode()} {NOW.isoformat()} 7 "
    forged = f"{text} {hmac.new(b'attacker', ('checkpoint|' + text).encode(), hashlib.sha256).hexdigest()}"
    await redis.rpush(keyspace.AUDIT_CHECKPOINTS, forged)
    return {"checkpoint_forged", "sequence_gap", "broken_link"}


async def delete_the_whole_trail(redis: Redis) -> set[str]:
    await redis.delete(keyspace.AUDIT_STREAM, keyspace.AUDIT_HEAD, keyspace.AUDIT_BASE, keyspace.AUDIT_CHECKPOINTS)
    return {"trail_missing"}


async def delete_the_trail_and_its_high_water_mark(redis: Redis) -> set[str]:
    await redis.delete(keyspace.AUDIT_STREAM, keyspace.AUDIT_HEAD, keyspace.AUDIT_HWM)
    return {"trail_missing"}  # the registry (principals, places, keys) was written through audited calls


async def xdel_the_tail_and_rewrite_the_head(redis: Redis) -> set[str]:
    rows = await _rows(redis)
    for eid, _ in rows[-3:]:
        await redis.xdel(keyspace.AUDIT_STREAM, eid)
    eid, last = rows[-4]
    await redis.set(keyspace.AUDIT_HEAD, _sha_chain_head(int(last[b"seq"]), last[b"hash"].decode(), eid.decode()))
    return {"head_forged", "truncated"}


async def xdel_the_tail_and_replay_an_older_signed_head(redis: Redis) -> set[str]:
    rows = await _rows(redis)
    older = cast(bytes, await redis.get(keyspace.AUDIT_HEAD))  # saved by the attacker earlier: see below
    for eid, _ in rows[-3:]:
        await redis.xdel(keyspace.AUDIT_STREAM, eid)
    await redis.set(keyspace.AUDIT_HEAD, older)
    return {"truncated"}


async def xdel_the_tail_and_delete_the_head_then_write_on(redis: Redis) -> set[str]:
    rows = await _rows(redis)
    for eid, _ in rows[-3:]:
        await redis.xdel(keyspace.AUDIT_STREAM, eid)
    await redis.delete(keyspace.AUDIT_HEAD)
    await _fill(redis, 5, start=NOW + timedelta(hours=1))  # the gateway goes on writing: the next entry notices
    return {"head_rebuilt"}


Attack = Callable[[Redis], Awaitable[set[str]]]
ATTACKS: list[Attack] = [
    xtrim_oldest_and_forge_base,
    xtrim_oldest_and_forge_checkpoint,
    delete_the_whole_trail,
    delete_the_trail_and_its_high_water_mark,
    xdel_the_tail_and_rewrite_the_head,
    xdel_the_tail_and_replay_an_older_signed_head,
    xdel_the_tail_and_delete_the_head_then_write_on,
]


async def _prepared(redis: Redis, attack: Attack) -> tuple[tuple[int, str], set[str]]:
    """A trail of 20 entries (with registry content, as every deployment has), its anchor, then the attack."""
    await Registry(redis, actor="cli:ops").revoke_principal("nobody")  # no-op; keeps the registry untouched
    await create_principal(Registry(redis, actor="cli:ops"), Principal("po-1", Role.PRIVACY_OFFICER))
    await _fill(redis, 16)
    if attack is xdel_the_tail_and_replay_an_older_signed_head:
        head = await redis.get(keyspace.AUDIT_HEAD)
        await _fill(redis, 3, start=NOW - timedelta(hours=1))  # ids clamped after the 16: never in the future
        await redis.set("attacker-copy", cast(bytes, head))
        expected = await attack(redis)
        await redis.set(keyspace.AUDIT_HEAD, cast(bytes, await redis.get("attacker-copy")))
        await redis.delete("attacker-copy")
        clean = await verify_chain(redis)
        return (clean.head_seq, clean.head_hash), expected
    before = await verify_chain(redis)
    assert before.ok, before.problems
    return (before.head_seq, before.head_hash), await attack(redis)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
async def test_each_attack_fails_verify_without_an_anchor(redis: Redis, attack: Attack) -> None:
    _, expected = await _prepared(redis, attack)
    report = await verify_chain(redis)
    kinds = {p.split(": ")[1] for p in report.problems}
    assert not report.ok and expected <= kinds, report.problems


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
async def test_each_attack_fails_verify_with_an_anchor(redis: Redis, attack: Attack) -> None:
    anchor, expected = await _prepared(redis, attack)
    report = await verify_chain(redis, anchor=anchor)
    kinds = {p.split(": ")[1] for p in report.problems}
    assert not report.ok and expected <= kinds, report.problems


def _cli_verify(redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "audit", "verify", "--redis-url", redis_url, *extra],
                          capture_output=True, text=True, timeout=60, env={**os.environ, **CLI_ENV})


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
async def test_each_attack_makes_placegate_audit_verify_exit_1(redis: Redis, redis_url: str, attack: Attack) -> None:
    anchor, expected = await _prepared(redis, attack)
    plain = await asyncio.to_thread(_cli_verify, redis_url)
    anchored = await asyncio.to_thread(_cli_verify, redis_url, "--anchor", f"{anchor[0]}:{anchor[1]}")
    for done in (plain, anchored):
        assert done.returncode == 1 and '"ok": false' in done.stdout, done.stderr
        assert all(kind in done.stdout for kind in expected)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
async def test_each_attack_makes_the_http_verify_answer_ok_false(make_world: WorldFactory, attack: Attack) -> None:
    world = await make_world(principal_cache_s=0)
    token = await create_principal(Registry(world.redis), Principal("po-9", Role.PRIVACY_OFFICER))
    anchor, expected = await _prepared(world.redis, attack)
    headers = {"Authorization": f"Bearer {token}"}
    answers = []
    for params in ({}, {"anchor": f"{anchor[0]}:{anchor[1]}"}):
        resp = await world.client.get("/v1/privacy/audit/verify", params=params, headers=headers)
        body = await resp.json()
        assert resp.status == 200 and body["ok"] is False, body
        answers.append({p.split(": ")[1] for p in body["problems"]})
    # The first verify's own audit entry extends the damaged trail; the second still finds it broken.
    assert expected <= answers[0] and answers[1]


async def test_an_empty_trail_that_never_had_entries_verifies(redis: Redis) -> None:
    assert (await verify_chain(redis)).ok


async def test_audit_trim_leaves_chained_signed_checkpoints_and_verify_stays_ok(redis: Redis) -> None:
    old = NOW - AUDIT_RETENTION - timedelta(days=40)
    await _fill(redis, 5, start=old)
    await _fill(redis, 5, start=old + timedelta(days=20))
    await _fill(redis, 3)
    assert await trim_before(redis, cutoff=old + timedelta(days=10), now=NOW, actor="cli:ops") == 5
    assert await trim_before(redis, cutoff=NOW - AUDIT_RETENTION, now=NOW, actor="cli:ops") == 5
    report = await verify_chain(redis)
    assert report.ok and report.count == 3 + 2, report.problems  # 3 kept + the two trims' own entries
    first, second = (c.decode().split(" ") for c in await redis.lrange(keyspace.AUDIT_CHECKPOINTS, 0, -1))
    assert (first[0], first[1], first[4]) == ("1", "5", "5") and (second[0], second[1], second[4]) == ("2", "10", "5")
    assert second[5] == first[6]  # the second checkpoint names the first one's MAC: checkpoints form a chain
    trims = [f for _, f in await _rows(redis) if f[b"action"] == b"audit_trim"]
    assert [(t[b"object"], t[b"dropped"]) for t in trims] == [(b"checkpoint:1", b"5"), (b"checkpoint:2", b"5")]


async def test_removing_the_last_checkpoint_after_a_trim_is_detected(redis: Redis) -> None:
    old = NOW - AUDIT_RETENTION - timedelta(days=40)
    await _fill(redis, 5, start=old)
    await _fill(redis, 3)
    await trim_before(redis, cutoff=NOW - AUDIT_RETENTION, now=NOW, actor="cli:ops")
    await redis.rpop(keyspace.AUDIT_CHECKPOINTS)
    kinds = {p.split(": ")[1] for p in (await verify_chain(redis)).problems}
    assert {"sequence_gap", "broken_link"} <= kinds


async def test_trim_refuses_a_trail_that_does_not_verify(redis: Redis) -> None:
    old = NOW - AUDIT_RETENTION - timedelta(days=40)
    await _fill(redis, 6, start=old)
    await _fill(redis, 2)
    await redis.xdel(keyspace.AUDIT_STREAM, (await _rows(redis))[2][0])  # a cut inside the part to be trimmed
    with pytest.raises(TrailBrokenError):
        await trim_before(redis, cutoff=NOW - AUDIT_RETENTION, now=NOW, actor="cli:ops")
    assert await redis.llen(keyspace.AUDIT_CHECKPOINTS) == 0  # no checkpoint signs over the cut
