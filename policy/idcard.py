"""The resident identity card number a digital sentry reads (GB 11643-1999), validated and normalised.

The gateway takes the number only to find the holder's status: the route validates it here, hashes it at once
(``crypto/idcard.py``) and drops it. The check-digit arithmetic is ``policy/masking.py``'s (one implementation).

Accepted: 18 characters, 17 ASCII digits and their right check character (``x`` read as ``X``), the birth date
(digits 7-14) a real calendar date from 1900 on; or the 15-digit first-generation form (``yymmdd`` a real date,
19yy), normalised to the 18-character form as the Ministry of Public Security's upgrade does it: ``19`` inserted
before the year and the check character appended. Nothing else (no spaces, no full-width digits: a card reader
sends the number as the chip holds it).

Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from policy.masking import id_check_char, valid_id15, valid_id18

__all__ = ["InvalidIdCardError", "normalise_id_card"]


class InvalidIdCardError(ValueError):
    """Not a valid identity card number (HTTP 400 ``invalid_id_card``; a feed record's ``invalid_id_card``)."""

    code: ClassVar[str] = "invalid_id_card"


def _real_date(yyyymmdd: str) -> bool:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8])).year >= 1900
    except ValueError:
        return False


def normalise_id_card(text: str) -> str:
    """The 18-character form of an identity card number (check character upper-case).

    :raises InvalidIdCardError: the text is not a valid 18- or 15-character number.
    """
    if len(text) == 15 and valid_id15(text):
        first17 = text[:6] + "19" + text[6:]
        return first17 + id_check_char(first17)
    if len(text) == 18 and valid_id18(text) and _real_date(text[6:14]):
        return text[:17] + text[17].upper()
    raise InvalidIdCardError("not a valid identity card number")
