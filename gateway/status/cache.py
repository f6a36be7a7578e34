"""The compact holder-status cache: bucketed hashes with packed values, last-writer-wins by ``updated_at``.

Layout (the bar: 25 M holders in about 1 GB): a holder maps, through a keyed BLAKE2b of the
holder reference, to one of ``status_buckets`` small hashes (listpack-encoded) and an 8-byte field; the value
is 9 packed bytes. The raw holder reference is never stored: without the secret the fields cannot be linked
to a reference.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from crypto.kdf import derive_key
from crypto.native import Colour
from gateway.keyspace import status_bucket_key
from policy.status import HolderStatus, TestResult

__all__ = [
    "StatusLocator", "StatusRecord", "pack_columns", "pack_fields",
    "pack_flags", "pack_status", "unpack_status",
]

_PACK = struct.Struct(">IIB")  # updated_at, tested_at (0 = never), flags
_RESULTS = (TestResult.NONE, TestResult.NEGATIVE, TestResult.POSITIVE)
_RESULT_BITS = {r: i for i, r in enumerate(_RESULTS)}

@dataclass(frozen=True, slots=True)
class StatusRecord:
    """One line of the health authority feed, validated."""

    holder_ref: str
    status: HolderStatus
    # The holder's identity card number, normalised (issue 18): only on its way to the index's keyed hash
    # (gateway/status/idcards.py), never stored as it is.
    id_card: str | None = None


def pack_status(status: HolderStatus) -> bytes:
    tested = 0 if status.tested_at is None else int(status.tested_at.timestamp())
    return pack_fields(int(status.updated_at.timestamp()), tested, status.colour, status.test_result, status.vaccinated)


def pack_flags(colour: Colour, result: TestResult, vaccinated: bool) -> int:
    """The value's last byte: colour, test result and vaccinated."""
    return int(colour) | (_RESULT_BITS[result] << 2) | (0x10 if vaccinated else 0)


def pack_fields(updated_s: int, tested_s: int, colour: Colour, result: TestResult, vaccinated: bool) -> bytes:
    """The 9-byte value: updated_at, tested_at (0 = never), flags (colour, test result, vaccinated)."""
    return _PACK.pack(updated_s, tested_s, pack_flags(colour, result, vaccinated))


def pack_columns(updated_s: Iterable[int], tested_s: Iterable[int], flags: Iterable[int]) -> list[bytes]:
    """``pack_fields`` over columns, with flags from ``pack_flags``: the bulk loader's path."""
    return list(map(_PACK.pack, updated_s, tested_s, flags))


def unpack_status(raw: bytes) -> HolderStatus | None:
    """Decode a packed value; ``None`` for a value this version cannot read (treated as unknown status)."""
    if len(raw) != _PACK.size:
        return None
    updated, tested, flags = _PACK.unpack(raw)
    colour, result = flags & 0x3, (flags >> 2) & 0x3
    if colour > Colour.RED or result >= len(_RESULTS):
        return None
    return HolderStatus(
        colour=Colour(colour),
        updated_at=datetime.fromtimestamp(updated, UTC),
        tested_at=datetime.fromtimestamp(tested, UTC) if tested else None,
        test_result=_RESULTS[result],
        vaccinated=bool(flags & 0x10),
    )


class StatusLocator:
    """Maps a holder reference to (bucket key, field) with a keyed hash."""

    __slots__ = ("_buckets", "_hasher", "_key")

    def __init__(self, master: bytes, buckets: int) -> None:
        self._key = derive_key(master, b"placegate/status-cache/v1")
        self._buckets = buckets
        self._hasher = hashlib.blake2b(key=self._key, digest_size=12)

    @property
    def buckets(self) -> int:
        return self._buckets

    def hasher(self) -> hashlib.blake2b:
        """The keyed hash before any input: ``copy()`` it per holder (cheaper than keying a new one each time)."""
        return self._hasher

    def locate(self, holder_ref: str) -> tuple[str, bytes]:
        digest = hashlib.blake2b(holder_ref.encode(), key=self._key, digest_size=12).digest()
        bucket = int.from_bytes(digest[:4], "big") % self._buckets
        return status_bucket_key(bucket), digest[4:]
