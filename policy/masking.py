"""Masking of personal identifiers in free text (notes, reasons) before anything stores it (PIPL Art. 6, 19:
collect and keep the minimum; issue 14 "Notes are personal data").

``mask_personal(text)`` replaces, anywhere in a text:

- ``[ID]``: a resident identity card number: 18 characters, 17 digits and a GB 11643-1999 check character
  (``0``-``9`` or ``X``/``x``) that is right for them, or the 15-digit first-generation form whose ``yymmdd`` is a
  real calendar date (19yy);
- ``[NUMBER]``: any other run of 15 or more digits (an 18-digit run whose check digit is wrong, a bank card
  number): a mistyped ID number names its holder as well as the right one does, and no case note needs such a
  number, so it is masked under its own label rather than kept;
- ``[PHONE]``: a mainland mobile number, 11 digits ``1[3-9]xxxxxxxxx`` written whole or as 3-4-4 groups joined
  by single spaces or hyphens, optionally after ``+86``, ``86`` or ``0086`` (and one space or hyphen);
- ``[EMAIL]``: an e-mail address (ASCII local part and dotted domain with an alphabetic top-level label).

Boundaries: a number is matched only as a whole digit run (no digit directly before or after it), so the
digits inside a longer run are never partly masked. Full-width forms (U+FF01-U+FF5E: digits, plus, at sign, X...;
the ideographic space U+3000) count as their ASCII counterparts; the normalisation is one code point for one,
so the text that is not masked stays exactly as written. Masking is idempotent (no label contains a digit or ``@``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

__all__ = ["LABELS", "MaskResult", "id_check_char", "mask_personal", "valid_id15", "valid_id18"]

# GB 11643-1999: check character of the 17 leading digits (ISO 7064 MOD 11-2).
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

LABELS = {"id": "[ID]", "number": "[NUMBER]", "phone": "[PHONE]", "email": "[EMAIL]"}

# Full-width ASCII (U+FF01-U+FF5E) and the ideographic space, one code point for one.
_HALF = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9])",
    re.ASCII,
)
_ID18 = re.compile(r"(?<!\d)\d{17}[\dXx](?!\d)", re.ASCII)
_RUN = re.compile(r"(?<!\d)\d{15,}(?!\d)", re.ASCII)
_PHONE = re.compile(r"(?<![\d+])(?:(?:\+86|0086|86)[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?!\d)", re.ASCII)


@dataclass(frozen=True, slots=True)
class MaskResult:
    """The masked text and how many of each kind were masked (keys of ``LABELS``, zero counts included)."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def masked(self) -> int:
        return sum(self.counts.values())


def id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character of 17 ASCII digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def valid_id18(candidate: str) -> bool:
    """Whether 18 characters are 17 ASCII digits and their right check character (``x`` taken as ``X``)."""
    return (
        len(candidate) == 18
        and candidate[:17].isascii()
        and candidate[:17].isdigit()
        and candidate[17].upper() == id_check_char(candidate[:17])
    )


def valid_id15(run: str) -> bool:
    """Whether 15 ASCII digits are a first-generation ID number: their ``yymmdd`` is a real date (19yy)."""
    if len(run) != 15 or not (run.isascii() and run.isdigit()):
        return False
    try:
        date(1900 + int(run[6:8]), int(run[8:10]), int(run[10:12]))
    except ValueError:
        return False
    return True


def mask_personal(text: str) -> MaskResult:
    """Mask ID-card numbers, long digit runs, mobile numbers and e-mail addresses in ``text``."""
    norm = text.translate(_HALF)
    spans: list[tuple[int, int, str]] = []

    def take(start: int, end: int, kind: str) -> None:
        if all(end <= s or start >= e for s, e, _ in spans):
            spans.append((start, end, kind))

    # Priority order: an address swallows the digits in it; an ID number is an ID before it is a long run.
    for m in _EMAIL.finditer(norm):
        take(m.start(), m.end(), "email")
    for m in _ID18.finditer(norm):
        if valid_id18(m.group()):
            take(m.start(), m.end(), "id")
    for m in _RUN.finditer(norm):
        take(m.start(), m.end(), "id" if len(m.group()) == 15 and valid_id15(m.group()) else "number")
    for m in _PHONE.finditer(norm):
        take(m.start(), m.end(), "phone")
    counts = dict.fromkeys(LABELS, 0)
    if not spans:
        return MaskResult(text, counts)
    out: list[str] = []
    at = 0
    for start, end, kind in sorted(spans):
        out += [text[at:start], LABELS[kind]]
        counts[kind] += 1
        at = end
    out.append(text[at:])
    return MaskResult("".join(out), counts)
