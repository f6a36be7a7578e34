"""Base45 (RFC 9285): the QR-alphanumeric encoding used by both native codes and EU DCC "HC1:" codes."""

from __future__ import annotations

from crypto.errors import Base45Error

__all__ = ["ALPHABET", "b45decode", "b45encode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {ord(ch): i for i, ch in enumerate(ALPHABET)}


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
    value = _VALUE
    out = bytearray()
    try:
        for i in range(0, size - 2, 3):
            n = value[raw[i]] + value[raw[i + 1]] * 45 + value[raw[i + 2]] * 2025
            if n > 0xFFFF:
                raise Base45Error("base45 triplet out of range")
            out.append(n >> 8)
            out.append(n & 0xFF)
        if size % 3 == 2:
            n = value[raw[-2]] + value[raw[-1]] * 45
            if n > 0xFF:
                raise Base45Error("base45 pair out of range")
            out.append(n)
    except KeyError:
        raise Base45Error("character outside the base45 alphabet") from None
    return bytes(out)
