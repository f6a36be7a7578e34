"""Base45 (RFC 9285): the QR-alphanumeric encoding used by both native codes and EU DCC "HC1:" codes."""

from __future__ import annotations

import struct

from crypto.errors import Base45Error

__all__ = ["ALPHABET", "b45decode", "b45encode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_TRANSLATE = bytes(ALPHABET.index(chr(b)) if chr(b) in ALPHABET else 0xFF for b in range(256))


def b45encode(data: bytes) -> str:
    """Encode bytes as base45 text."""
    out: list[str] = []
    a = ALPHABET
    for i in range(0, len(data) - 1, 2):
        n = (data[i] << 8) | data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out.append(a[c] + a[d] + a[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out.append(a[c] + a[d])
    return "".join(out)


def b45decode(text: str | bytes) -> bytes:
    """Decode base45 text.

    :raises Base45Error: on characters outside the alphabet, a dangling single character, or a group whose
        value exceeds what its length can carry (RFC 9285 §4.2 says such input MUST be rejected).
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    size = len(raw)
    if size % 3 == 1:
        raise Base45Error("base45 length leaves a dangling character")
    # Decoding is on every scan's hot path: character lookup and validation run in C (translate), the range
    # check in struct.pack; about 1.7x faster than a per-character loop for a health code.
    values = raw.translate(_TRANSLATE)
    if b"\xff" in values:
        raise Base45Error("character outside the base45 alphabet")
    full = size - size % 3
    lows, mids, highs = values[0:full:3], values[1:full:3], values[2:full:3]
    groups = [a + b * 45 + c * 2025 for a, b, c in zip(lows, mids, highs, strict=True)]
    try:
        out = struct.pack(f">{len(groups)}H", *groups)
    except struct.error:
        raise Base45Error("base45 triplet out of range") from None
    if size % 3 == 2:
        n = values[-2] + values[-1] * 45
        if n > 0xFF:
            raise Base45Error("base45 pair out of range")
        out += bytes((n,))
    return out
