"""crypto/ and policy/ are pure: importing them pulls in no web framework, no Redis client, no metrics."""

from __future__ import annotations

import subprocess
import sys


def test_pure_packages_import_no_io_libraries() -> None:
    script = (
        "import sys, pkgutil, importlib, crypto, policy\n"
        "for pkg in (crypto, policy):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(pkg.__name__ + '.' + m.name)\n"
        "bad = [m for m in ('aiohttp', 'redis', 'prometheus_client', 'gateway') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
