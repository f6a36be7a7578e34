"""Sealing of holder references that a case's follow-up needs (AES-256-GCM).

The raw holder reference never reaches Redis in clear (DESIGN.md "Privacy by construction"); a case carries
it sealed, and opening it is an audited read of personal data.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.kdf import derive_key

__all__ = ["SealError", "Sealer"]

_PREFIX = "s1."
_AAD = b"placegate/holder-ref/v1"


class SealError(Exception):
    code = "unseal_failed"


class Sealer:
    __slots__ = ("_aead",)

    def __init__(self, master: bytes) -> None:
        self._aead = AESGCM(derive_key(master, b"placegate/seal/v1"))

    def seal(self, plain: str) -> str:
        nonce = os.urandom(12)
        return _PREFIX + base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, plain.encode(), _AAD)).decode()

    def open(self, sealed: str) -> str:
        """Recover the holder reference; call only through the audited read path.

        :raises SealError: when the value is not a sealed reference under this key.
        """
        if not sealed.startswith(_PREFIX):
            raise SealError("not a sealed value")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], _AAD).decode()
        except (ValueError, InvalidTag) as exc:
            raise SealError("cannot open sealed value") from exc
