"""What a case accepts as evidence (issue 15, "the people around a case"): photos (JPEG, PNG) and PDF documents,
at most 2 MB each and ``ATTACHMENTS_MAX`` per case, the type decided by the content and never by what the client
declares (a declared type, or a file name, is a claim; the bytes are what a viewer will parse).

The checks are structural and cheap: the format's signature at the start and its terminator at the end (PNG's
IHDR chunk first and IEND chunk last, JPEG's SOI and EOI markers, PDF's header and ``%%EOF`` trailer), so a text
file renamed ``.png``, an HTML page or a script with a PNG signature glued on is refused. It is not a decoder: a
structurally framed file with a corrupt inside is stored and answered with ``X-Content-Type-Options: nosniff`` and
``Content-Disposition: attachment``, so no browser renders it in the gateway's origin.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ATTACHMENTS_MAX", "ATTACHMENT_MAX_BYTES", "EXTENSIONS", "sniff_attachment"]

ATTACHMENT_MAX_BYTES: Final = 2 * 1024 * 1024  # 2 MB per file (issue 15)
ATTACHMENTS_MAX: Final = 20  # per case: evidence of one incident, not a photo archive
EXTENSIONS: Final = {"image/png": "png", "image/jpeg": "jpg", "application/pdf": "pdf"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # length 0, type, CRC: the whole last chunk
_PDF_TAIL = 1024  # the trailer's %%EOF must lie in the last KiB (ISO 32000-1 §7.5.5 allows trailing whitespace)


def sniff_attachment(data: bytes) -> str | None:
    """The media type of ``data`` if it is framed as a PNG, a JPEG or a PDF, else ``None``."""
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and data.endswith(_PNG_IEND):
        return "image/png"
    if len(data) >= 4 and data[:3] == b"\xff\xd8\xff" and data.endswith(b"\xff\xd9"):
        return "image/jpeg"
    if data[:5] == b"%PDF-" and data[5:7] in (b"1.", b"2.") and b"%%EOF" in data[-_PDF_TAIL:]:
        return "application/pdf"
    return None
