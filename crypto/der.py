"""A minimal DER (X.690) reader for the one thing the X.509 library may refuse to give us: the EKU OID list.

``cryptography`` parses all extensions at once and refuses a certificate whose extended-key-usage extension is
an empty SEQUENCE (RFC 5280 §4.2.1.12 says SIZE (1..MAX)); such DSCs exist in the DCC test data and in the
field.  An empty EKU names no DCC key-usage OID, so its meaning is clear; this reader recovers just the OIDs
from the TBSCertificate bytes and refuses anything else that is malformed.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["DerError", "extended_key_usage_oids"]

_SEQUENCE = 0x30
_OID = 0x06
_OCTET_STRING = 0x04
_EXTENSIONS = 0xA3  # [3] EXPLICIT, constructed (RFC 5280 §4.1)
_EKU_OID = "2.5.29.37"
_MAX_LENGTH_OCTETS = 4


class DerError(ValueError):
    """The DER input is not well-formed."""


def _tlvs(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """Yield (tag, content start, content end) for each element in data[start:end]."""
    pos = start
    while pos < end:
        if pos + 2 > end:
            raise DerError("truncated element")
        tag, length = data[pos], data[pos + 1]
        pos += 2
        if tag & 0x1F == 0x1F:
            raise DerError("multi-byte tags do not occur in a certificate")
        if length & 0x80:
            size = length & 0x7F
            if size == 0 or size > _MAX_LENGTH_OCTETS or pos + size > end:
                raise DerError("bad long-form length")
            length = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        if pos + length > end:
            raise DerError("element runs past its parent")
        yield tag, pos, pos + length
        pos += length


def _only(data: bytes, start: int, end: int, tag: int) -> tuple[int, int]:
    elements = list(_tlvs(data, start, end))
    if len(elements) != 1 or elements[0][0] != tag:
        raise DerError("unexpected structure")
    return elements[0][1], elements[0][2]


def _oid_text(content: bytes) -> str:
    if not content or content[-1] & 0x80:
        raise DerError("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for byte in content:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)  # X.690 §8.19.4: the first two arcs share one subidentifier
    return ".".join(str(arc) for arc in (first, arcs[0] - 40 * first, *arcs[1:]))


def extended_key_usage_oids(tbs: bytes) -> list[str] | None:
    """The EKU OIDs of a DER TBSCertificate, or None when it has no EKU extension.

    :raises DerError: the TBSCertificate, its extensions or the EKU value are not well-formed DER.
    """
    body_start, body_end = _only(tbs, 0, len(tbs), _SEQUENCE)
    for tag, start, end in _tlvs(tbs, body_start, body_end):
        if tag != _EXTENSIONS:
            continue
        list_start, list_end = _only(tbs, start, end, _SEQUENCE)
        for ext_tag, ext_start, ext_end in _tlvs(tbs, list_start, list_end):
            if ext_tag != _SEQUENCE:
                raise DerError("extension is not a SEQUENCE")
            parts = list(_tlvs(tbs, ext_start, ext_end))
            if not parts or parts[0][0] != _OID or parts[-1][0] != _OCTET_STRING:
                raise DerError("extension lacks its OID or value")
            if _oid_text(tbs[parts[0][1] : parts[0][2]]) != _EKU_OID:
                continue
            value = tbs[parts[-1][1] : parts[-1][2]]
            seq_start, seq_end = _only(value, 0, len(value), _SEQUENCE)
            oids: list[str] = []
            for oid_tag, oid_start, oid_end in _tlvs(value, seq_start, seq_end):
                if oid_tag != _OID:
                    raise DerError("EKU member is not an OBJECT IDENTIFIER")
                oids.append(_oid_text(value[oid_start:oid_end]))
            return oids
    return None
