"""Base45 against RFC 9285's examples and its rejection rules."""

from __future__ import annotations

import pytest

from crypto.base45 import b45decode, b45encode
from crypto.errors import Base45Error


@pytest.mark.parametrize(
    ("plain", "encoded"),
    [(b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"), (b"ietf!", "QED8WEX0"), (b"", "")],
)
def test_rfc9285_examples(plain: bytes, encoded: str) -> None:
    assert b45encode(plain) == encoded
    assert b45decode(encoded) == plain


@pytest.mark.parametrize("bad", ["GGW", "ZZZ", "A", "ABCD", "abc", "AB\u00e9", "GG"])
def test_invalid_base45_is_rejected(bad: str) -> None:
    with pytest.raises(Base45Error):
        b45decode(bad)
