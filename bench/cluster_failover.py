"""A primary of a Redis Cluster fails during a steady stream of scans (issue 16): a private 3-primary, 3-replica
cluster on 127.0.0.1 (gateway/localcluster.py), one `placegate serve` on ``redis+cluster://``, and the open-loop
load generator of bench/faults.py. Appends its table to bench/FAULTS.md.

    python -m bench.cluster_failover [--mode kill|failover] [--rate 200] [--phase-s 10] [--failover-s 15]

``kill`` SIGKILLs the primary serving the dispatch intake stream's slot (the worst one to lose: every exception
event goes there) and lets the cluster promote its replica (node timeout 2 s); ``failover`` asks that replica
for ``CLUSTER FAILOVER`` (a planned switch: the replica catches up before it takes over). Reported: answers by
status in each phase, how many were degraded, when answers were normal again, and whether every exception answer
reached the intake stream (an event the killed primary acknowledged but had not yet sent to its replica is lost:
replication is asynchronous; the figure says how many).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.faults import (
    Run,
    _drive,
    _seed,
    _wait_caught_up,
    _xlen,
    loss_line,
    phase_table,
    serve_gateway,
    stop_gateway,
)
from crypto.keys import SigningKey
from gateway import keyspace
from gateway.localcluster import LocalCluster, node_command
from gateway.redisio import connect_redis

PHASES = ("baseline", "primary fails", "after the failover")


def _render(run: Run, *, mode: str, rate: float, durations: Sequence[float], events: int, promoted_s: float | None,
            argv: Sequence[str]) -> str:
    lines = [
        f"## A cluster primary fails during scans (bench/cluster_failover.py, mode `{mode}`)",
        "",
        f"Command: `python -m bench.cluster_failover {' '.join(argv)}` — {rate:g} scans/s; phases of "
        f"{', '.join(f'{d:g}' for d in durations)} s; a local cluster of 3 primaries and 3 replicas (node timeout "
        "2 s), one `placegate serve` on `redis+cluster://`, all on loopback; the primary serving "
        f"`{keyspace.DISPATCH_INTAKE}` fails as phase 2 begins. Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC}.",
        "",
    ]
    lines += phase_table(run, PHASES, durations)
    lines.append("")
    failed_at = run.phase_started[1]
    degraded = [a.sent_at for a in run.answers if a.sent_at >= failed_at and a.status == 200 and a.degraded]
    if degraded:
        normal = [a.sent_at for a in run.answers if a.sent_at > max(degraded) and a.status == 200]
        back = f"{min(normal) - failed_at:.2f} s" if normal else "never"
        lines.append(f"- Degraded answers from {min(degraded) - failed_at:.2f} s to {max(degraded) - failed_at:.2f} s "
                     f"after the failure; every answer normal again from a request sent {back} after it.")
    else:
        lines.append("- No answer was degraded.")
    lines.append(f"- The replica was promoted {promoted_s:.2f} s after the failure." if promoted_s is not None
                 else "- The replica was not promoted within the run.")
    lines.append(loss_line(run, events))
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster_failover", description=__doc__)
    parser.add_argument("--mode", choices=("kill", "failover"), default="kill")
    parser.add_argument("--rate", type=float, default=200.0, help="scans per second (open loop)")
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds of the baseline and of the last phase")
    parser.add_argument("--failover-s", type=float, default=15.0, help="seconds of the phase the primary fails in")
    parser.add_argument("--output", type=Path, default=Path("bench/FAULTS.md"), help="appended to")
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="pg-cluster-failover-") as tmp:
        cluster = LocalCluster(Path(tmp) / "cluster").start()
        secret = os.urandom(32)
        gateway: subprocess.Popen[bytes] | None = None
        try:
            world = asyncio.run(_seed(connect_redis(cluster.url), secret, cluster.url))
            key = SigningKey.from_pem(world[0])
            victim = asyncio.run(_primary_of(cluster.url, keyspace.DISPATCH_INTAKE))
            replica = cluster.replica_of(victim)
            gateway, port = serve_gateway(cluster.url, secret, Path(tmp))
            promoted: dict[str, float] = {}

            def watch_promotion(started: float) -> None:
                import time

                deadline = started + args.failover_s + args.phase_s
                while time.perf_counter() < deadline:
                    if "role:master" in node_command(replica, "INFO", "replication"):
                        promoted["s"] = time.perf_counter() - started
                        return
                    time.sleep(0.05)

            def fail() -> None:
                import time

                started = time.perf_counter()
                if args.mode == "kill":
                    cluster.kill(victim)
                else:
                    node_command(replica, "CLUSTER", "FAILOVER")
                threading.Thread(target=watch_promotion, args=(started,), daemon=True).start()

            run = Run()
            durations = (args.phase_s, args.failover_s, args.phase_s)
            asyncio.run(_drive(port, world[1], key, rate=args.rate, durations=durations, faults=(None, fail, None),
                               run=run))
            _wait_caught_up(port)
            events = asyncio.run(_xlen(cluster.url))
            report = _render(run, mode=args.mode, rate=args.rate, durations=durations, events=events,
                             promoted_s=promoted.get("s"), argv=argv)
        finally:
            if gateway is not None:
                stop_gateway(gateway)
            cluster.stop()
    with args.output.open("a", encoding="utf-8") as out:
        out.write("\n" + report)
    print(report)
    return 0


async def _primary_of(url: str, key: str) -> int:
    from redis.asyncio import RedisCluster

    redis = connect_redis(url)
    try:
        await redis.ping()
        return int(redis.get_node_from_key(key).port) if isinstance(redis, RedisCluster) else 0
    finally:
        await redis.aclose()


if __name__ == "__main__":
    sys.exit(main())
