"""The cluster variant of ``python -m bench.run --cluster`` (issue 19, point 4): the full scan path on a local Redis
Cluster of three primaries against the same path on the single Redis, in the same rounds.

The cluster (gateway/localcluster.py, the bundled valkey binaries) has no replicas: the single node it is set
against has none either, and on this two-core machine a replica would replay every write on the load core that
wrk and the primaries share, so the figure would measure replication as well as the sharding. Its nodes are pinned
to the load core like the single Redis; its gateway (``placegate serve`` on ``redis+cluster://``) to the server
core like ``full``. The world is seeded afresh with ``bench.corpus.seed_world`` (same holders, place, device), so
the cluster has its own keys and device token: its codes are minted with its own health key.

Redis CPU per scan is the sum over the primaries of their /proc utime+stime; round trips and commands per scan
the sum of their INFO ``total_reads_processed`` and ``total_commands_processed``. ``status_load_rates`` times
``placegate status load`` into a fresh single server and a fresh cluster, alternately.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bench.corpus import World, seed_world, write_status_file
from gateway.embedded import EmbeddedServer
from gateway.localcluster import LocalCluster
from gateway.redisio import connect_redis

if TYPE_CHECKING:
    from bench.run import Run

__all__ = ["PRIMARIES", "ClusterBench", "render_cluster", "status_load_rates"]

PRIMARIES = 3
REPLICAS = 0  # see the module docstring
BUCKETS = 65536  # PLACEGATE_STATUS_BUCKETS of the harness


def _node_ticks(pid: int) -> int:
    # bench.run's _cpu_ticks, not imported from there: bench.run imports this module (and runs as __main__).
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def _info_sum(urls: Sequence[str]) -> tuple[int, int, int]:
    """(used_memory, total_reads_processed, total_commands_processed) summed over the servers at ``urls``."""
    import redis as sync_redis

    memory = reads = commands = 0
    for url in urls:
        client = sync_redis.Redis.from_url(url)
        try:
            mem = cast(dict[str, Any], client.info("memory"))
            stats = cast(dict[str, Any], client.info("stats"))
        finally:
            client.close()
        memory += int(mem["used_memory"])
        reads += int(stats["total_reads_processed"])
        commands += int(stats["total_commands_processed"])
    return memory, reads, commands


def _pin_nodes(cluster: LocalCluster, core: int) -> None:
    for process in cluster.processes.values():
        os.sched_setaffinity(process.pid, {core})


class ClusterBench:
    """The cluster, its seeded world and its gateway, for one harness run."""

    def __init__(self, directory: Path, *, secret: bytes, port: int, server_core: int, load_core: int) -> None:
        self.directory = directory
        self.secret = secret
        self.port = port
        self.server_core, self.load_core = server_core, load_core
        self.cluster = LocalCluster(directory / "cluster", primaries=PRIMARIES, replicas=REPLICAS)
        self.process: subprocess.Popen[bytes] | None = None
        self.world: World | None = None

    @property
    def url(self) -> str:
        return self.cluster.url

    @property
    def pem(self) -> bytes:
        assert self.world is not None
        return self.world.health_pem

    @property
    def token(self) -> str:
        assert self.world is not None
        return self.world.device_token

    def start(self, *, holders: int, gateway: Sequence[str], env: dict[str, str], cwd: Path,
              wait_http: Callable[[str], None]) -> subprocess.Popen[bytes]:
        """Start the cluster, seed it, start ``gateway`` (the serve command line, given ``--redis-url`` and
        ``--port`` here) pinned to the server core; returns the gateway process (the harness stops it)."""
        self.cluster.start()
        _pin_nodes(self.cluster, self.load_core)
        self.world = asyncio.run(self._seed(holders))
        argv = [*gateway, "--redis-url", self.url, "--port", str(self.port), "--data-dir",
                str(self.directory / "cluster-gw")]  # fmt: skip
        log = (self.directory / "cluster.log").open("wb")
        core = self.server_core
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=lambda: os.sched_setaffinity(0, {core}))  # fmt: skip
        wait_http(f"http://127.0.0.1:{self.port}/healthz")
        return self.process

    async def _seed(self, holders: int) -> World:
        redis = connect_redis(self.url)
        try:
            return await seed_world(redis, secret=self.secret, status_buckets=BUCKETS, holders=holders)
        finally:
            await redis.aclose()

    def primaries(self) -> list[int]:
        return sorted(self.cluster.processes)  # no replicas: every node is a primary

    def ticks(self) -> int:
        """CPU ticks of every primary, summed."""
        return sum(_node_ticks(self.cluster.processes[p].pid) for p in self.primaries())

    def redis_counters(self) -> tuple[int, int, int]:
        """What ``Harness.redis_counters`` reads of the single server, summed over the primaries."""
        return _info_sum([f"redis://127.0.0.1:{p}" for p in self.primaries()])

    def wait_intake_drained(self, timeout_s: float = 60.0) -> None:
        """Until the dispatch intake group (on the primary serving its slot) has nothing undelivered or pending."""
        from redis.cluster import ClusterNode, RedisCluster

        from gateway import keyspace

        client = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in self.primaries()])
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline and client.exists(keyspace.DISPATCH_INTAKE):
                groups = client.xinfo_groups(keyspace.DISPATCH_INTAKE)
                if all(int(g.get("lag") or 0) == 0 and int(g["pending"]) == 0 for g in groups):
                    return
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.cluster.stop()


# --- the status feed: placegate status load into one server vs the cluster --------------------------------------
def _load_once(url: str, feed: Path, *, loader: Sequence[str], env: dict[str, str], cwd: Path, data_dir: Path,
               server_core: int) -> float:
    done = subprocess.run([*loader, "status", "load", str(feed), "--quiet", "--redis-url", url, "--data-dir",
                           str(data_dir)], cwd=cwd, env=env, capture_output=True, text=True, check=True,
                          preexec_fn=lambda: os.sched_setaffinity(0, {server_core}))  # fmt: skip
    m = re.search(r"rate=([\d,]+)/s", done.stdout)
    if m is None:
        raise RuntimeError(f"placegate status load said: {done.stdout[-500:]} {done.stderr[-500:]}")
    return float(m.group(1).replace(",", ""))


def status_load_rates(directory: Path, *, holders: int, rounds: int, loader: Sequence[str], env: dict[str, str],
                      cwd: Path, server_core: int, load_core: int) -> dict[str, list[float]]:
    """``placegate status load`` of ``holders`` records into a fresh single server and a fresh 3-primary cluster
    (both pinned to the load core, the loader to the server core), ``rounds`` times, the order alternating. Rates
    as the CLI reports them, and used_memory growth per holder (summed over the primaries)."""
    feed = directory / "cluster-statuses.jsonl"
    write_status_file(feed, holders)
    out: dict[str, list[float]] = {"single": [], "cluster": [], "single_bytes": [], "cluster_bytes": []}
    for n in range(rounds):
        for kind in ("single", "cluster") if n % 2 == 0 else ("cluster", "single"):
            where = directory / f"load-{kind}-{n}"
            if kind == "single":
                server = EmbeddedServer(where, persistent=False).start()
                assert server.process is not None
                os.sched_setaffinity(server.process.pid, {load_core})
                urls, url, stop = [server.url], server.url, server.stop
            else:
                cluster = LocalCluster(where, primaries=PRIMARIES, replicas=REPLICAS).start()
                _pin_nodes(cluster, load_core)
                urls = [f"redis://127.0.0.1:{p}" for p in sorted(cluster.processes)]
                url, stop = cluster.url, cluster.stop
            try:
                used0 = _info_sum(urls)[0]
                rate = _load_once(url, feed, loader=loader, env=env, cwd=cwd, data_dir=where / "gw",
                                  server_core=server_core)  # fmt: skip
                out[kind].append(rate)
                out[f"{kind}_bytes"].append((_info_sum(urls)[0] - used0) / holders)
            finally:
                stop()
    return out


# --- rendering ---------------------------------------------------------------------------------------------------
def _per_round(runs: Sequence[Run], figure: Callable[[Run], float]) -> list[tuple[float, float]]:
    """(cluster, full) of ``figure`` for every round that ran both."""
    out = []
    for pair in sorted({r.pair for r in runs}):
        by = {r.variant: r for r in runs if r.pair == pair}
        if "cluster" in by and "full" in by:
            out.append((figure(by["cluster"]), figure(by["full"])))
    return out


def render_cluster(runs: Sequence[Run], *, holders: int, connections: int, server_core: int, load_core: int,
                   load: dict[str, list[float]] | None, load_holders: int) -> list[str]:
    """The section of RESULTS.md: cluster / full within each round, then the medians."""
    rows = {
        "req/s": _per_round(runs, lambda r: r.rate),
        "gateway CPU µs per scan": _per_round(runs, lambda r: r.cpu_us),
        "Redis CPU µs per scan (cluster: sum of the primaries)": _per_round(runs, lambda r: r.redis_cpu_us),
        "Redis round trips per scan (socket reads; cluster: summed)": _per_round(runs, lambda r: r.redis_reads),
        "Redis commands per scan (cluster: summed)": _per_round(runs, lambda r: r.redis_commands),
        "p99 ms": _per_round(runs, lambda r: r.p99_ms),
    }
    if not rows["req/s"]:
        return []
    lines = [
        "",
        "## Redis Cluster vs a single node (issue 19, point 4)",
        "",
        f"`cluster`: a second `placegate serve` (pinned to core {server_core}, like `full`) on "
        f"`redis+cluster://`, a local cluster of {PRIMARIES} primaries and no replicas (bundled valkey, every node "
        f"pinned to core {load_core} with wrk, like the single Redis), seeded with the same world ({holders:,} "
        f"green holders); it ran in the same rounds as `full`, the order rotated, with the same wrk settings "
        f"(`-t1 -c{connections}`, fresh single-use codes). No replicas: the single node has none, and on this "
        "machine a replica would replay every write on the load core. Ratios are cluster / full within each round, "
        "then the median. Redis figures are the servers' own: /proc CPU ticks and INFO stats deltas over the run.",
        "",
        "| figure | cluster, per round | full (single node), per round | cluster / full per round | median ratio |",
        "|---|---|---|---|---|",
    ]
    for name, pairs in rows.items():
        ratios = [c / f if f else float("nan") for c, f in pairs]
        digits = 0 if "CPU" in name or name == "req/s" else 2 if name == "p99 ms" else 3
        lines.append(
            f"| {name} | {', '.join(f'{c:,.{digits}f}' for c, _ in pairs)} | "
            f"{', '.join(f'{f:,.{digits}f}' for _, f in pairs)} | {', '.join(f'{x:.2f}' for x in ratios)} | "
            f"{statistics.median(ratios):.2f} |"
        )
    if load:
        single, cluster = load["single"], load["cluster"]
        lines += [
            "",
            f"Status feed: `placegate status load` of {load_holders:,} records (loader pinned to core {server_core}) "
            f"into a fresh single server and a fresh {PRIMARIES}-primary cluster (both on core {load_core}), "
            f"{len(single)} times each, the order alternating:",
            "",
            "| figure | single node | cluster | cluster / single (medians) |",
            "|---|---|---|---|",
            f"| load rate reported by the CLI, /s | {', '.join(f'{x:,.0f}' for x in single)} | "
            f"{', '.join(f'{x:,.0f}' for x in cluster)} | "
            f"{statistics.median(cluster) / statistics.median(single):.2f} |",
            f"| used_memory growth per holder, B (cluster: summed) | "
            f"{', '.join(f'{x:.1f}' for x in load['single_bytes'])} | "
            f"{', '.join(f'{x:.1f}' for x in load['cluster_bytes'])} | "
            f"{statistics.median(load['cluster_bytes']) / statistics.median(load['single_bytes']):.2f} |",
        ]
    return lines
