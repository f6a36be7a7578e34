"""``python -m bench.run --cluster`` (bench/cluster_bench.py): the full scan path on a local 3-primary Redis Cluster
in the same rounds as on the single Redis, for a second a run. Real servers, real wrk, real gateways.

No speed is asserted: only that both gateways answered every scan with a 2xx admit, that the cluster's figures
came from the cluster (its primaries processed the scans' commands) and that the rendered section carries them.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.single_node("starts its own single server and cluster beside the session's; once a machine is enough"),
    pytest.mark.skipif(
        shutil.which("wrk") is None or shutil.which("taskset") is None,
        reason="wrk and taskset not on PATH (Debian packages `wrk`, `util-linux`)",
    ),
]


def _three_free_ports() -> int:
    """A base port with it and the next two free, below the ephemeral range the local clusters take their ports
    from (gateway/localcluster.py free_ports: bound to port 0) and away from the harness's default 18600."""
    for base in range(21000, 29000, 7):
        held: list[socket.socket] = []
        try:
            for port in range(base, base + 3):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                with contextlib.suppress(OSError):
                    sock.close()
    raise RuntimeError("no three consecutive free ports in 21000-29000")


def _table_rows(text: str, heading: str) -> list[list[str]]:
    """The data rows of the first table after ``heading``, split into cells."""
    section = text.split(heading, 1)[1]
    rows = []
    started = False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set("".join(cells)) <= set("-") and cells[0] not in ("round", "figure", "variant"):
                rows.append(cells)
        elif started:
            break
    return rows


@pytest.mark.timeout(420)
def test_the_cluster_variant_runs_beside_full_and_is_rendered(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    argv = [sys.executable, "-m", "bench.run", "--pairs", "2", "--duration", "1", "--variants", "full", "--cluster",
            "--holders", "200", "--connections", "8", "--status-holders", "0", "--cluster-status-holders", "3000",
            "--port", str(_three_free_ports()), "--output", str(out)]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text()

    runs = _table_rows(text, "## Every run")
    by_variant: dict[str, list[list[str]]] = {}
    for row in runs:
        by_variant.setdefault(row[1], []).append(row)
    assert sorted(by_variant) == ["cluster", "full"]
    assert [r[0] for r in by_variant["cluster"]] == ["1", "2"] == [r[0] for r in by_variant["full"]]
    order = [(r[0], r[1]) for r in runs]
    assert order == [("1", "full"), ("1", "cluster"), ("2", "cluster"), ("2", "full")]  # rotated each round
    for row in runs:
        # non-2xx 0, socket errors 0, and every answer an admit (fresh codes of green holders, on both stores;
        # on a loaded machine a store may miss the scan deadline: "admit/ok/degraded" is still that admit)
        assert row[7] == "0" and row[8] == "0", text
        # A run faster than its warm-up's estimate can run past its corpus (flagged): within one second those
        # codes come round again inside the retry window and get the same admit, so the flag is no failure here.
        answers = dict(a.rsplit(" ", 1) for a in row[9].removesuffix(" (corpus wrapped: replays)").split(", "))
        assert answers and all(k in ("admit/ok", "admit/ok/degraded") for k in answers), text
        assert int(answers.get("admit/ok", "0")) > 0, text

    assert "## Redis Cluster vs a single node" in text
    section = text.split("## Redis Cluster vs a single node", 1)[1]
    assert "3 primaries and no replicas" in section
    figures = {row[0]: row for row in _table_rows(text, "## Redis Cluster vs a single node")}
    for name in ("req/s", "gateway CPU µs per scan", "Redis CPU µs per scan (cluster: sum of the primaries)",
                 "Redis round trips per scan (socket reads; cluster: summed)",
                 "Redis commands per scan (cluster: summed)"):  # fmt: skip
        cluster, full, ratios, median = figures[name][1:]
        assert len(cluster.split(", ")) == 2 and len(full.split(", ")) == 2 and len(ratios.split(", ")) == 2, name
        assert re.fullmatch(r"\d+\.\d\d", median), (name, median)
    # Every scan sends at least its lookup to the store it is served from, so the cluster's primaries processed at
    # least one command per scan (the counters of an idle store, read by mistake, would show a fraction of one),
    # in round trips pipelined with other scans'.
    for store in (1, 2):  # cluster, full
        commands = figures["Redis commands per scan (cluster: summed)"][store].split(", ")
        trips = figures["Redis round trips per scan (socket reads; cluster: summed)"][store].split(", ")
        assert all(float(x) >= 1 for x in commands) and all(float(x) > 0 for x in trips), (commands, trips)
    load = {row[0]: row for row in _table_rows(section, "Status feed:")}
    single, cluster = load["load rate reported by the CLI, /s"][1:3]
    assert len(single.split(", ")) == 2 and len(cluster.split(", ")) == 2
    assert all(float(x.replace(",", "")) > 0 for x in (single + ", " + cluster).split(", "))
    assert "of 3,000 records" in section
