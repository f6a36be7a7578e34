"""Shared plumbing of the CLI: settings and the admin Redis session (embedded or configured)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from gateway.embedded import EmbeddedServer, gateway_owns, socket_alive
from gateway.errors import StoreUnavailableError
from gateway.principals import Principal, Role, hash_token, is_token_shaped
from gateway.privacy.audit import cli_actor, record_privileged, set_trail_secret
from gateway.redisio import connect_redis
from gateway.secretcheck import check_secret
from gateway.settings import Settings

__all__ = [
    "CliRefusedError",
    "add_common_args",
    "add_token_arg",
    "admin_redis",
    "cli_principal",
    "embedded_dir",
    "run",
    "settings_from",
]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (default: the embedded server in the data directory)")
    parser.add_argument("--data-dir", type=Path, help="data directory (default .placegate or PLACEGATE_DATA_DIR)")
    parser.add_argument("--secret-file", type=Path,
                        help="file holding the deployment's secret in hex (or PLACEGATE_SECRET / PLACEGATE_SECRET_FILE;"
                        " required with an external store)")


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
    if getattr(args, "secret_file", None):
        overrides["secret_file"] = args.secret_file
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
    Every command that talks to the store comes through here, so every one holds the secret rule: resolved
    before any server starts (``Settings.with_secret``), then checked against the store's fingerprint.

    :raises SettingsError: no secret for an external store, or the store was initialised with another secret.
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
        await check_secret(redis, secret, url=url)
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


class CliRefusedError(Exception):
    """A CLI command refused for its credentials (``code`` as the HTTP guard would answer); exit status 2."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def add_token_arg(parser: argparse.ArgumentParser) -> None:
    """``--token-file``: a command that acts as an officer runs with that officer's token, never a name."""
    parser.add_argument("--token-file", type=Path, metavar="PATH",
                        help="file holding the acting principal's bearer token (mode 0600 or stricter; read once)")
    parser.add_argument("--officer", help=argparse.SUPPRESS)  # removed: a name is no credential


async def cli_principal(redis: Redis, args: argparse.Namespace, roles: Iterable[Role], *, command: str) -> Principal:
    """The principal whose token ``--token-file`` holds, checked like the HTTP guard (shape, unrevoked,
    unexpired, role); every refusal is audited as ``cli_refused`` under the operating-system account.

    The file must not be readable by group or others (a token in a world-readable file is everyone's).

    :raises CliRefusedError: no file, an exposed or unreadable file, an unknown/revoked/expired token, a role
        the command does not admit.
    """
    try:
        principal = await _resolve(redis, args, frozenset(roles))
    except CliRefusedError as exc:
        with contextlib.suppress(StoreUnavailableError):  # the refusal stands either way
            await record_privileged(redis, actor=cli_actor(), role="cli", action="cli_refused", obj="cli",
                                    now=datetime.now(UTC), extra={"command": command, "outcome": exc.code})
        raise
    return principal


async def _resolve(redis: Redis, args: argparse.Namespace, roles: frozenset[Role]) -> Principal:
    from gateway.trust.registry import Registry  # the registry audits through this module's callers

    if getattr(args, "officer", None):
        raise CliRefusedError("token_required", "--officer is gone: pass the officer's token with --token-file PATH")
    path: Path | None = getattr(args, "token_file", None)
    if path is None:
        raise CliRefusedError("missing_token", "--token-file PATH is required")
    try:
        with path.open("r", encoding="ascii") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)  # the file read, not a name swapped after
            token = handle.read(256).strip()
    except (OSError, UnicodeDecodeError):
        raise CliRefusedError("invalid_token", f"cannot read {path}") from None
    if mode & 0o077:
        raise CliRefusedError("token_file_exposed", f"{path} is readable by others: chmod 600 {path}")
    if not is_token_shaped(token):
        raise CliRefusedError("invalid_token", "invalid token")
    principal = await Registry(redis).get_principal(hash_token(token))
    if principal is None or not principal.usable(time.time()):
        raise CliRefusedError("invalid_token", "invalid token")  # one answer for unknown, revoked and expired
    if principal.role not in roles:
        raise CliRefusedError("forbidden", "role not permitted")
    return principal
