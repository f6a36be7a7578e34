"""The strict settings as an operator meets them: `placegate` run as a subprocess with bad or unknown variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLACEGATE = [sys.executable, "-m", "gateway"]
# The suite's shared secret (tests/gateway/conftest.py): an external store requires one, and the store's
# fingerprint of it must agree with every other test's CLI run on the session server.
SECRET_HEX = bytes(range(32)).hex()


def _run(args: list[str], data_dir: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    # The caller's own PLACEGATE_* variables are dropped: each test states every one it means.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PLACEGATE_")}
    env.update(PLACEGATE_DATA_DIR=str(data_dir), **variables)
    return subprocess.run([*PLACEGATE, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize(
    ("args", "variable", "raw"),
    [(["keys", "list"], "PLACEGATE_PORT", "abc"),
     (["serve"], "PLACEGATE_PORT", "abc"),
     (["keys", "list"], "PLACEGATE_RETENTION_DAYS", "0"),
     (["keys", "list"], "PLACEGATE_SECRET", "not-hex"),
     (["dispatch", "sweep"], "PLACEGATE_DISPATCH_WORKER", "ture"),
     (["status", "load", "/dev/null"], "PLACEGATE_PRINCIPAL_CACHE_S", "nan")],
)
def test_a_bad_value_stops_the_command_with_status_2_naming_the_variable(
    tmp_path: Path, args: list[str], variable: str, raw: str
) -> None:
    done = _run(args, tmp_path, **{variable: raw})
    assert done.returncode == 2
    assert done.stderr.startswith(f"placegate: {variable}: ")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "redis").exists()  # refused before any Redis (the embedded one lives there) was started


def test_the_bad_value_is_named_exactly_as_the_operator_reads_it(tmp_path: Path) -> None:
    done = _run(["keys", "list"], tmp_path, PLACEGATE_PORT="abc")
    assert done.stderr == "placegate: PLACEGATE_PORT: expected an integer, got 'abc'\n"


def test_a_flag_is_held_to_its_variables_range(tmp_path: Path) -> None:
    done = _run(["serve", "--port", "0"], tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("placegate: PLACEGATE_PORT: ")


def test_a_refused_secret_is_not_echoed(tmp_path: Path) -> None:
    done = _run(["keys", "list"], tmp_path, PLACEGATE_SECRET="c0ffeg" * 12)
    assert done.returncode == 2 and "c0ffe" not in done.stderr


def test_an_unknown_variable_is_reported_and_the_command_still_runs(tmp_path: Path, redis_url: str) -> None:
    done = _run(["keys", "list", "--redis-url", redis_url], tmp_path, PLACEGATE_PROT="9000", PLACEGATE_FOO="1",
                PLACEGATE_SECRET=SECRET_HEX)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "placegate: warning: unknown setting PLACEGATE_FOO (ignored)",
        "placegate: warning: unknown setting PLACEGATE_PROT (ignored; did you mean PLACEGATE_PORT?)",
    ]
    assert done.stdout.startswith("kid")


def test_known_variables_of_the_tooling_are_not_reported(tmp_path: Path, redis_url: str) -> None:
    done = _run(["keys", "list", "--redis-url", redis_url], tmp_path, PLACEGATE_TEST_REDIS_URL=redis_url,
                PLACEGATE_LOCUST_HOLDERS="10", PLACEGATE_SECRET=SECRET_HEX)
    assert done.returncode == 0 and done.stderr == ""
