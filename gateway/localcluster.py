"""Local Redis Cluster and Sentinel groups on 127.0.0.1 from the bundled valkey binaries: for the test suite
(``make test-cluster``), the Sentinel tests and the failover bench. Never used by a running gateway.

Every process is started with ``die_with_parent`` (a killed test session leaves no server behind) in a temp
directory the caller owns, on free TCP ports of 127.0.0.1, with persistence off unless ``extra_args`` turn it on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.embedded import die_with_parent, find_server_binary

__all__ = ["LocalCluster", "LocalSentinel", "cli_binary", "free_ports", "node_command"]


def cli_binary() -> str:
    """``valkey-cli`` (or ``redis-cli``) beside the server binary, else on PATH."""
    server = Path(find_server_binary())
    for name in ("valkey-cli", "redis-cli"):
        beside = server.with_name(name)
        if os.access(beside, os.X_OK):
            return str(beside)
    for name in ("valkey-cli", "redis-cli"):
        if found := shutil.which(name):
            return found
    raise RuntimeError("no valkey-cli/redis-cli beside the server binary or on PATH")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports of 127.0.0.1 free right now (and their cluster bus ports, +10000, too)."""
    ports: list[int] = []
    held: list[socket.socket] = []
    try:
        while len(ports) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
            port = sock.getsockname()[1]
            if port + 10000 > 65535 or port in ports:
                continue
            with contextlib.suppress(OSError), socket.socket() as bus:
                bus.bind(("127.0.0.1", port + 10000))
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return ports


def _ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


def node_command(port: int, *args: str) -> str:
    """One command to the server on 127.0.0.1:``port`` through the CLI; its output (empty if it is down)."""
    done = subprocess.run([cli_binary(), "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, timeout=10,
                          check=False)  # fmt: skip
    return done.stdout.decode(errors="replace")


class _Group:
    """Server processes started in one directory; stopped together."""

    def __init__(self, directory: Path, extra_args: Sequence[str] = ()) -> None:
        self.directory = directory
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.extra_args = tuple(extra_args)  # last on each command line: they override the defaults above them

    def _start(self, port: int, args: Sequence[str]) -> None:
        node_dir = self.directory / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        command = [
            find_server_binary(), *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir),
            "--daemonize", "no", "--save", "", "--appendonly", "no", "--logfile", str(node_dir / "server.log"),
            *self.extra_args,
        ]  # fmt: skip
        self.processes[port] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)  # fmt: skip

    def _wait_pings(self, ports: Sequence[int], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for port in ports:
            while not _ping(port):
                process = self.processes[port]
                if process.poll() is not None:
                    raise RuntimeError(f"server on {port} exited with {process.returncode}; see {self.directory}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server on {port} did not start in time")
                time.sleep(0.02)

    def kill(self, port: int) -> None:
        """SIGKILL one server (a crash: nothing flushed, no goodbye to its peers)."""
        process = self.processes[port]
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class LocalCluster(_Group):
    """``primaries`` primaries with ``replicas`` replicas each, slots spread by ``--cluster create``."""

    def __init__(
        self, directory: Path, *, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 2000,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(directory, extra_args)
        self.ports = free_ports(primaries * (1 + replicas))
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self, *, timeout_s: float = 60.0) -> LocalCluster:
        for port in self.ports:
            self._start(port, ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                               "--cluster-node-timeout", str(self.node_timeout_ms),
                               # A primary whose replica was promoted must not refuse the whole cluster's keyspace.
                               "--cluster-require-full-coverage", "no",
                               "--hash-max-listpack-entries", "1024", "--hash-max-listpack-value", "64"])  # fmt: skip
        try:
            self._wait_pings(self.ports, timeout_s)
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            done = subprocess.run([cli_binary(), "--cluster", "create", *nodes, "--cluster-replicas",
                                   str(self.replicas), "--cluster-yes"], capture_output=True, timeout=timeout_s,
                                  check=False)  # fmt: skip
            if done.returncode != 0:
                said = done.stdout.decode()[-500:] + done.stderr.decode()[-500:]
                raise RuntimeError(f"cluster create failed: {said}")
            self.wait_ok(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, timeout_s: float = 60.0) -> None:
        """Until every live node says ``cluster_state:ok``, the primaries cover every slot and every replica is in
        sync (a replica that never synced is never promoted: a failover test needs them all up)."""
        deadline = time.monotonic() + timeout_s
        while True:
            live = [p for p, proc in self.processes.items() if proc.poll() is None]
            if all("cluster_state:ok" in node_command(p, "CLUSTER", "INFO") for p in live) and self.primaries():
                lines = [line.split() for line in node_command(live[0], "CLUSTER", "NODES").splitlines()]
                replicas = [int(parts[1].split("@")[0].rsplit(":", 1)[1]) for parts in lines
                            if len(parts) >= 8 and "slave" in parts[2] and "fail" not in parts[2]]  # fmt: skip
                covered = sum(_slot_count(parts) for parts in lines if len(parts) >= 8 and "master" in parts[2])
                synced = all("master_link_status:up" in node_command(r, "INFO", "replication") for r in replicas)
                # A synced replica is announced by gossip a few seconds later: until every node lists it in
                # CLUSTER SLOTS, a client that reads the slot map then never learns of it.
                if covered == 16384 and synced and all(
                        node_command(p, "CLUSTER", "SLOTS").count("127.0.0.1") >= len(live) for p in live):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok in time")
            time.sleep(0.1)

    def primaries(self) -> list[int]:
        """Ports of the live primaries that serve slots."""
        live = [p for p, proc in self.processes.items() if proc.poll() is None]
        if not live:
            return []
        out: list[int] = []
        for line in node_command(live[0], "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if len(parts) >= 9 and "master" in parts[2] and "fail" not in parts[2]:
                out.append(int(parts[1].split("@")[0].rsplit(":", 1)[1]))
        return sorted(out)

    def replica_of(self, primary: int) -> int:
        """The port of a live replica of ``primary``."""
        nodes = node_command(primary, "CLUSTER", "NODES").splitlines()
        ids = {line.split()[0]: line for line in nodes}
        me = next(line.split()[0] for line in nodes if "myself" in line)
        for line in ids.values():
            parts = line.split()
            if "slave" in parts[2] and parts[3] == me:
                return int(parts[1].split("@")[0].rsplit(":", 1)[1])
        raise RuntimeError(f"no replica of {primary}")

    def flushall(self) -> None:
        """Empty every primary (replicas follow)."""
        for port in self.primaries():
            node_command(port, "FLUSHALL")


def _slot_count(parts: Sequence[str]) -> int:
    total = 0
    for part in parts[8:]:
        if part.startswith("["):  # a slot being migrated
            continue
        low, _, high = part.partition("-")
        total += int(high or low) - int(low) + 1
    return total


class LocalSentinel(_Group):
    """One primary, one replica and ``sentinels`` sentinels watching the primary as ``service``."""

    def __init__(self, directory: Path, *, sentinels: int = 3, service: str = "placegate") -> None:
        super().__init__(directory)
        self.primary, self.replica, *self.sentinels = free_ports(2 + sentinels)
        self.service = service

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{self.service}"

    def start(self, *, timeout_s: float = 30.0) -> LocalSentinel:
        try:
            self._start(self.primary, [])
            self._start(self.replica, ["--replicaof", "127.0.0.1", str(self.primary)])
            self._wait_pings([self.primary, self.replica], timeout_s)
            quorum = len(self.sentinels) // 2 + 1
            for port in self.sentinels:
                conf = self.directory / f"sentinel-{port}.conf"
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {self.primary} {quorum}\n"
                    f"sentinel down-after-milliseconds {self.service} 1000\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                )
                node_dir = self.directory / str(port)
                node_dir.mkdir(parents=True, exist_ok=True)
                self.processes[port] = subprocess.Popen(
                    [find_server_binary(), str(conf), "--sentinel", "--dir", str(node_dir), "--daemonize", "no",
                     "--logfile", str(node_dir / "sentinel.log")],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )  # fmt: skip
            self._wait_pings(self.sentinels, timeout_s)
            deadline = time.monotonic() + timeout_s
            while "master_link_status:up" not in node_command(self.replica, "INFO", "replication"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the replica did not sync in time")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def current_primary(self) -> int | None:
        """The port the sentinels name as the primary now (asked of the first live sentinel)."""
        for port in self.sentinels:
            reply = node_command(port, "SENTINEL", "get-master-addr-by-name", self.service).split()
            if len(reply) == 2:
                return int(reply[1])
        return None
