"""Shared plumbing of the CLI: settings, the admin Redis session (embedded or configured) and the key store."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from crypto.keys import Alg, SigningKey
from crypto.trust import TrustedKey, Usage
from gateway.embedded import EmbeddedServer, socket_alive
from gateway.redisio import connect_redis
from gateway.settings import Settings
from gateway.trust.registry import Registry

__all__ = [
    "add_common_args",
    "admin_redis",
    "embedded_dir",
    "latest_signing_key",
    "new_issuer_key",
    "run",
    "settings_from",
]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis URL (default: the embedded server in the data directory)")
    parser.add_argument("--data-dir", type=Path, help="data directory (default .placegate or PLACEGATE_DATA_DIR)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment first, then command-line overrides."""
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
    return settings


def embedded_dir(settings: Settings) -> Path:
    return settings.data_dir / "redis"


@contextlib.asynccontextmanager
async def admin_redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client for an admin command: the configured Redis, the running embedded server, or a temporary one."""
    server: EmbeddedServer | None = None
    if settings.redis_url:
        url = settings.redis_url
    else:
        embedded = EmbeddedServer(embedded_dir(settings))
        if not socket_alive(embedded.socket_path):
            server = embedded.start()
        url = embedded.url
    redis = connect_redis(url)
    try:
        yield redis
    finally:
        await redis.aclose()
        if server is not None:
            server.stop()


def run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


def _keys_dir(settings: Settings) -> Path:
    path = settings.data_dir / "keys"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


async def new_issuer_key(
    registry: Registry, settings: Settings, *, usage: Usage, alg: Alg, days: int = 365
) -> SigningKey:
    """Generate an issuer key, keep the private half in the data directory (0600), trust the public half."""
    key = SigningKey.generate(alg)
    path = _keys_dir(settings) / f"{usage.value}-{key.kid.hex()}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.to_pem())
    now = datetime.now(UTC)
    trusted = TrustedKey.create(
        key.public_key(), usage=usage, not_before=now - timedelta(minutes=5), not_after=now + timedelta(days=days)
    )
    await registry.put_trusted_key(trusted)
    return key


async def latest_signing_key(registry: Registry, settings: Settings, usage: Usage) -> SigningKey | None:
    """The newest local private key of this usage that the trust list still accepts now."""
    _, trust = await registry.load_trust()
    now = datetime.now(UTC)
    candidates = sorted(_keys_dir(settings).glob(f"{usage.value}-*.pem"), key=lambda p: p.stat().st_mtime)
    for path in reversed(candidates):
        key = SigningKey.from_pem(path.read_bytes())
        entry = trust.get(key.kid)
        usable = entry is not None and not entry.revoked and entry.usage is usage
        if entry is not None and usable and entry.not_before <= now <= entry.not_after:
            return key
    return None
