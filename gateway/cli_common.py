"""Shared plumbing of the CLI: settings and the admin Redis session (embedded or configured)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from gateway.embedded import EmbeddedServer, gateway_owns, socket_alive
from gateway.errors import StoreUnavailableError
from gateway.privacy.audit import set_trail_secret
from gateway.redisio import connect_redis
from gateway.settings import Settings

__all__ = [
    "add_common_args",
    "admin_redis",
    "embedded_dir",
    "run",
    "settings_from",
]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (default: the embedded server in the data directory)")
    parser.add_argument("--data-dir", type=Path, help="data directory (default .placegate or PLACEGATE_DATA_DIR)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment first, then command-line overrides.

    :raises SettingsError: a bad value, named by its variable (``main`` prints it and exits 2).
    """
    settings = Settings.from_env()
    overrides: dict[str, Any] = {}
    if getattr(args, "redis_url", None):
        overrides["redis_url"] = args.redis_url
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    for name in ("host", "port", "workers"):
        if getattr(args, name, None) is not None:
            overrides[name] = getattr(args, name)
    if overrides:
        from dataclasses import replace

        settings = replace(settings, **overrides)
        settings.validate()  # a flag is held to the same ranges as its variable (--port 0: PLACEGATE_PORT)
    return settings


def embedded_dir(settings: Settings) -> Path:
    return settings.data_dir / "redis"


@contextlib.asynccontextmanager
async def admin_redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client for an admin command: the configured Redis, the running embedded server, or a temporary one.

    Installs the audit trail key from the master secret first: every admin write is audited, and the trail's
    head is signed with that key (it must be the gateway's secret: PLACEGATE_SECRET or ``data_dir/secret``).
    """
    secret = settings.with_secret().secret
    assert secret is not None
    set_trail_secret(secret.reveal())
    server: EmbeddedServer | None = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        embedded = EmbeddedServer(embedded_dir(settings), root=settings.data_dir)
        if not socket_alive(embedded.socket_path):
            if gateway_owns(embedded.directory):
                # The gateway's server is restarting: wait for it, never start a second one on its socket.
                _wait_alive(embedded.socket_path)
            else:
                server = embedded.start()
        url = embedded.url
    redis = connect_redis(url, connect_timeout_s=settings.redis_connect_timeout_s,
                          socket_timeout_s=settings.redis_socket_timeout_s)
    try:
        yield redis
    finally:
        await redis.aclose()
        if server is not None:
            server.stop()


def run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


_RESTART_WAIT_S = 10.0


def _wait_alive(path: Path) -> None:
    """:raises StoreUnavailableError: the gateway's server did not come back within ``_RESTART_WAIT_S``."""
    deadline = time.monotonic() + _RESTART_WAIT_S
    while time.monotonic() < deadline:
        if socket_alive(path):
            return
        time.sleep(0.1)
    raise StoreUnavailableError("the gateway's embedded server is restarting; try again")
