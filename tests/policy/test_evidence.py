"""What a case accepts as evidence, decided by the bytes alone (policy/evidence.py)."""

from __future__ import annotations

import pytest

from policy.evidence import sniff_attachment
from tests.evidence_files import jpeg as _jpeg
from tests.evidence_files import pdf as _pdf
from tests.evidence_files import png as _png


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (_png(b"x"), "image/png"),
        (_jpeg(b"x"), "image/jpeg"),
        (_pdf(b"x"), "application/pdf"),
        (_pdf(b"x") + b"\n" * 200, "application/pdf"),  # whitespace after %%EOF is allowed
        (_png(b"x") + b"<script>", None),  # anything after IEND: not a framed PNG
        (_png(b"x")[:-12], None),  # cut short
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, None),  # a signature and nothing of a PNG
        (_jpeg(b"x")[:-2], None),
        (b"%PDF-9.9\n%%EOF", None),  # no such PDF version
        (b"%PDF-1.7\n" + b" " * 2048 + b"%%EOF" + b" " * 2048, None),  # the trailer is not in the last KiB
        (b"GIF89a\x01\x00\x01\x00", None),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"", None),
    ],
)
def test_the_content_decides_the_type(data: bytes, kind: str | None) -> None:
    assert sniff_attachment(data) == kind
