"""Tiny but valid evidence files built in code (no image library): a PNG, a baseline JPEG and a PDF, each carrying
a marker the tests search for in every stored value."""

from __future__ import annotations

import struct
import zlib

__all__ = ["jpeg", "pdf", "png"]


def png(marker: bytes) -> bytes:
    """A valid 1x1 RGB PNG carrying ``marker`` in a tEXt chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"tEXt", b"Comment\x00" + marker) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
            + chunk(b"IEND", b""))  # fmt: skip


def jpeg(marker: bytes) -> bytes:
    """A valid baseline 8x8 grey JPEG (one all-zero block: DC and AC tables with the one code "0") with ``marker``
    in a comment segment."""

    def segment(kind: int, data: bytes) -> bytes:
        return bytes([0xFF, kind]) + struct.pack(">H", len(data) + 2) + data

    one_code = bytes([1] + [0] * 15) + b"\x00"  # one code of length 1 for the symbol 0
    return (b"\xff\xd8" + segment(0xFE, marker) + segment(0xDB, b"\x00" + b"\x01" * 64)
            + segment(0xC0, b"\x08" + struct.pack(">HH", 8, 8) + b"\x01\x01\x11\x00")
            + segment(0xC4, b"\x00" + one_code) + segment(0xC4, b"\x10" + one_code)
            + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x3f" + b"\xff\xd9")  # fmt: skip


def pdf(marker: bytes) -> bytes:
    """A valid one-page PDF whose content stream shows ``marker``, with a correct cross-reference table."""
    stream = b"BT /F1 12 Tf 10 10 Td (" + marker + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 50] /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    return out + b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
