from __future__ import annotations

import math

import pytest

from crypto.cbor import CborSimple, CborTag, decode_cbor, encode_cbor
from crypto.dcc_errors import CborError


@pytest.mark.parametrize(
    ("hex_input", "expected"),
    [
        # RFC 8949 Appendix A examples
        ("00", 0),
        ("17", 23),
        ("1818", 24),
        ("1903e8", 1000),
        ("1b000000e8d4a51000", 1000000000000),
        ("1bffffffffffffffff", 18446744073709551615),
        ("c249010000000000000000", 18446744073709551616),
        ("3bffffffffffffffff", -18446744073709551616),
        ("c349010000000000000000", -18446744073709551617),
        ("20", -1),
        ("3903e7", -1000),
        ("f90000", 0.0),
        ("f93c00", 1.0),
        ("fb3ff199999999999a", 1.1),
        ("f97bff", 65504.0),
        ("fa47c35000", 100000.0),
        ("f90001", 5.960464477539063e-08),
        ("f97c00", math.inf),
        ("f4", False),
        ("f5", True),
        ("f6", None),
        ("f7", CborSimple(23)),
        ("f0", CborSimple(16)),
        ("f8ff", CborSimple(255)),
        ("c074323031332d30332d32315432303a30343a30305a", CborTag(0, "2013-03-21T20:04:00Z")),
        ("c11a514b67b0", CborTag(1, 1363896240)),
        ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", CborTag(32, "http://www.example.com")),
        ("40", b""),
        ("4401020304", b"\x01\x02\x03\x04"),
        ("60", ""),
        ("6449455446", "IETF"),
        ("62c3bc", "\u00fc"),
        ("80", []),
        ("83010203", [1, 2, 3]),
        ("8301820203820405", [1, [2, 3], [4, 5]]),
        ("a0", {}),
        ("a201020304", {1: 2, 3: 4}),
        ("a26161016162820203", {"a": 1, "b": [2, 3]}),
        ("5f42010243030405ff", b"\x01\x02\x03\x04\x05"),
        ("7f657374726561646d696e67ff", "streaming"),
        ("9fff", []),
        ("9f018202039f0405ffff", [1, [2, 3], [4, 5]]),
        ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}),
    ],
)
def test_rfc8949_appendix_a_examples_decode(hex_input: str, expected: object) -> None:
    assert decode_cbor(bytes.fromhex(hex_input)) == expected


def test_nan_half_float_decodes_as_nan() -> None:
    value = decode_cbor(bytes.fromhex("f97e00"))
    assert isinstance(value, float) and math.isnan(value)


@pytest.mark.parametrize(
    "hex_input",
    [
        "",  # no item at all
        "18",  # argument byte missing
        "1c",  # reserved additional information 28
        "1f",  # indefinite integer
        "ff",  # break outside an indefinite item
        "f818",  # two-byte simple value below 32
        "5f01ff",  # integer chunk inside an indefinite byte string
        "5f5f4101ffff",  # nested indefinite chunk
        "7f4101ff",  # byte-string chunk inside a text string
        "62c3",  # text shorter than declared
        "62c328",  # invalid UTF-8
        "a10102a1",  # trailing bytes
        "9f01",  # unterminated indefinite array
        "a2010201",  # map missing a value
        "a1ff",  # break in a definite map
        "bf01ff",  # indefinite map with a key but no value
        "c24101ff",  # trailing bytes after bignum
        "c201",  # bignum of an integer
        "c001",  # tag 0 over an integer
        "c163313233",  # tag 1 over a string
        "c1f5",  # tag 1 over a bool
        "df",  # indefinite tag
    ],
)
def test_malformed_input_is_refused(hex_input: str) -> None:
    with pytest.raises(CborError):
        decode_cbor(bytes.fromhex(hex_input))


def test_duplicate_map_keys_are_refused() -> None:
    with pytest.raises(CborError):
        decode_cbor(bytes.fromhex("a2616101616102"))


def test_keys_that_collide_in_python_are_refused() -> None:
    # 1 and 1.0 are different CBOR keys but the same dict key.
    with pytest.raises(CborError):
        decode_cbor(bytes.fromhex("a201f5fb3ff0000000000000f4"))


def test_array_or_map_keys_are_refused() -> None:
    with pytest.raises(CborError):
        decode_cbor(bytes.fromhex("a18001"))


@pytest.mark.parametrize(
    "hex_input",
    [
        "9b00000000ffffffff",  # array of 2**32-1 elements in 9 bytes
        "bb7fffffffffffffff",  # map of 2**63-1 pairs
        "5b7fffffffffffffff",  # byte string of 2**63-1 bytes
        "7a7fffffff41",  # text string of 2**31-1 bytes
    ],
)
def test_declared_lengths_beyond_the_input_are_refused_without_allocating(hex_input: str) -> None:
    with pytest.raises(CborError):
        decode_cbor(bytes.fromhex(hex_input))


def test_nesting_beyond_the_depth_limit_is_refused() -> None:
    assert decode_cbor(b"\x81" * 16 + b"\x00", max_depth=16) is not None
    with pytest.raises(CborError):
        decode_cbor(b"\x81" * 17 + b"\x00", max_depth=16)
    with pytest.raises(CborError):
        decode_cbor(b"\x9f" * 5000)


def test_item_count_is_capped() -> None:
    data = b"\x9f" + b"\x00" * 200 + b"\xff"
    assert len(decode_cbor(data, max_items=201)) == 200  # type: ignore[arg-type]
    with pytest.raises(CborError):
        decode_cbor(data, max_items=100)


def test_trailing_bytes_are_allowed_only_when_asked() -> None:
    assert decode_cbor(b"\x01\x02", allow_trailing=True) == 1
    with pytest.raises(CborError):
        decode_cbor(b"\x01\x02")


def test_encoder_round_trips_through_the_decoder() -> None:
    value = {1: -7, 4: b"\x00" * 8, "s": ["x", 2**40, -(2**33), 1.5, None, True], -260: {1: CborTag(0, "t")}}
    assert decode_cbor(encode_cbor(value)) == value


def test_encoder_uses_shortest_heads() -> None:
    assert encode_cbor(["Signature1", b"", b"", b"\x01"]) == bytes.fromhex("846a5369676e61747572653140404101")
    assert encode_cbor(500) == bytes.fromhex("1901f4")
    assert encode_cbor(-500) == bytes.fromhex("3901f3")
