"""What a served process adds to the app: a frozen start-up heap and a larger young-generation threshold.

Run in a child interpreter: freezing the heap or changing the collector's thresholds in the test process would
change every later test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import asyncio, gc, os, tempfile
from pathlib import Path
from gateway.app import serving_app
from gateway.settings import Secret, Settings

before = gc.get_threshold()
app = serving_app(Settings(data_dir=Path(tempfile.mkdtemp()), secret=Secret(os.urandom(32))))
hook = app.on_startup[-1]  # the hooks before it open Redis and the rest; this one runs once they are open
assert hook.__name__ == "_freeze_heap", hook
asyncio.run(hook(app))
print(before[0], gc.get_threshold()[0], gc.get_threshold()[1:] == before[1:], gc.get_freeze_count() > 0)
"""


def test_a_served_app_freezes_its_heap_and_collects_the_young_generation_less_often() -> None:
    out = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    default, served, older_unchanged, frozen = out.stdout.split()
    assert int(default) < 10_000  # CPython's own: 700 up to 3.12
    assert (served, older_unchanged, frozen) == ("10000", "True", "True")
