"""A strict, bounded CBOR decoder (RFC 8949) and the small encoder COSE needs for its Sig_structure.

The decoder reads untrusted bytes from a QR code, so every limit is explicit: nesting depth, total item count,
and declared lengths that are checked against the bytes actually remaining before anything is read (a 9-byte
head can declare 2**64 elements; nothing is ever pre-allocated from it).  Duplicate map keys are rejected
(§5.6: a decoder for a protocol that relies on unique keys must not silently pick one).  Tags are kept as
``CborTag`` values except bignums (tags 2/3, §3.4.3), which become ``int``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from crypto.dcc_errors import CborError

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEMS",
    "CborSimple",
    "CborTag",
    "CborValue",
    "decode_cbor",
    "encode_cbor",
]

DEFAULT_MAX_DEPTH = 16
DEFAULT_MAX_ITEMS = 10_000


@dataclass(frozen=True, slots=True)
class CborTag:
    """A tagged data item (major type 6) other than a bignum."""

    tag: int
    value: CborValue


@dataclass(frozen=True, slots=True)
class CborSimple:
    """A simple value without a Python counterpart: ``undefined`` (23) or an unassigned one (§3.3)."""

    value: int


CborValue: TypeAlias = (
    "int | float | bytes | str | bool | list[CborValue] | dict[CborKey, CborValue] | CborTag | CborSimple"
    " | None"
)
CborKey: TypeAlias = "int | float | bytes | str | bool | CborSimple | None"

_BREAK = object()
_INDEFINITE = -1
_MAX_STRING_CHUNKS = 4096
_KEY_TYPES = (int, float, bytes, str, bool, type(None), CborSimple)


class _Decoder:
    __slots__ = ("_data", "_items", "_max_depth", "_max_items", "pos")

    def __init__(self, data: bytes, max_depth: int, max_items: int) -> None:
        self._data = data
        self._max_depth = max_depth
        self._max_items = max_items
        self._items = 0
        self.pos = 0

    def _take(self, size: int) -> bytes:
        end = self.pos + size
        if size < 0 or end > len(self._data):
            raise CborError("declared length runs past the end of the input")
        chunk = self._data[self.pos : end]
        self.pos = end
        return chunk

    def _head(self) -> tuple[int, int, int]:
        """Read an initial byte and its argument; returns (major, additional info, argument)."""
        if self.pos >= len(self._data):
            raise CborError("input ends inside a data item")
        initial = self._data[self.pos]
        self.pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info <= 27:
            if major == 7:
                return major, info, 0  # the float / simple payload is read by the caller
            return major, info, int.from_bytes(self._take(1 << (info - 24)), "big")
        if info == 31:
            return major, info, _INDEFINITE
        raise CborError("reserved additional information value (RFC 8949 §3)")

    def _count(self) -> None:
        self._items += 1
        if self._items > self._max_items:
            raise CborError("too many data items")

    def item(self, depth: int) -> CborValue:
        value = self._item(depth)
        if value is _BREAK:
            raise CborError("break stop code outside an indefinite-length item")
        return value  # type: ignore[return-value]

    def _item(self, depth: int) -> CborValue | object:
        if depth > self._max_depth:
            raise CborError("nesting too deep")
        major, info, arg = self._head()
        if major == 7:
            return self._simple_or_float(info)
        self._count()
        if major == 0:
            if arg == _INDEFINITE:
                raise CborError("indefinite length on an integer")
            return arg
        if major == 1:
            if arg == _INDEFINITE:
                raise CborError("indefinite length on an integer")
            return -1 - arg
        if major in (2, 3):
            return self._string(major, arg)
        if major == 4:
            return self._array(arg, depth)
        if major == 5:
            return self._map(arg, depth)
        return self._tag(arg, depth)

    def _simple_or_float(self, info: int) -> CborValue | object:
        if info == 31:
            return _BREAK
        self._count()
        if info < 20:
            return CborSimple(info)
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 23:
            return CborSimple(23)
        if info == 24:
            simple = self._take(1)[0]
            if simple < 32:
                raise CborError("two-byte simple value below 32 is not well-formed (RFC 8949 §3.3)")
            return CborSimple(simple)
        if info == 25:
            return float(struct.unpack(">e", self._take(2))[0])
        if info == 26:
            return float(struct.unpack(">f", self._take(4))[0])
        return float(struct.unpack(">d", self._take(8))[0])

    def _string(self, major: int, arg: int) -> bytes | str:
        if arg != _INDEFINITE:
            raw = self._take(arg)
        else:
            chunks: list[bytes] = []
            while True:
                if self.pos >= len(self._data):
                    raise CborError("indefinite-length string is not terminated")
                if self._data[self.pos] == 0xFF:
                    self.pos += 1
                    break
                chunk_major, _, size = self._head()
                # §3.2.3: chunks are definite-length strings of the same major type.
                if chunk_major != major or size == _INDEFINITE:
                    raise CborError("bad chunk in an indefinite-length string")
                chunks.append(self._take(size))
                if len(chunks) > _MAX_STRING_CHUNKS:
                    raise CborError("too many string chunks")
            raw = b"".join(chunks)
        if major == 2:
            return raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CborError("text string is not valid UTF-8 (RFC 8949 §3.1)") from None

    def _array(self, arg: int, depth: int) -> list[CborValue]:
        out: list[CborValue] = []
        if arg == _INDEFINITE:
            while (value := self._item(depth + 1)) is not _BREAK:
                out.append(value)  # type: ignore[arg-type]
            return out
        if arg > len(self._data) - self.pos:
            raise CborError("array declares more elements than bytes remain")
        for _ in range(arg):
            out.append(self.item(depth + 1))
        return out

    def _map(self, arg: int, depth: int) -> dict[CborKey, CborValue]:
        out: dict[CborKey, CborValue] = {}
        seen: set[tuple[type, object]] = set()
        if arg != _INDEFINITE and arg * 2 > len(self._data) - self.pos:
            raise CborError("map declares more pairs than bytes remain")
        remaining = arg
        while remaining != 0:
            key = self._item(depth + 1)
            if key is _BREAK:
                if arg != _INDEFINITE:
                    raise CborError("break stop code inside a definite-length map")
                break
            value = self.item(depth + 1)
            if not isinstance(key, _KEY_TYPES):
                raise CborError("unsupported map key type")
            typed = (type(key), key)
            if typed in seen:
                raise CborError("duplicate map key (RFC 8949 §5.6)")
            seen.add(typed)
            if key in out:
                # 1, 1.0 and true are distinct CBOR keys but one Python key: refuse rather than merge them.
                raise CborError("map keys collide in the host representation")
            out[key] = value
            remaining -= 1
        return out

    def _tag(self, number: int, depth: int) -> CborValue:
        if number == _INDEFINITE:
            raise CborError("indefinite length on a tag")
        value = self.item(depth + 1)
        # §3.4: a tag whose content has the wrong type is "invalid"; refuse the ones whose type is fixed.
        if number in (2, 3):
            if not isinstance(value, bytes):
                raise CborError("bignum tag content is not a byte string")
            magnitude = int.from_bytes(value, "big")
            return magnitude if number == 2 else -1 - magnitude
        if number == 0 and not isinstance(value, str):
            raise CborError("tag 0 content is not a text string")
        if number == 1 and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise CborError("tag 1 content is not a number")
        return CborTag(number, value)


def decode_cbor(
    data: bytes,
    *,
    allow_trailing: bool = False,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> CborValue:
    """Decode exactly one CBOR data item.

    :param allow_trailing: accept bytes after the item (a CBOR sequence, RFC 8742) instead of refusing them.
    :raises CborError: not well-formed, invalid UTF-8 / tag content, duplicate keys, or a limit hit.
    """
    decoder = _Decoder(bytes(data), max_depth, max_items)
    value = decoder.item(0)
    if not allow_trailing and decoder.pos != len(data):
        raise CborError("trailing bytes after the data item")
    return value


def _encode_head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([(major << 5) | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([(major << 5) | info]) + arg.to_bytes(size, "big")
    raise CborError("integer too large for a CBOR head")


def encode_cbor(value: object) -> bytes:
    """Encode a value with definite lengths and shortest heads (RFC 8949 §4.2.1 preferred serialization).

    Map keys keep their insertion order; floats are always written as doubles.
    """
    out = bytearray()
    _encode_into(value, out)
    return bytes(out)


def _encode_into(value: object, out: bytearray) -> None:
    if value is False or value is True or value is None:
        out.append({False: 0xF4, True: 0xF5, None: 0xF6}[value])
    elif isinstance(value, int):
        out += _encode_head(0, value) if value >= 0 else _encode_head(1, -1 - value)
    elif isinstance(value, float):
        out += b"\xfb" + struct.pack(">d", value) if not math.isnan(value) else b"\xf9\x7e\x00"
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out += _encode_head(2, len(raw)) + raw
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out += _encode_head(3, len(raw)) + raw
    elif isinstance(value, CborTag):
        out += _encode_head(6, value.tag)
        _encode_into(value.value, out)
    elif isinstance(value, CborSimple):
        out += _encode_head(7, value.value) if value.value < 24 else bytes([0xF8, value.value])
    elif isinstance(value, Mapping):
        out += _encode_head(5, len(value))
        for key, item in value.items():
            _encode_into(key, out)
            _encode_into(item, out)
    elif isinstance(value, Sequence):
        out += _encode_head(4, len(value))
        for item in value:
            _encode_into(item, out)
    else:
        raise CborError(f"cannot encode {type(value).__name__}")
