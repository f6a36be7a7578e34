"""The identity-card index (issue 18): keyed hash of an ID number -> the holder reference, sealed.

A digital sentry reads a resident's identity card instead of a code. The health authority's feed names the
number beside the holder reference (``PUT /v1/status``, ``placegate status load``); the gateway keeps only
``IdCardHasher.of(number)`` (HMAC under a sub-key of the master secret) as the key name and the holder reference
sealed under a sub-key of its own, bound to that key name, so Redis alone links no number to any reference and
a value copied under another key does not open. Each entry gets the status cache's TTL at every write: it expires
with the status it leads to (gateway/keyspace.py ``id_card_key``).
"""

from __future__ import annotations

from collections.abc import Sequence

from crypto.idcard import IdCardHasher
from crypto.sealing import Sealer, SealError
from gateway.keyspace import id_card_key
from gateway.redisio import Command

__all__ = ["ID_CARD_SEAL_LABEL", "IdCardIndex"]

# Its own sealing sub-key: the index is one purpose; a leaked case-sealing key does not open it (crypto/kdf.py).
ID_CARD_SEAL_LABEL = b"placegate/id-card-index/v1"


class IdCardIndex:
    """Builds the index's commands and reads its replies; the number itself is hashed here and then dropped."""

    __slots__ = ("_hasher", "_sealer", "_ttl_s")

    def __init__(self, master: bytes, ttl_s: int) -> None:
        self._hasher = IdCardHasher(master)
        self._sealer = Sealer(master, label=ID_CARD_SEAL_LABEL)
        self._ttl_s = ttl_s

    def __repr__(self) -> str:
        return "IdCardIndex(***)"

    def digest(self, number: str) -> str:
        """The keyed hash of a normalised number (``policy.idcard.normalise_id_card``)."""
        return self._hasher.of(number)

    def entries(self, pairs: Sequence[tuple[str, str]]) -> list[Command]:
        """One SET per (normalised number, holder reference): the latest feed record naming a number wins."""
        commands: list[Command] = []
        for number, holder_ref in pairs:
            digest = self._hasher.of(number)
            sealed = self._sealer.seal(holder_ref, bound_to=_binding(digest))
            commands.append(("SET", id_card_key(digest), sealed, "EX", self._ttl_s))
        return commands

    @staticmethod
    def lookup(digest: str) -> Command:
        return ("GET", id_card_key(digest))

    def holder_of(self, digest: str, reply: object) -> str | None:
        """The holder reference of a GET reply; ``None`` for no entry or one that does not open under its name."""
        if not isinstance(reply, bytes | bytearray):
            return None
        try:
            return self._sealer.open(bytes(reply).decode("ascii", "replace"), bound_to=_binding(digest))
        except SealError:
            return None


def _binding(digest: str) -> str:
    return "idcard:" + digest
