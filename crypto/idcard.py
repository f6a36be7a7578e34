"""The keyed hash under which the gateway finds a holder by identity card number (issue 18).

``IdCardHasher(master).of(number)``: HMAC-SHA256 under a sub-key of the master secret (``crypto/kdf.py``), first
128 bits in hex. The number space is small (a region, a birth date, three digits and a check character: under
10^11 numbers of living people), so an unkeyed hash would be reversed by enumeration; with the key, whoever holds
only Redis cannot recompute or reverse it. Its own sub-key: the holder-reference index
(``gateway/status/idcards.py``) is one purpose, and a leaked sub-key of another purpose does not open it.

``IdCardHolder`` is what such a match proves to the scan path: a holder whose status is live, with no code and
so no colour signed at issue.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from crypto.kdf import derive_key

__all__ = ["ID_CARD_LABEL", "IdCardHasher", "IdCardHolder"]

ID_CARD_LABEL = b"placegate/id-card/v1"


class IdCardHasher:
    """``of(number)``: the keyed hash (32 hex) of a normalised 18-character number."""

    __slots__ = ("_key",)

    def __init__(self, master: bytes) -> None:
        self._key = derive_key(master, ID_CARD_LABEL)

    def __repr__(self) -> str:
        return "IdCardHasher(***)"

    def of(self, number: str) -> str:
        return hmac.digest(self._key, number.encode(), "sha256").hex()[:32]


@dataclass(frozen=True, slots=True)
class IdCardHolder:
    """A holder found through the identity-card index: ``digest`` is the number's keyed hash, never the number."""

    digest: str
