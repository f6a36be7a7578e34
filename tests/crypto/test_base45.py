"""Base45 against RFC 9285's examples and its rejection rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.base45 import ALPHABET, b45decode, b45encode
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


@given(st.binary(max_size=600))
def test_any_bytes_round_trip(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


def _reference_decode(text: str) -> bytes:
    """RFC 9285 §4.2 group by group: the plain algorithm the lane arithmetic must agree with."""
    values = [ALPHABET.index(c) for c in text]
    out = bytearray()
    for i in range(0, len(values) - 2, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025
        if n > 0xFFFF:
            raise Base45Error("triplet")
        out += n.to_bytes(2, "big")
    if len(values) % 3 == 2:
        n = values[-2] + values[-1] * 45
        if n > 0xFF:
            raise Base45Error("pair")
        out.append(n)
    return bytes(out)


@given(st.text(alphabet=ALPHABET, max_size=300).filter(lambda t: len(t) % 3 != 1))
def test_every_alphabet_string_decodes_as_the_group_by_group_algorithm_or_is_refused_by_both(text: str) -> None:
    try:
        expected: bytes | None = _reference_decode(text)
    except Base45Error:
        expected = None
    if expected is None:
        with pytest.raises(Base45Error):
            b45decode(text)
    else:
        assert b45decode(text) == expected
