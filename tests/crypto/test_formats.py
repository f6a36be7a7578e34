"""The registry of code formats: prefix dispatch, the common verified shape, and "not a code" vs "bad code"."""

from __future__ import annotations

import copy
import os
import zlib
from datetime import timedelta

import pytest

from crypto.base45 import b45encode
from crypto.dcc_errors import DccSchemaError
from crypto.dcc_trust import DscTrustList
from crypto.errors import CodeError, UnknownFormatError
from crypto.formats import (
    FORMATS,
    NOT_A_CODE_ERRORS,
    TrustAnchors,
    format_for,
    normalise_uvci,
    verify_presented,
)
from crypto.keys import Alg, SigningKey
from crypto.native import LEEWAY_S, Colour, HealthCode, issue_health_code
from crypto.trust import TrustedKey, TrustList, Usage
from tests.crypto.conftest import NOW, VACCINATION_DCC, Dsc, make_hc1

HEALTH_KEY = SigningKey.generate(Alg.ES256)
NATIVE = TrustList([TrustedKey.create(HEALTH_KEY.public_key(), usage=Usage.HEALTH,
                                      not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=1))])


def _anchors(*dscs: Dsc) -> TrustAnchors:
    return TrustAnchors(NATIVE, DscTrustList.from_der_list(d.der for d in dscs))


@pytest.mark.parametrize(
    ("text", "name"),
    [("PGH:ABC", "native"), ("HC1:ABC", "hc1"), ("HC1:", "hc1")],
)
def test_prefix_selects_the_registered_format(text: str, name: str) -> None:
    assert format_for(text).name == name


@pytest.mark.parametrize("text", ["", "hc1:ABC", "HC2:ABC", "PGP:ABC", "https://example.org", " HC1:ABC"])
def test_text_without_a_registered_prefix_is_not_a_code(text: str) -> None:
    with pytest.raises(UnknownFormatError):
        format_for(text)
    assert issubclass(UnknownFormatError, NOT_A_CODE_ERRORS)


def test_registry_has_one_entry_per_prefix_and_names_its_trust_list() -> None:
    assert set(FORMATS) == {"PGH:", "PGQ:", "HC1:"}
    assert {fmt.name: fmt.trust_list for fmt in FORMATS.values()} == {"native": "native", "paper": "native",
                                                                      "hc1": "dsc"}


def test_native_code_verifies_to_a_live_status_presentation() -> None:
    text = issue_health_code(HEALTH_KEY, holder_ref="h-1", colour=Colour.YELLOW, now=NOW, nonce=os.urandom(12))
    code = verify_presented(text, _anchors(), now=NOW)
    assert code.format == "native" and code.live_status
    assert isinstance(code.evidence, HealthCode)
    assert code.holder_ref == "h-1" and code.signed_colour is Colour.YELLOW
    assert code.replay_id == f"{code.evidence.kid.hex()}:{code.evidence.nonce.hex()}"
    # Remembered as long as the code is accepted: its expiry plus the clock leeway.
    assert code.replay_until == code.evidence.exp + timedelta(seconds=LEEWAY_S)


def test_hc1_verifies_to_a_uvci_keyed_presentation(ec_dsc: Dsc) -> None:
    code = verify_presented(make_hc1(ec_dsc), _anchors(ec_dsc), now=NOW)
    assert code.format == "hc1" and not code.live_status
    assert code.holder_ref == code.replay_id == "uvci:01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8"
    assert code.replay_until is None and code.signed_colour is None


def test_hc1_without_a_certificate_identifier_is_refused(ec_dsc: Dsc) -> None:
    dcc = copy.deepcopy(VACCINATION_DCC)
    dcc["v"][0]["ci"] = "  "
    with pytest.raises(DccSchemaError):
        verify_presented(make_hc1(ec_dsc, dcc), _anchors(ec_dsc), now=NOW)


@pytest.mark.parametrize(
    ("ci", "expected"),
    [
        ("URN:UVCI:01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8#W", "01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8"),
        ("urn:uvci:01:AT:10807843F94AEE0EE5093FBC254BD813#B", "01:AT:10807843F94AEE0EE5093FBC254BD813"),
        ("01:SE:EHM/V12907267LAJW#E", "01:SE:EHM/V12907267LAJW"),
        (" 01nl/abc ", "01NL/ABC"),
    ],
)
def test_uvci_normalisation_drops_prefix_and_checksum(ci: str, expected: str) -> None:
    assert normalise_uvci(ci) == expected


def test_bad_base45_is_not_a_code_but_a_compression_bomb_is_a_bad_code() -> None:
    with pytest.raises(NOT_A_CODE_ERRORS):
        verify_presented("HC1:%%%%", _anchors(), now=NOW)
    bomb = "HC1:" + b45encode(zlib.compress(b"\0" * 2_000_000, 9))
    with pytest.raises(CodeError) as caught:
        verify_presented(bomb, _anchors(), now=NOW)
    assert not isinstance(caught.value, NOT_A_CODE_ERRORS)
    assert caught.value.code == "dcc_too_large"

