"""Purpose-bound sub-keys derived from the one master secret (status cache, sealing, DCC replay memory)."""

from __future__ import annotations

import hashlib

__all__ = ["derive_key"]


def derive_key(master: bytes, label: bytes) -> bytes:
    """A purpose-bound sub-key (keyed BLAKE2b as a PRF), so one leaked sub-key exposes one purpose only."""
    return hashlib.blake2b(label, key=master, digest_size=32).digest()
