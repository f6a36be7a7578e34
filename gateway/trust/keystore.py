"""The local key store of issuer keys this installation generated (demo and test set-ups): private halves in the
data directory (0700 / 0600), public halves on the trust list. Real deployments import the authorities' public
keys instead and hold no private key here."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.keys import Alg, SigningKey
from crypto.trust import TrustedKey, Usage
from gateway.settings import Settings
from gateway.trust.registry import Registry

__all__ = ["latest_signing_key", "new_issuer_key"]


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
