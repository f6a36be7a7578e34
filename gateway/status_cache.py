"""The compact holder-status cache: bucketed hashes with packed values, last-writer-wins by ``updated_at``.

Layout (DESIGN.md "Status cache": 25 M holders in about 1 GB): a holder maps, through a keyed BLAKE2b of the
holder reference, to one of ``status_buckets`` small hashes (listpack-encoded) and an 8-byte field; the value
is 9 packed bytes. The raw holder reference is never stored: without the secret the fields cannot be linked
to a reference.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import UTC, datetime

from crypto.native import Colour
from gateway.keys import status_bucket_key
from policy.status import HolderStatus, TestResult

__all__ = [
    "UPSERT_LUA", "UPSERT_SHA", "StatusLocator", "StatusRecord", "derive_key", "pack_fields", "pack_status",
    "unpack_status",
]

_PACK = struct.Struct(">IIB")  # updated_at, tested_at (0 = never), flags
_RESULTS = (TestResult.NONE, TestResult.NEGATIVE, TestResult.POSITIVE)
_RESULT_BITS = {r: i for i, r in enumerate(_RESULTS)}

# Last-writer-wins by the record's own updated_at (first 4 bytes, big-endian). Compared as numbers, never as
# strings: Lua string comparison follows the server's collation locale.
UPSERT_LUA = """
local function ts(s)
  local a, b, c, d = string.byte(s, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end
local ttl = tonumber(ARGV[1])
local out = {}
local at = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[at]); at = at + 1
  local wrote = false
  for _ = 1, n do
    -- one argument per record, field (8 bytes) then value: half the arguments to encode and parse
    local rec = ARGV[at]; at = at + 1
    local f, v = string.sub(rec, 1, 8), string.sub(rec, 9)
    local old = redis.call('HGET', KEYS[k], f)
    if (not old) or ts(v) > ts(old) then
      redis.call('HSET', KEYS[k], f, v); out[#out + 1] = '1'; wrote = true
    else
      out[#out + 1] = '0'
    end
  end
  if wrote then redis.call('EXPIRE', KEYS[k], ttl) end
end
return table.concat(out)
"""
UPSERT_SHA = hashlib.sha1(UPSERT_LUA.encode()).hexdigest()


def derive_key(master: bytes, label: bytes) -> bytes:
    """A purpose-bound sub-key (keyed BLAKE2b as a PRF), so one leaked sub-key exposes one purpose only."""
    return hashlib.blake2b(label, key=master, digest_size=32).digest()


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """One line of the health authority feed, validated."""

    holder_ref: str
    status: HolderStatus


def pack_status(status: HolderStatus) -> bytes:
    tested = 0 if status.tested_at is None else int(status.tested_at.timestamp())
    return pack_fields(int(status.updated_at.timestamp()), tested, status.colour, status.test_result, status.vaccinated)


def pack_fields(updated_s: int, tested_s: int, colour: Colour, result: TestResult, vaccinated: bool) -> bytes:
    """The 9-byte value: updated_at, tested_at (0 = never), flags (colour, test result, vaccinated)."""
    flags = int(colour) | (_RESULT_BITS[result] << 2) | (0x10 if vaccinated else 0)
    return _PACK.pack(updated_s, tested_s, flags)


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

    __slots__ = ("_buckets", "_key")

    def __init__(self, master: bytes, buckets: int) -> None:
        self._key = derive_key(master, b"placegate/status-cache/v1")
        self._buckets = buckets

    def locate(self, holder_ref: str) -> tuple[str, bytes]:
        digest = hashlib.blake2b(holder_ref.encode(), key=self._key, digest_size=12).digest()
        bucket = int.from_bytes(digest[:4], "big") % self._buckets
        return status_bucket_key(bucket), digest[4:]
