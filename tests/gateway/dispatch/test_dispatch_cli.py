"""The in-process sweeper and `placegate dispatch sweep|report` (as subprocesses, on the test server)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from tests.gateway.conftest import SECRET
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import ROUTING, T0, DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world, dw = fx.dispatch_env, fx.make_dispatch_world, fx.dw



async def _keys(redis: Redis, pattern: str) -> list[bytes]:
    """The keys matching ``pattern``, sorted: SCAN (every primary of a cluster; KEYS asks one node)."""
    return sorted([k async for k in redis.scan_iter(match=pattern)])

async def test_the_gateway_sweeps_on_its_interval(make_dispatch_world: DispatchWorldFactory) -> None:
    # The test's clock starts at the real time: the app's sweeper starts with the real clock, and a pass already
    # running when the fixture switches to the test's clock must see the same instant, not one months ahead of T0
    # (seen: a pass that began before the switch escalated the new case three levels at once).
    dw: DispatchWorld = await make_dispatch_world(env={"SWEEP_INTERVAL_S": "0.02"}, clock=datetime.now(UTC))
    case_id = await dw.event()
    await dw.pump()
    dw.clock.advance(hours=2)  # 2x the 1 h budget of "dispatched"
    for _ in range(200):
        case = await dw.case(case_id)
        if case.escalation_count:
            break
        await asyncio.sleep(0.02)
    assert (case.overdue, case.escalation_count, case.level.value) == (True, 1, "street")


def _placegate(*args: str, redis_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    routing = tmp_path / "routing.toml"
    routing.write_text(ROUTING, "utf-8")
    env = {**os.environ, "PLACEGATE_DATA_DIR": str(tmp_path), "PLACEGATE_DISPATCH_ROUTING_FILE": str(routing),
           "PLACEGATE_SECRET": SECRET.reveal().hex()}
    return subprocess.run([sys.executable, "-m", "gateway", "dispatch", *args, "--redis-url", redis_url],
                          capture_output=True, text=True, env=env, timeout=60, check=False)  # fmt: skip


async def test_dispatch_sweep_and_report_commands(
    make_dispatch_world: DispatchWorldFactory, redis_url: str, tmp_path: Path
) -> None:
    # A committed pass runs at the clock: the case is made 2 h 10 min before it (past 2x its 1 h budget, short of 4x).
    created = datetime.now(UTC) - timedelta(hours=2, minutes=10)
    dw: DispatchWorld = await make_dispatch_world(clock=created)
    case_id = await dw.event()
    await dw.pump()
    done = await asyncio.to_thread(_placegate, "sweep", redis_url=redis_url, tmp_path=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "due=1 flagged=1 escalated=1 trimmed=0 expired=0")
    assert (await dw.case(case_id)).level.value == "street"
    day = created.replace(hour=0, minute=0, second=0, microsecond=0)
    args = [
        "report",
        "--from",
        day.isoformat(),
        "--to",
        (day + timedelta(days=1)).isoformat(),
        "--jurisdiction",
        "city/d1",
    ]
    done = await asyncio.to_thread(_placegate, *args, redis_url=redis_url, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["overall"]["cases"], list(report["by_department"])) == (1, ["s1-clinic"])
    assert "holder" not in done.stdout and "pseudonym" not in done.stdout
    bad = ["report", "--from", T0.isoformat(), "--to", (T0 + timedelta(days=400)).isoformat()]
    assert (await asyncio.to_thread(_placegate, *bad, redis_url=redis_url, tmp_path=tmp_path)).returncode == 2


async def test_a_sweep_at_a_future_or_past_time_is_a_dry_run_and_commit_refuses_it(
    make_dispatch_world: DispatchWorldFactory, redis_url: str, tmp_path: Path
) -> None:
    """Issue 15 "time is honest": `sweep --now <future>` used to write future-dated history into live cases and
    escalate them, and `--now <past>` dated its entries inside closed evaluation windows. Now either prints what it
    would do and writes nothing; with --commit it exits 2."""
    dw: DispatchWorld = await make_dispatch_world(clock=None)  # the real clock: "future" is the wall clock's
    case_id = await dw.event(at=datetime.now(UTC))
    await dw.pump()
    before = await dw.case(case_id)
    # The dispatch keys (cases, histories, due index, lease, streams); the CLI's start-up may write its own (the
    # secret's fingerprint, an audit entry), which are no sweep's.
    keys_before = await _keys(dw.world.redis, "pg:*dispatch*") + await _keys(dw.world.redis, "pg:case*")
    future = (datetime.now(UTC) + timedelta(hours=8)).isoformat()  # 8x the 1 h dispatched budget
    done = await asyncio.to_thread(_placegate, "sweep", "--now", future, redis_url=redis_url, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == f"would: case={case_id} flag_overdue=1 escalate_to=street,district,city"
    assert lines[-1].startswith("dry run at ") and lines[-1].endswith("due=1 flagged=1 escalated=3; nothing written")
    assert await dw.case(case_id) == before
    keys_after = await _keys(dw.world.redis, "pg:*dispatch*") + await _keys(dw.world.redis, "pg:case*")
    assert keys_after == keys_before  # not even a lease or a trim
    done = await asyncio.to_thread(
        _placegate, "sweep", "--now", future, "--commit", redis_url=redis_url, tmp_path=tmp_path
    )
    assert done.returncode == 2 and "future" in done.stderr and done.stdout == ""
    assert await dw.case(case_id) == before
    # A past instant is a preview too: its flags would be dated inside windows that have closed. Judged 8 h ago the
    # case did not exist yet, so there is nothing to do; committing it is refused all the same.
    past = (datetime.now(UTC) - timedelta(hours=8)).isoformat()
    done = await asyncio.to_thread(_placegate, "sweep", "--now", past, redis_url=redis_url, tmp_path=tmp_path)
    assert done.returncode == 0 and done.stdout.strip().endswith("nothing written"), done.stderr
    done = await asyncio.to_thread(
        _placegate, "sweep", "--now", past, "--commit", redis_url=redis_url, tmp_path=tmp_path
    )
    assert done.returncode == 2 and "past time" in done.stderr and done.stdout == ""
    assert await dw.case(case_id) == before
    keys_after = await _keys(dw.world.redis, "pg:*dispatch*") + await _keys(dw.world.redis, "pg:case*")
    assert keys_after == keys_before
    # Without --now the pass runs at the clock's time and commits (nothing is due yet).
    done = await asyncio.to_thread(_placegate, "sweep", "--commit", redis_url=redis_url, tmp_path=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "due=0 flagged=0 escalated=0 trimmed=0 expired=0")
    assert await dw.case(case_id) == before
