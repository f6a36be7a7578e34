from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509

from crypto.cbor import CborTag, encode_cbor
from crypto.cose import parse_cose_sign1, verify_cose_sign1
from crypto.dcc_errors import CoseHeaderError, DccCoseError
from crypto.errors import AlgorithmMismatchError, BadSignatureError

PAYLOAD = encode_cbor({1: "DE"})


def _public(dsc: Any) -> Any:
    return x509.load_der_x509_certificate(dsc.der).public_key()


@pytest.mark.parametrize("tags", [(), (18,), (61, 18)])
def test_sign1_with_any_allowed_tagging_verifies(
    ec_dsc: Any, cose_factory: Callable[..., bytes], tags: Any
) -> None:
    message = parse_cose_sign1(cose_factory(ec_dsc, PAYLOAD, tags=tags))
    assert message.kid == ec_dsc.kid
    assert message.alg == -7
    verify_cose_sign1(message, _public(ec_dsc))


def test_ps256_signature_verifies(rsa_dsc: Any, cose_factory: Callable[..., bytes]) -> None:
    message = parse_cose_sign1(cose_factory(rsa_dsc, PAYLOAD, alg=-37))
    verify_cose_sign1(message, _public(rsa_dsc))


@pytest.mark.parametrize(
    "item",
    [
        CborTag(61, [b"", {}, b"", b""]),  # CWT tag without the COSE_Sign1 tag
        CborTag(98, [b"", {}, b"", b""]),  # COSE_Sign, not Sign1
        CborTag(18, [b"", {}, b""]),
        [b"", {}, b"", b"", b""],
        {1: 2},
        [b"\xa1\x01", {}, b"", b""],  # protected header not well-formed
        [b"\x80", {}, b"", b""],  # protected header is an array
        [{}, {}, b"", b""],  # protected header not a bstr
        [b"", [], b"", b""],
        [b"", {}, None, b""],  # detached payload
        [b"", {}, b"", "sig"],
        [encode_cbor({4: "text-kid"}), {}, b"", b""],
        [b"", {1: 1.5}, b"", b""],
    ],
)
def test_malformed_messages_are_cose_stage_errors(item: object) -> None:
    with pytest.raises(DccCoseError) as info:
        parse_cose_sign1(encode_cbor(item))
    assert info.value.stage == "cose"


def test_not_cbor_is_a_cose_stage_error() -> None:
    with pytest.raises(DccCoseError):
        parse_cose_sign1(b"\x00\x91junk")


def test_empty_protected_bstr_is_an_empty_map(ec_dsc: Any, cose_factory: Callable[..., bytes]) -> None:
    message = parse_cose_sign1(cose_factory(ec_dsc, PAYLOAD, protected={}, unprotected={4: ec_dsc.kid}))
    assert message.protected == {}
    assert message.kid == ec_dsc.kid


def test_alg_only_in_unprotected_header_is_refused(ec_dsc: Any, cose_factory: Callable[..., bytes]) -> None:
    raw = cose_factory(ec_dsc, PAYLOAD, protected={4: ec_dsc.kid}, unprotected={1: -7})
    message = parse_cose_sign1(raw)
    assert message.alg is None and message.alg_only_unprotected
    with pytest.raises(CoseHeaderError):
        verify_cose_sign1(message, _public(ec_dsc))


def test_protected_kid_wins_and_a_differing_unprotected_kid_is_flagged(
    ec_dsc: Any, cose_factory: Callable[..., bytes]
) -> None:
    message = parse_cose_sign1(cose_factory(ec_dsc, PAYLOAD, unprotected={4: b"other"}))
    assert message.kid == ec_dsc.kid
    assert message.kid_conflict


def test_same_kid_in_both_buckets_is_no_conflict(ec_dsc: Any, cose_factory: Callable[..., bytes]) -> None:
    message = parse_cose_sign1(cose_factory(ec_dsc, PAYLOAD, unprotected={4: ec_dsc.kid}))
    assert not message.kid_conflict


def test_tampered_payload_fails(ec_dsc: Any, cose_factory: Callable[..., bytes]) -> None:
    message = parse_cose_sign1(cose_factory(ec_dsc, PAYLOAD))
    forged = parse_cose_sign1(
        encode_cbor([message.protected_bytes, {}, encode_cbor({1: "XX"}), message.signature])
    )
    with pytest.raises(BadSignatureError):
        verify_cose_sign1(forged, _public(ec_dsc))


def test_der_encoded_es256_signature_is_refused(ec_dsc: Any, cose_factory: Callable[..., bytes]) -> None:
    message = parse_cose_sign1(cose_factory(ec_dsc, PAYLOAD))
    padded = parse_cose_sign1(
        encode_cbor([message.protected_bytes, {}, message.payload, message.signature + b"\x00"])
    )
    with pytest.raises(BadSignatureError):
        verify_cose_sign1(padded, _public(ec_dsc))


def test_algorithm_must_match_the_key_type(
    ec_dsc: Any, rsa_dsc: Any, cose_factory: Callable[..., bytes]
) -> None:
    # An RSA-signed message claiming ES256, and an EC-signed one claiming PS256.
    es_on_rsa = parse_cose_sign1(cose_factory(rsa_dsc, PAYLOAD, alg=-37, protected={1: -7, 4: rsa_dsc.kid}))
    with pytest.raises(AlgorithmMismatchError):
        verify_cose_sign1(es_on_rsa, _public(rsa_dsc))
    ps_on_ec = parse_cose_sign1(cose_factory(ec_dsc, PAYLOAD, protected={1: -37, 4: ec_dsc.kid}))
    with pytest.raises(AlgorithmMismatchError):
        verify_cose_sign1(ps_on_ec, _public(ec_dsc))


@pytest.mark.parametrize("alg", [-8, -35, -257, "ES256"])
def test_algorithms_outside_the_allowlist_are_refused(
    ec_dsc: Any, cose_factory: Callable[..., bytes], alg: object
) -> None:
    message = parse_cose_sign1(cose_factory(ec_dsc, PAYLOAD, protected={1: alg, 4: ec_dsc.kid}))
    with pytest.raises(AlgorithmMismatchError):
        verify_cose_sign1(message, _public(ec_dsc))


def test_signature_under_another_key_fails(
    ec_dsc: Any, dsc_factory: Callable[..., Any], cose_factory: Callable[..., bytes]
) -> None:
    message = parse_cose_sign1(cose_factory(dsc_factory("ec"), PAYLOAD))
    with pytest.raises(BadSignatureError):
        verify_cose_sign1(message, _public(ec_dsc))
