"""The high-rate harness: ``python -m bench.run``.

One private Redis (pinned with the load generator to core 1) and three servers pinned to core 0, started
side by side: the gateway (``placegate serve``), the naive variant (``bench.naive``: same app, one awaited
Redis command at a time) and a bare aiohttp JSON POST handler (``bench.bare``). wrk, pinned to core 1, drives
each in turn (bare, full, naive, batch, and self: a citizen-app self-scan carrying the venue's place code; the
order rotates each round) with freshly minted single-use codes; and replay (``--variants ...,replay``): every
request presents a code the gateway has already seen at this device (a pool presented once, then over and over
past the retry window), the exception storm of issue 15, its CPU per request set against the full path's of the
same round. CPU per request is the server process's utime+stime delta from /proc. Then the status cache:
1,000,000 holders loaded with ``placegate status load``, bytes per holder from INFO memory. The table goes to
stdout and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson

from bench.cluster_bench import ClusterBench, render_cluster, status_load_rates
from bench.corpus import mint_codes, seed_world, write_bodies, write_status_file
from gateway.embedded import EmbeddedServer
from gateway.redisio import connect_redis

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
SERVER_CORE, LOAD_CORE = 0, 1
REPLAY_RETRY_WINDOW_S = 5  # the gateway's default PLACEGATE_SCAN_RETRY_WINDOW_S
# --scaling: the batch on an unpinned `serve --workers 1` with and without verify threads (issue 19, point 3).
BATCH_THREADS = {"wbatch0": "0", "wbatchauto": "auto"}


@dataclass
class Run:
    variant: str
    pair: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # server CPU per request (per code for the batch)
    redis_cpu_us: float
    non2xx: int
    socket_errors: int
    per_request: int = 1
    bodies: int = 0
    stored_bytes: float = 0.0  # Redis used_memory growth per request (per code for the batch): log, replay memory
    redis_reads: float = 0.0  # socket reads the server processed per request: round trips (every client's)
    redis_commands: float = 0.0  # commands the server processed per request
    reasons: dict[str, int] = field(default_factory=dict)
    offloaded: int = -1  # codes verified on a verify-pool thread (BATCH_THREADS variants; -1: not read)

    @property
    def rate(self) -> float:
        """Requests per second (codes per second for the batch)."""
        return self.requests * self.per_request / self.seconds


@dataclass
class OpenLoopStep:
    """One step of ``--open-loop``: a fixed arrival rate, a share of the saturation rate of the same run."""

    share: float
    rate: float
    result: dict[str, float]
    cpu_us: float = float("nan")  # the gateway's CPU per request during the step (utime + stime from /proc)
    busy: float = float("nan")  # the gateway's cores busy: its CPU seconds over the step / the schedule's seconds
    control: dict[str, float] | None = None  # the bare handler at the same rate: what the host and generator add
    trips: float = float("nan")  # Redis round trips (socket reads the server processed, every client's) per request
    target: str = "full"  # the server driven: full, or naive for the round-trip comparison


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def _tree_ticks(pid: int) -> int:
    """CPU of a process and its live children (the workers of ``serve --workers N``)."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    total = _cpu_ticks(pid)
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(OSError, psutil.Error):
            total += _cpu_ticks(child.pid)
    return total


def _pin(core: int) -> None:
    os.sched_setaffinity(0, {core})


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # answered (the bare server has no GET route)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _scrape_offloaded(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    m = re.search(r"^placegate_scan_verifications_offloaded_total (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else 0


def _scrape_scans(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, int] = {}
    for m in re.finditer(r"^placegate_scans_total\{([^}]*)\} (\S+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        key = f"{labels['decision']}/{labels['reason']}" + ("/degraded" if labels["degraded"] == "true" else "")
        out[key] = out.get(key, 0) + int(float(m.group(2)))
    return out


class Harness:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="placegate-bench-"))
        self.secret = os.urandom(32)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports = {
            "bare": args.port,
            "full": args.port + 1,
            "naive": args.port + 2,
            "w1": args.port + 3,
            "w2": args.port + 4,
            "wbatch0": args.port + 5,
            "wbatchauto": args.port + 6,
        }
        self.redis_server = EmbeddedServer(self.tmp / "redis", persistent=False)
        self.token = ""
        self.app_token = ""
        self.place_code = ""
        self.pem = b""
        self.offset = 0
        self.estimates: dict[str, float] = {}
        self.failures = self.tmp / "non2xx.txt"  # status and body of every non-2xx answer (wrk response hook)
        self.cluster: ClusterBench | None = None  # --cluster: bench/cluster_bench.py

    # --- processes -------------------------------------------------------------------------------------------
    def start_redis(self) -> None:
        self.redis_server.start()
        assert self.redis_server.process is not None
        os.sched_setaffinity(self.redis_server.process.pid, {LOAD_CORE})

    def start(self) -> None:
        env = {**os.environ, "PLACEGATE_SECRET": self.secret.hex(), "PLACEGATE_STATUS_BUCKETS": "65536"}
        url = self.redis_server.url
        commands = {
            "bare": [sys.executable, "-m", "bench.bare", "--port", str(self.ports["bare"])],
            "full": [
                str(BIN / "placegate"),
                "serve",
                "--redis-url",
                url,
                "--port",
                str(self.ports["full"]),
                "--data-dir",
                str(self.tmp / "full"),
            ],
            "naive": [
                sys.executable,
                "-m",
                "bench.naive",
                "serve",
                "--redis-url",
                url,
                "--port",
                str(self.ports["naive"]),
                "--data-dir",
                str(self.tmp / "naive"),
            ],
        }
        if self.args.scaling:  # unpinned: N workers share both cores with wrk and Redis
            for n, name in ((1, "w1"), (2, "w2"), (1, "wbatch0"), (1, "wbatchauto")):
                commands[name] = [
                    str(BIN / "placegate"),
                    "serve",
                    "--workers",
                    str(n),
                    "--redis-url",
                    url,
                    "--port",
                    str(self.ports[name]),
                    "--data-dir",
                    str(self.tmp / name),
                ]
        for name, argv in commands.items():
            log = (self.tmp / f"{name}.log").open("wb")
            self.procs[name] = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**env, "PLACEGATE_VERIFY_THREADS": BATCH_THREADS[name]} if name in BATCH_THREADS else env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=None if name.startswith("w") else lambda: _pin(SERVER_CORE),
            )
        for name, port in self.ports.items():
            if name not in self.procs:
                continue
            wait_http(f"http://127.0.0.1:{port}/healthz" if name != "bare" else f"http://127.0.0.1:{port}/")

    def start_cluster(self) -> None:
        """--cluster: a 3-primary cluster, its own seeded world and a gateway on it, served as variant ``cluster``."""
        from gateway.localcluster import free_ports

        self.ports["cluster"] = free_ports(1)[0]
        self.cluster = ClusterBench(self.tmp, secret=self.secret, port=self.ports["cluster"],
                                    server_core=SERVER_CORE, load_core=LOAD_CORE)  # fmt: skip
        env = {**os.environ, "PLACEGATE_SECRET": self.secret.hex(), "PLACEGATE_STATUS_BUCKETS": "65536"}
        self.procs["cluster"] = self.cluster.start(holders=self.args.holders, gateway=[str(BIN / "placegate"), "serve"],
                                                   env=env, cwd=ROOT, wait_http=wait_http)  # fmt: skip

    def cluster_status_load(self) -> dict[str, list[float]]:
        """--cluster: ``placegate status load`` into a fresh single server vs a fresh cluster, 2 rounds each."""
        env = {**os.environ, "PLACEGATE_SECRET": self.secret.hex(), "PLACEGATE_STATUS_BUCKETS": "65536"}
        return status_load_rates(self.tmp, holders=self.args.cluster_status_holders, rounds=2,
                                 loader=[str(BIN / "placegate")], env=env, cwd=ROOT, server_core=SERVER_CORE,
                                 load_core=LOAD_CORE)  # fmt: skip

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.redis_server.stop()
        if self.cluster is not None:
            self.cluster.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def seed(self) -> None:
        from gateway.privacy.audit import set_trail_secret

        set_trail_secret(self.secret)  # the registry writes are audited, signed with the trail key (as the CLI does)
        redis = connect_redis(self.redis_server.url)
        world = await seed_world(redis, secret=self.secret, status_buckets=65536, holders=self.args.holders)
        await redis.aclose()
        self.token, self.pem = world.device_token, world.health_pem
        self.app_token, self.place_code = world.app_token, world.place_code

    # --- one wrk run -----------------------------------------------------------------------------------------
    def replay_pool(self, count: int) -> list[str]:
        """``count`` fresh codes, each presented once at the device, then left until the gateway's retry window
        (``PLACEGATE_SCAN_RETRY_WINDOW_S``, 5 s) has passed: from then on every presentation is ``replayed``."""
        import http.client

        codes = mint_codes(self.pem, count, holders=self.args.holders, offset=self.offset)
        self.offset += count
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["full"], timeout=10)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        for code in codes:
            conn.request("POST", "/v1/scan", body=orjson.dumps({"code": code}), headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"priming the replay pool: HTTP {resp.status}")
        conn.close()
        time.sleep(REPLAY_RETRY_WINDOW_S + 1)
        return codes

    def redis_counters(self) -> tuple[int, int, int]:
        """(used_memory, total_reads_processed, total_commands_processed) of the private server. A read is one
        socket read of a client's pipelined commands: the round trips, whoever sent them."""
        import redis as sync_redis

        client = sync_redis.Redis.from_url(self.redis_server.url)
        try:
            memory = cast(dict[str, Any], client.info("memory"))
            stats = cast(dict[str, Any], client.info("stats"))
            reads, commands = int(stats["total_reads_processed"]), int(stats["total_commands_processed"])
            return int(memory["used_memory"]), reads, commands
        finally:
            client.close()

    def wait_intake_drained(self, timeout_s: float = 60.0) -> None:
        """Until the dispatch intake group has nothing undelivered and nothing pending."""
        import redis as sync_redis

        client = sync_redis.Redis.from_url(self.redis_server.url)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not client.exists("pg:dispatch:intake"):
                    return
                groups = client.xinfo_groups("pg:dispatch:intake")
                if all(int(g.get("lag") or 0) == 0 and int(g["pending"]) == 0 for g in groups):
                    return
                time.sleep(0.05)
        finally:
            client.close()

    def run_wrk(self, variant: str, pair: int, duration_s: float, profile: Path | None = None) -> Run:
        batch = variant == "batch" or variant in BATCH_THREADS
        per_request = self.args.batch if batch else 1
        store = self.cluster if variant == "cluster" else None  # the cluster has its own world, nodes and counters
        # "self": the citizen-app self-scan (an app token, the venue's place code on every request) on the full
        # gateway; "batch": turnstile banks, same server; "replay": already-seen codes, same server.
        server = "full" if variant in ("batch", "self", "replay") else variant
        load_cores = "0,1" if server.startswith("w") else str(LOAD_CORE)
        port = self.ports[server]
        path = "/v1/scan/batch" if batch else "/v1/scan"
        # Twice the best rate seen so far: a 2-s warm-up under-estimates a variant that speeds up once warm, and a
        # corpus that runs out turns the tail of the run into replays (flagged "corpus wrapped" in the table).
        expected = self.estimates.get(variant, 3000.0) * duration_s * 2.0 + 2000
        count = int(expected) * per_request if batch else int(expected)
        if variant == "replay":
            codes = self.replay_pool(self.args.replay_pool)  # wrk cycles through them: replays, by design
        else:
            codes = mint_codes(store.pem if store else self.pem, count, holders=self.args.holders, offset=self.offset)
            self.offset += count
        bodies_file = self.tmp / f"bodies-{variant}.jsonl"
        place_code = self.place_code if variant == "self" else None
        bodies = write_bodies(bodies_file, codes, per_request=per_request, place_code=place_code)
        before = _scrape_scans(port) if server != "bare" else {}
        offloaded0 = _scrape_offloaded(port) if variant in BATCH_THREADS else 0
        pid = self.procs[server].pid
        assert self.redis_server.process is not None
        rpid = self.redis_server.process.pid
        cpu0, rcpu0 = _tree_ticks(pid), store.ticks() if store else _cpu_ticks(rpid)
        mem0, reads0, cmds0 = (store or self).redis_counters()
        argv = [
            "taskset",
            "-c",
            load_cores,
            "wrk",
            "-t1",
            f"-c{self.args.connections}",
            f"-d{duration_s:g}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(ROOT / "bench" / "scan.lua"),
            f"http://127.0.0.1:{port}{path}",
            "--",
            str(bodies_file),
            self.app_token if variant == "self" else store.token if store else self.token,
            str(self.failures),
        ]
        spy: subprocess.Popen[bytes] | None = None
        if profile is not None:
            spy = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    str(LOAD_CORE),
                    str(BIN / "py-spy"),
                    "record",
                    "--pid",
                    str(pid),
                    "--duration",
                    f"{int(duration_s)}",
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(profile),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        if spy is not None:
            spy.wait(timeout=60)
        # The in-process intake consumer may still be working off the run's exception events: its CPU belongs to
        # the run, so the figure is read once the group has caught up.
        (store or self).wait_intake_drained()
        cpu1, rcpu1 = _tree_ticks(pid), store.ticks() if store else _cpu_ticks(rpid)
        mem1, reads1, cmds1 = (store or self).redis_counters()
        line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
        w = orjson.loads(line.removeprefix("WRKJSON "))
        after = _scrape_scans(port) if server != "bare" else {}
        reasons = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        requests = int(w["requests"])
        units = max(1, requests * per_request)
        offloaded = _scrape_offloaded(port) - offloaded0 if variant in BATCH_THREADS else -1
        run = Run(
            variant=variant,
            pair=pair,
            requests=requests,
            seconds=w["duration_us"] / 1e6,
            p50_ms=w["p50_us"] / 1000,
            p99_ms=w["p99_us"] / 1000,
            cpu_us=(cpu1 - cpu0) / TICKS * 1e6 / units,
            redis_cpu_us=(rcpu1 - rcpu0) / TICKS * 1e6 / units,
            non2xx=int(w["non2xx"]),
            socket_errors=sum(int(w[k]) for k in ("connect", "read", "write", "timeout")),
            per_request=per_request,
            bodies=bodies,
            reasons=reasons,
            stored_bytes=(mem1 - mem0) / units,
            redis_reads=(reads1 - reads0) / units,
            redis_commands=(cmds1 - cmds0) / units,
            offloaded=offloaded,
        )
        self.estimates[variant] = max(self.estimates.get(variant, 0.0), requests / run.seconds)
        return run

    def run_open_loop(self, share: float, saturation: float, duration_s: float, target: str = "full") -> OpenLoopStep:
        """``target`` (the full scan path, or the naive variant) at ``share`` of ``saturation`` requests/s, sent on
        schedule by ``bench.openloop`` (pinned to the load core like wrk), every answer timed from its due time;
        with the server's CPU per request, its utilisation and the Redis round trips per request over the step,
        and for the full path the bare handler at the same rate as a control."""
        rate = share * saturation
        codes = mint_codes(self.pem, int(rate * duration_s) + 100, holders=self.args.holders, offset=self.offset)
        self.offset += len(codes)
        bodies_file = self.tmp / "bodies-open.jsonl"
        write_bodies(bodies_file, codes)
        pid = self.procs[target].pid
        _, reads, _ = self.redis_counters()
        ticks = _cpu_ticks(pid)
        result = self._open_loop(target, bodies_file, rate, duration_s)
        cpu_s = (_cpu_ticks(pid) - ticks) / TICKS
        self.wait_intake_drained()
        answered = max(result["answered"], 1.0)
        trips = (self.redis_counters()[1] - reads) / answered
        with_control = target == "full" and self.args.open_loop_control
        control = self._open_loop("bare", bodies_file, rate, duration_s) if with_control else None
        cpu_us, busy = cpu_s / answered * 1e6, cpu_s / duration_s
        return OpenLoopStep(share, rate, result, cpu_us=cpu_us, busy=busy, control=control, trips=trips, target=target)

    def _open_loop(self, target: str, bodies_file: Path, rate: float, duration_s: float) -> dict[str, float]:
        argv = [
            "taskset", "-c", str(LOAD_CORE), sys.executable, "-m", "bench.openloop",
            "--port", str(self.ports[target]), "--token", self.token, "--bodies", str(bodies_file),
            "--rate", f"{rate:.1f}", "--duration", f"{duration_s:g}", "--connections", str(self.args.connections),
        ]  # fmt: skip
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bench.openloop exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("OPENLOOP "))
        return cast(dict[str, float], orjson.loads(line.removeprefix("OPENLOOP ")))

    # --- status cache ----------------------------------------------------------------------------------------
    async def status_cache(self) -> dict[str, float]:
        n = self.args.status_holders
        feed = self.tmp / "statuses.jsonl"
        t0 = time.perf_counter()
        write_status_file(feed, n)
        gen_s = time.perf_counter() - t0
        # A fresh server: the scan runs left streams behind, and a flush frees memory lazily (valkey default).
        server = EmbeddedServer(self.tmp / "redis-cache", persistent=False).start()
        assert server.process is not None
        os.sched_setaffinity(server.process.pid, {LOAD_CORE})
        redis = connect_redis(server.url)
        await redis.ping()
        used0 = int((await redis.info("memory"))["used_memory"])
        env = {**os.environ, "PLACEGATE_SECRET": self.secret.hex(), "PLACEGATE_STATUS_BUCKETS": "65536"}
        argv = [
            str(BIN / "placegate"),
            "status",
            "load",
            str(feed),
            "--quiet",
            "--redis-url",
            server.url,
            "--data-dir",
            str(self.tmp / "load"),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=lambda: _pin(SERVER_CORE),
        )
        wall_s = time.perf_counter() - t0
        used1 = int((await redis.info("memory"))["used_memory"])
        holders = await _count_fields(redis)
        await redis.aclose()
        server.stop()
        m = re.search(r"seconds=([\d.]+) rate=([\d,]+)/s", proc.stdout)
        assert m is not None, proc.stdout
        return {
            "holders": float(n),
            "stored": float(holders),
            "feed_gen_s": gen_s,
            "bytes_per_holder": (used1 - used0) / n,
            "used_before": float(used0),
            "used_after": float(used1),
            "load_rate": float(m.group(2).replace(",", "")),
            "load_s": float(m.group(1)),
            "wall_rate": n / wall_s,
            "wall_s": wall_s,
        }


async def _count_fields(redis: object) -> int:
    from redis.asyncio import Redis

    assert isinstance(redis, Redis)
    total = 0
    async for key in redis.scan_iter(match="pg:st:*", count=1000):
        total += int(await redis.hlen(key))
    return total


def _order(pair: int, variants: Sequence[str]) -> list[str]:
    shift = pair % len(variants)
    return list(variants[shift:]) + list(variants[:shift])


def _median(values: Iterator[float] | list[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def _machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    return (
        f"{model}, {os.cpu_count()} cores; Linux {platform.release()}; Python {platform.python_version()}; "
        f"{wrk[0] if wrk else 'wrk'}; commit {commit}"
    )


def _render(
    args: argparse.Namespace,
    runs: list[Run],
    cache: dict[str, float] | None,
    started: str,
    failures: str = "",
    open_steps: Sequence[OpenLoopStep] = (),
    cluster_load: dict[str, list[float]] | None = None,
) -> str:
    variants = [
        v
        for v in ("bare", "full", "naive", "batch", "self", "replay", "cluster", "w1", "w2", *BATCH_THREADS)
        if any(r.variant == v for r in runs)
    ]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `python -m bench.run {' '.join(shlex.quote(a) for a in sys.argv[1:])}` at {started}.",
        "",
        f"Machine: {_machine()}.",
        "",
        f"Servers pinned to core {SERVER_CORE}; wrk (`-t1 -c{args.connections}`) and the private Redis pinned "
        f"to core {LOAD_CORE}. {args.pairs} rounds, each variant {args.duration:g} s per round, order rotated "
        "each "
        f"round. Every scan presents a freshly minted, never-seen ES256 code of a green holder "
        f"({args.holders:,} seeded). CPU µs = server process utime+stime / requests (per code for the batch; "
        f"Redis CPU shown separately). Batch = `POST /v1/scan/batch` with {args.batch} codes per request; "
        "its "
        "rate, CPU and Redis CPU are per code, its latencies per request.",
        "",
        "## Every run",
        "",
        "| round | variant | req/s | p50 ms | p99 ms | CPU µs/req | Redis CPU µs/req | non-2xx "
        "| socket errors "
        "| answers |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        answers = ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items())) or "-"
        answers += f"; verified on a pool thread {r.offloaded}" if r.offloaded >= 0 else ""
        over = " (corpus wrapped: replays)" if r.requests > r.bodies and r.variant != "replay" else ""
        lines.append(
            f"| {r.pair} | {r.variant} | {r.rate:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.cpu_us:.0f} | {r.redis_cpu_us:.0f} | {r.non2xx} | {r.socket_errors} | {answers}{over} |"
        )
    lines += [
        "",
        "## Medians and ratios (ratios computed within each round, then the median)",
        "",
        "| variant | req/s | p50 ms | p99 ms | CPU µs/req | Redis memory B/req | Redis round trips/req "
        "| Redis commands/req |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        rs = [r for r in runs if r.variant == v]
        lines.append(
            f"| {v} | {_median(r.rate for r in rs):,.0f} | {_median(r.p50_ms for r in rs):.2f} | "
            f"{_median(r.p99_ms for r in rs):.2f} | {_median(r.cpu_us for r in rs):.0f} | "
            f"{_median(r.stored_bytes for r in rs):.0f} | {_median(r.redis_reads for r in rs):.3f} | "
            f"{_median(r.redis_commands for r in rs):.2f} |"
        )
    ratios = _ratios(runs)
    if ratios:
        lines += ["", "| ratio | per round | median | target |", "|---|---|---|---|"]
    targets = {
        "full / bare": "≥ 0.25 (issue 19; 0.30 before it)",
        "full / naive": "≥ 2",
        "batch per code / bare": "≥ 0.45 (issue 19; 0.30 before it)",
        "batch per code / full": "-",
        "self / full": "- (self-scan: the place code's signature is checked once per venue, not per scan)",
        "w2 / w1": "- (unpinned; wrk and Redis share the 2 cores)",
        "wbatchauto / wbatch0": "- (batch per code, serve --workers 1 unpinned, PLACEGATE_VERIFY_THREADS auto / 0)",
    }
    for name, vals in ratios.items():
        lines.append(
            f"| {name} | {', '.join(f'{x:.2f}' for x in vals)} | {_median(vals):.2f} | {targets.get(name, '-')} |"
        )
    cpu = _cpu_ratios(runs)
    if cpu:
        lines += ["", "| CPU per request | per round | median | target |", "|---|---|---|---|"]
        for name, vals in cpu.items():
            target = "≤ 1.5 (issue 15: an exception storm costs at most 1.5 admits)" if name == "replay / full" else "-"
            lines.append(f"| {name} | {', '.join(f'{x:.2f}' for x in vals)} | {_median(vals):.2f} | {target} |")
    bound = _round_trip_bound(runs)
    if bound is not None:
        per_trip, full_trips, saving, full_cpu = bound
        lines += [
            "",
            "Round trips (issue 19, point 2): the full path made "
            f"{full_trips:.3f} Redis round trips per scan (median; one per {1 / max(full_trips, 1e-9):.0f} scans: "
            "each loop turn's lookups and records go in one pipelined flush each, and concurrent turns share "
            "flushes). The naive variant awaits every command alone; its extra CPU per extra round trip, "
            f"{per_trip:.0f} µs (median of rounds), bounds what a round trip costs the gateway (it also pays a task "
            "switch per await). Folding the two groups into one would save at most half of the full path's round "
            f"trips: ≤ {saving:.1f} µs per scan, {100 * saving / full_cpu:.1f} % of its {full_cpu:.0f} µs.",
        ]
    full_p99 = _median(r.p99_ms for r in runs if r.variant == "full")
    lines += [
        "",
        f"p99 of the full scan path at {args.connections} connections: {full_p99:.2f} ms (target ≤ 10 ms). "
        f"Non-2xx over all runs: {sum(r.non2xx for r in runs)}; socket errors: "
        f"{sum(r.socket_errors for r in runs)}.",
    ]
    if failures:
        kinds: dict[str, int] = {}
        for line in failures.splitlines():
            status, _, body = line.partition(" ")
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                body = str(orjson.loads(body).get("error"))
            kinds[f"{status} {body[:60]}"] = kinds.get(f"{status} {body[:60]}", 0) + 1
        lines += [
            "",
            "Non-2xx answers (status and error code, including warm-up runs): "
            + ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items())),
        ]
    if open_steps:
        lines += _render_open_loop(args, open_steps, runs)
    lines += render_cluster(
        runs,
        holders=args.holders,
        connections=args.connections,
        server_core=SERVER_CORE,
        load_core=LOAD_CORE,
        load=cluster_load,
        load_holders=args.cluster_status_holders,
    )
    if cache:
        lines += _render_capacity(runs, cache, open_steps)
    if cache:
        lines += [
            "",
            "## Status cache",
            "",
            f"`placegate status load` of {int(cache['holders']):,} JSON-lines records (generated by the "
            f"harness in {cache['feed_gen_s']:.1f} s) into an empty Redis, 65,536 buckets, loader pinned to "
            f"core {SERVER_CORE}, Redis on core {LOAD_CORE}, no AOF:",
            "",
            "| figure | value | target |",
            "|---|---|---|",
            f"| Redis used_memory per holder | {cache['bytes_per_holder']:.1f} B "
            f"({int(cache['used_before']):,} → {int(cache['used_after']):,}) | ≤ 40 B |",
            f"| load rate reported by the CLI | {cache['load_rate']:,.0f} /s ({cache['load_s']:.2f} s) "
            f"| ≥ 300,000 /s |",
            f"| load rate incl. process start-up | {cache['wall_rate']:,.0f} /s ({cache['wall_s']:.2f} s) | - |",
            f"| holders stored (HLEN sum) | {int(cache['stored']):,} | = {int(cache['holders']):,} |",
        ]
    return "\n".join(lines) + "\n"


OPEN_LOOP_TARGETS = {0.5: 5.0, 0.75: 10.0}  # issue 19: p99 at 50 % and 75 % of saturation, ms


def _render_open_loop(args: argparse.Namespace, all_steps: Sequence[OpenLoopStep], runs: Sequence[Run]) -> list[str]:
    steps = [st for st in all_steps if st.target == "full"]
    if not steps:
        return []
    saturation = steps[0].rate / steps[0].share
    closed_cpu = _median(r.cpu_us for r in runs if r.variant == "full")
    lines = [
        "",
        "## Latency at a steady arrival rate (open loop)",
        "",
        f"`python -m bench.openloop` (pinned to core {LOAD_CORE}, {args.connections} keep-alive connections, "
        "pipelined) sends fresh codes to the full scan path on a fixed schedule and times each answer from the "
        "moment its request was due, not from when it was written, so a stall is charged to every request that "
        "arrived during it (no coordinated omission). Rates are shares of the saturation rate measured in this "
        f"run: the median closed-loop `full` rate above, {saturation:,.0f} req/s. Generator lag = how late the "
        "generator itself wrote a request (already included in the latency). Gateway CPU per request and cores "
        "busy are the gateway process's utime + stime over the step (/proc), per answered request and per second "
        f"of the schedule; under closed-loop saturation the same path took {closed_cpu:.0f} µs per request "
        "(median of the `full` rounds above), because 64 connections keep many requests in each loop turn and in "
        "each Redis round trip, while requests arriving one by one each pay the turn alone.",
    ]
    control = all(st.control is not None for st in steps)
    if control:
        lines.append(
            "Bare p99 = the bare aiohttp handler (same core, same generator, same rate, same bodies) right after "
            "the step: the part of the tail that the host, the kernel and the generator add whatever the handler."
        )
    lines += [
        "",
        "| share | rate /s | answered | non-2xx | lost | p50 ms | p99 ms | p99.9 ms | max ms | generator lag p99 ms "
        "| gateway CPU µs/req | gateway cores busy | Redis round trips/req |"
        + (" bare p99 ms |" if control else "")
        + " p99 target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if control else "") + "---|",
    ]
    for st in steps:
        r = st.result
        target = OPEN_LOOP_TARGETS.get(st.share)
        verdict = "-" if target is None else f"≤ {target:g} ms: {'met' if r['p99_ms'] <= target else 'missed'}"
        bare = f" {st.control['p99_ms']:.2f} |" if st.control is not None else ""
        lines.append(
            f"| {st.share:.0%} | {st.rate:,.0f} | {int(r['answered']):,} | {int(r['non2xx'])} | {int(r['lost'])} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['max_ms']:.2f} | "
            f"{r['lag_p99_ms']:.2f} | {st.cpu_us:.0f} | {st.busy:.2f} | {st.trips:.2f} |{bare} {verdict} |"
        )
    return lines + _render_open_loop_trips(all_steps)


def _render_open_loop_trips(steps: Sequence[OpenLoopStep]) -> list[str]:
    """Issue 19 point 2 at a steady arrival rate: what a Redis round trip costs the gateway when requests arrive
    one by one (naive vs full at the same rate), and so what folding the full path's two groups into one could save."""
    naive = next((st for st in steps if st.target == "naive"), None)
    full = next((st for st in steps if st.target == "full" and naive and st.share == naive.share), None)
    if naive is None or full is None or naive.trips <= full.trips:
        return []
    per_trip = (naive.cpu_us - full.cpu_us) / (naive.trips - full.trips)
    saving = per_trip * full.trips / 2
    return [
        "",
        f"Round trips at a steady arrival rate: at {full.share:.0%} ({full.rate:,.0f} req/s) the full path made "
        f"{full.trips:.2f} Redis round trips per scan for {full.cpu_us:.0f} µs of gateway CPU; the naive variant "
        f"(every command awaited alone), driven at the same rate, made {naive.trips:.2f} for {naive.cpu_us:.0f} µs "
        f"(p99 {naive.result['p99_ms']:.2f} ms). Its extra CPU per extra round trip, {per_trip:.0f} µs, bounds what "
        "one costs the gateway when requests arrive one by one (it also pays a task switch per await). Folding the "
        f"full path's two groups into one would save at most half its round trips: ≤ {saving:.0f} µs per scan, "
        f"{100 * saving / full.cpu_us:.0f} % of its CPU at this rate.",
    ]


def _profile_summary(raw: Path, top: int = 25) -> str:
    """Inclusive and self shares of the sampled gateway stacks (py-spy raw format: ``frames;.. count``)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [re.sub(r" \((?:/[^)]*/)?(?:site-packages/)?([^)]*)\)", r" (\1)", f) for f in stack.split(";")]
        for f in set(frames):
            inclusive[f] = inclusive.get(f, 0) + count
        own[frames[-1]] = own.get(frames[-1], 0) + count
    lines = [f"# py-spy profile of the gateway ({raw.name}, {total} samples)", "", "## Inclusive", ""]
    for name, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"- {100 * n / max(total, 1):5.1f}%  {name}")
    lines += ["", "## Self", ""]
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"- {100 * n / max(total, 1):5.1f}%  {name}")
    return "\n".join(lines) + "\n"


# Issue 19 point 4: the city the model is sized for (inputs, not measurements).
CITY_HOLDERS = 25_000_000
CITY_PEAK_SCANS_S = 50_000
CITY_EXCEPTION_SHARE = 0.05
RETENTION_DAYS = 21  # PLACEGATE_RETENTION_DAYS default: a day's log lives the day + 21 days


def _render_capacity(runs: list[Run], cache: dict[str, float], open_steps: Sequence[OpenLoopStep]) -> list[str]:
    """A city's capacity from this run's figures only: CPU per scan (admit and exception), Redis CPU and memory per
    scan, bytes per holder, the load rate, the open-loop headroom and --workers scaling."""
    fulls = [r for r in runs if r.variant == "full"]
    if not fulls:
        return []
    full_cpu = _median(r.cpu_us for r in fulls)
    replays = [r for r in runs if r.variant == "replay"]
    exc_cpu = _median(r.cpu_us for r in replays) if replays else float("nan")
    mix_cpu = (1 - CITY_EXCEPTION_SHARE) * full_cpu + CITY_EXCEPTION_SHARE * (exc_cpu if replays else full_cpu)
    redis_cpu = _median(r.redis_cpu_us for r in fulls)
    stored = _median(r.stored_bytes for r in fulls)
    cores_busy = CITY_PEAK_SCANS_S * mix_cpu / 1e6
    # Headroom from the open loop: the highest share of the saturation rate whose p99 stayed within 10 ms.
    ok = [st.share for st in open_steps if st.target == "full" and st.result["p99_ms"] <= 10.0]
    share = max(ok) if ok else None
    lines = [
        "",
        "## Capacity model (issue 19): a city of 25 M holders, a peak of 50,000 scans/s, 5 % exceptions",
        "",
        "Every figure below is computed from this run's measurements; the inputs are the city's size and the "
        "settings' defaults. One gateway core here = one process pinned to one core of this machine.",
        "",
        "| quantity | from | value |",
        "|---|---|---|",
        f"| gateway CPU per scan, admit path | full, median | {full_cpu:.0f} µs |",
        f"| gateway CPU per exception scan | replay, median | "
        f"{f'{exc_cpu:.0f} µs' if replays else 'not measured in this run (full used)'} |",
        f"| gateway CPU per scan at 5 % exceptions | weighted | {mix_cpu:.0f} µs |",
        f"| gateway cores fully busy at 50,000 scans/s | 50,000 x {mix_cpu:.0f} µs | {cores_busy:.1f} |",
    ]
    if share is not None:
        lines.append(
            f"| gateway cores for p99 ≤ 10 ms | ÷ {share:.0%} (the highest open-loop share with p99 ≤ 10 ms) "
            f"| {cores_busy / share:.1f} |"
        )
    else:
        lines.append("| gateway cores for p99 ≤ 10 ms | no open-loop step met 10 ms in this run | - |")
    lines += [
        f"| Redis CPU per scan | full, median | {redis_cpu:.0f} µs |",
        f"| Redis cores busy at 50,000 scans/s | 50,000 x {redis_cpu:.0f} µs | "
        f"{CITY_PEAK_SCANS_S * redis_cpu / 1e6:.2f} "
        "(a primary runs commands on one core: primaries ≥ this ÷ the share one may be kept busy) |",
        f"| status cache, 25 M holders | {cache['bytes_per_holder']:.1f} B/holder x 25 M | "
        f"{CITY_HOLDERS * cache['bytes_per_holder'] / 1e9:.2f} GB |",
        f"| status feed load, 25 M records | 25 M ÷ {cache['load_rate']:,.0f} /s (one loader process) | "
        f"{CITY_HOLDERS / cache['load_rate']:.0f} s |",
        f"| Redis memory per scan kept | full, used_memory growth per scan | {stored:.0f} B |",
        f"| scan log of one peak hour, kept {RETENTION_DAYS + 1} days | 50,000 x 3,600 x {stored:.0f} B | "
        f"{CITY_PEAK_SCANS_S * 3600 * stored / 1e9:.1f} GB per peak hour of scans |",
    ]
    clusters = [r for r in runs if r.variant == "cluster"]
    if clusters:
        # A city this size keeps its scan log on a cluster (a peak hour alone is tens of GB): the gateway pays the
        # cluster client's routing per command (docs/performance.md, "Redis Cluster vs a single node").
        cl_cpu = _median(r.cpu_us for r in clusters)
        cl_mix = mix_cpu * cl_cpu / full_cpu
        cl_redis = _median(r.redis_cpu_us for r in clusters)
        lines += [
            f"| gateway CPU per scan on a 3-primary cluster, admit path | cluster, median | {cl_cpu:.0f} µs |",
            f"| gateway cores fully busy at 50,000 scans/s on a cluster | 50,000 x {cl_mix:.0f} µs (the 5 % mix "
            f"scaled by cluster / full) | {CITY_PEAK_SCANS_S * cl_mix / 1e6:.1f} |",
            f"| Redis CPU per scan on a cluster, summed over the primaries | cluster, median | {cl_redis:.0f} µs: "
            f"{CITY_PEAK_SCANS_S * cl_redis / 1e6:.2f} cores at 50,000 scans/s |",
        ]
        if share is not None:
            lines.append(
                f"| gateway cores on a cluster for p99 ≤ 10 ms | ÷ {share:.0%} (the single-node open-loop headroom) "
                f"| {CITY_PEAK_SCANS_S * cl_mix / 1e6 / share:.1f} |"
            )
    w1 = [r.rate for r in runs if r.variant == "w1"]
    w2 = [r.rate for r in runs if r.variant == "w2"]
    if w1 and w2:
        lines.append(
            f"| what a second core buys | serve --workers 2 / 1, unpinned (wrk and Redis share the cores) | "
            f"{_median(w2) / _median(w1):.2f} x |"
        )
    return lines


def _round_trip_bound(runs: list[Run]) -> tuple[float, float, float, float] | None:
    """(gateway CPU µs per round trip, bounded by naive vs full; full round trips per scan; the most that folding
    the full path's two groups into one could save per scan, µs; full CPU µs per scan), medians over rounds."""
    per_trip: list[float] = []
    for pair in sorted({r.pair for r in runs}):
        by = {r.variant: r for r in runs if r.pair == pair}
        full, naive = by.get("full"), by.get("naive")
        if full and naive and naive.redis_reads > full.redis_reads:
            per_trip.append((naive.cpu_us - full.cpu_us) / (naive.redis_reads - full.redis_reads))
    if not per_trip:
        return None
    fulls = [r for r in runs if r.variant == "full"]
    trips = _median(r.redis_reads for r in fulls)
    cost = _median(per_trip)
    return cost, trips, cost * trips / 2, _median(r.cpu_us for r in fulls)


def _ratios(runs: list[Run]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        "full / bare": [],
        "full / naive": [],
        "batch per code / bare": [],
        "batch per code / full": [],
        "self / full": [],
        "w2 / w1": [],
        "wbatchauto / wbatch0": [],
        "wbatch0 per code / bare": [],
        "wbatchauto per code / bare": [],
    }
    for pair in sorted({r.pair for r in runs}):
        by = {r.variant: r.rate for r in runs if r.pair == pair}
        for name in out:
            a, b = name.replace(" per code", "").split(" / ")
            if a in by and b in by:
                out[name].append(by[a] / by[b])
    return {k: v for k, v in out.items() if v}


def _cpu_ratios(runs: list[Run]) -> dict[str, list[float]]:
    """CPU per request of the replay storm against the admit path, within each round (the machine is shared:
    only a ratio of two runs side by side means anything)."""
    out: dict[str, list[float]] = {"replay / full": []}
    for pair in sorted({r.pair for r in runs}):
        by = {r.variant: r.cpu_us for r in runs if r.pair == pair}
        if "replay" in by and by.get("full"):
            out["replay / full"].append(by["replay"] / by["full"])
    return {k: v for k, v in out.items() if v}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of (bare, full, naive, batch)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--holders", type=int, default=10_000, help="seeded green holders")
    parser.add_argument("--batch", type=int, default=16, help="codes per batch request")
    parser.add_argument("--status-holders", type=int, default=1_000_000, help="0 skips the status-cache phase")
    parser.add_argument("--variants", default="bare,full,naive,batch,self")
    parser.add_argument("--replay-pool", type=int, default=64, help="codes the replay variant presents over and over")
    parser.add_argument("--port", type=int, default=18600, help="first of three loopback ports")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="also serve --workers 1 vs 2, and the batch on --workers 1 with PLACEGATE_VERIFY_THREADS 0 vs auto, "
        "unpinned (wrk and Redis share the same two cores)",
    )
    parser.add_argument("--profile", type=Path, help="also py-spy the gateway (full, batch) into PATH-*.txt/.md")
    parser.add_argument(
        "--open-loop",
        action="store_true",
        help="also the full path at fixed arrival rates (shares of this run's full rate): bench/openloop.py",
    )
    parser.add_argument("--open-loop-steps", default="10,25,40,50,60,75,90", help="percent of the saturation rate")
    parser.add_argument(
        "--open-loop-naive",
        type=float,
        default=25.0,
        help="percent of the saturation rate at which the naive variant is also driven open loop (its round trips "
        "against the full path's at the same rate); 0 skips it",
    )
    parser.add_argument(
        "--no-open-loop-control",
        dest="open_loop_control",
        action="store_false",
        help="skip the bare handler at each open-loop rate (the control: what the host and the generator add)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="also variant cluster: the full path on a local 3-primary Redis Cluster, same rounds (cluster_bench.py)",
    )
    parser.add_argument(
        "--cluster-status-holders",
        type=int,
        default=200_000,
        help="with --cluster: status load into one server vs the cluster, 2 rounds each (0 skips)",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS.md", help="'-' for none")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.cluster and "full" not in variants:
        print("--cluster needs the full variant (cluster / full is measured within each round)", file=sys.stderr)
        return 2
    if args.cluster and "cluster" not in variants:
        variants.insert(variants.index("full") + 1, "cluster")
    harness = Harness(args)
    runs: list[Run] = []
    cache: dict[str, float] | None = None
    open_steps: list[OpenLoopStep] = []
    cluster_load: dict[str, list[float]] | None = None
    shares = [float(x) / 100 for x in args.open_loop_steps.split(",") if x.strip()]
    if args.open_loop and "full" not in variants:
        print("--open-loop needs the full variant (its rate is the saturation rate)", file=sys.stderr)
        return 2
    try:
        harness.start_redis()
        asyncio.run(harness.seed())
        harness.start()
        if args.cluster:
            harness.start_cluster()
        for v in variants:  # warm-up: connections, caches, and a first rate estimate for sizing the corpus
            harness.run_wrk(v, 0, 2.0)
        for pair in range(1, args.pairs + 1):
            for v in _order(pair - 1, variants):
                run = harness.run_wrk(v, pair, args.duration)
                runs.append(run)
                print(
                    f"round {pair} {v:>5}: {run.rate:>9,.0f}/s p50 {run.p50_ms:6.2f} ms "
                    f"p99 {run.p99_ms:6.2f} ms "
                    f"cpu {run.cpu_us:5.0f} µs redis {run.redis_cpu_us:4.0f} µs non2xx {run.non2xx} "
                    f"{run.reasons}",
                    flush=True,
                )
        if args.scaling:
            for v in ("w1", "w2", *BATCH_THREADS):
                harness.run_wrk(v, 0, 2.0)
            for pair in range(1, args.pairs + 1):
                for v in _order(pair - 1, ["w1", "w2", *BATCH_THREADS]):
                    run = harness.run_wrk(v, pair, args.duration)
                    runs.append(run)
                    print(
                        f"round {pair} {v:>5}: {run.rate:>9,.0f}/s p50 {run.p50_ms:6.2f} ms p99 "
                        f"{run.p99_ms:6.2f} ms cpu {run.cpu_us:5.0f} µs non2xx {run.non2xx}"
                        + (f" verified on a pool thread {run.offloaded}" if run.offloaded >= 0 else ""),
                        flush=True,
                    )
        if args.open_loop:
            saturation = _median(r.rate for r in runs if r.variant == "full")
            for share in shares:
                step = harness.run_open_loop(share, saturation, args.duration)
                open_steps.append(step)
                r = step.result
                print(
                    f"open loop {share:4.0%} {step.rate:>8,.0f}/s p50 {r['p50_ms']:6.2f} ms p99 {r['p99_ms']:6.2f} ms "
                    f"p99.9 {r['p999_ms']:6.2f} ms lag p99 {r['lag_p99_ms']:.2f} ms non2xx {int(r['non2xx'])} "
                    f"lost {int(r['lost'])} cpu {step.cpu_us:.0f} µs busy {step.busy:.2f} trips {step.trips:.2f}/req"
                    + (f" | bare p99 {step.control['p99_ms']:.2f} ms" if step.control else ""),
                    flush=True,
                )
            if args.open_loop_naive > 0 and "naive" in variants:
                step = harness.run_open_loop(args.open_loop_naive / 100, saturation, args.duration, target="naive")
                open_steps.append(step)
                print(
                    f"open loop naive {step.share:4.0%} {step.rate:>8,.0f}/s p99 {step.result['p99_ms']:6.2f} ms "
                    f"cpu {step.cpu_us:.0f} µs round trips {step.trips:.2f}/req",
                    flush=True,
                )
        if args.profile is not None:
            args.profile.parent.mkdir(parents=True, exist_ok=True)
            for v in [v for v in ("full", "batch", "replay", "cluster") if v in variants or v in ("full", "batch")]:
                raw = args.profile.with_name(f"{args.profile.name}-{v}.txt")
                harness.run_wrk(v, 0, args.duration, profile=raw)
                summary = _profile_summary(raw)
                raw.with_suffix(".md").write_text(summary)
                print(summary)
        if args.status_holders > 0:
            cache = asyncio.run(harness.status_cache())
        if args.cluster and args.cluster_status_holders > 0:
            cluster_load = harness.cluster_status_load()
    finally:
        failures = harness.failures.read_text() if harness.failures.exists() else ""
        harness.stop()
    text = _render(args, runs, cache, started, failures, open_steps, cluster_load)
    print(text)
    if str(args.output) != "-":
        args.output.write_text(text)
    clean = all(r.non2xx == 0 and r.socket_errors == 0 for r in runs)
    return 0 if clean and all(s.result["non2xx"] == 0 and s.result["lost"] == 0 for s in open_steps) else 1


if __name__ == "__main__":
    sys.exit(main())
