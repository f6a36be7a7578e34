"""bench/faults.py end to end: the store killed, restarted, stopped and continued under scans at a fixed rate, and
every exception the gateway answered found in the intake stream afterwards (the figure bench/FAULTS.md quotes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.single_node("starts its own store and gateway beside the session's; once a machine is enough"),
    pytest.mark.timeout(180),
]

ROOT = Path(__file__).resolve().parent.parent


def test_the_fault_run_kills_and_stops_the_store_and_loses_no_acknowledged_exception(tmp_path: Path) -> None:
    out = tmp_path / "faults.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.faults", "--rate", "50", "--phase-s", "1", "--outage-s", "1",
         "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = out.read_text()
    assert "Recovery in **store restarted**" in report and "Recovery in **store continued**" in report
    line = next(x for x in report.splitlines() if x.startswith("- Exception answers"))
    answered = int(line.split("(red holders, replays): ")[1].split(";")[0])
    assert answered > 0 and line.endswith("lost: 0.")
