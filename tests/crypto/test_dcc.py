from __future__ import annotations

import base64
import dataclasses
import json
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from crypto.base45 import b45encode
from crypto.cbor import CborTag, encode_cbor
from crypto.dcc import MAX_INFLATED_BYTES, decode_hc1, inspect_hc1, verify_hc1
from crypto.dcc_errors import (
    CoseHeaderError,
    DccBase45Error,
    DccCoseError,
    DccCwtError,
    DccDecodeError,
    DccPrefixError,
    DccSchemaError,
    DccTooLargeError,
    DccZlibError,
)
from crypto.dcc_trust import DscTrustList
from crypto.errors import (
    AlgorithmMismatchError,
    BadSignatureError,
    CodeExpiredError,
    CodeNotYetValidError,
    KeyOutOfWindowError,
    TrustListError,
    UnknownKeyError,
    WrongKeyUsageError,
)

NOW = datetime(2021, 9, 1, 12, 0, tzinfo=UTC)
OID_TEST, OID_VACC, OID_RECOVERY = (f"1.3.6.1.4.1.1847.2021.1.{n}" for n in (1, 2, 3))


def _trust(*dscs: Any) -> DscTrustList:
    return DscTrustList.from_der_list(dsc.der for dsc in dscs)


def test_valid_es256_code_verifies(ec_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    verified = verify_hc1(hc1_factory(ec_dsc), _trust(ec_dsc), now=NOW)
    assert verified.entry_type == "v"
    assert verified.key.kid == ec_dsc.kid
    assert verified.decoded.issuer == "DE"


def test_valid_ps256_code_verifies(rsa_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    verified = verify_hc1(hc1_factory(rsa_dsc, alg=-37), _trust(rsa_dsc), now=NOW)
    assert verified.key.kid == rsa_dsc.kid


@pytest.mark.parametrize(
    ("text", "error", "stage"),
    [
        ("HC2:NCF", DccPrefixError, "prefix"),
        ("NCFOXN", DccPrefixError, "prefix"),
        ("hc1:NCF", DccPrefixError, "prefix"),
        ("HC1:NCF~~", DccBase45Error, "base45"),
        ("HC1:A", DccBase45Error, "base45"),
        ("HC1:" + "0" * 9000, DccBase45Error, "base45"),
        ("HC1:" + b45encode(encode_cbor([b"", {}, b"", b""])), DccZlibError, "zlib"),  # not compressed
        ("HC1:" + b45encode(zlib.compress(b"\x80")[:-3]), DccZlibError, "zlib"),  # truncated
        ("HC1:" + b45encode(zlib.compress(b"\x80") + b"x"), DccZlibError, "zlib"),  # trailing bytes
        ("HC1:" + b45encode(zlib.compress(b"\x80")), DccCoseError, "cose"),
    ],
)
def test_each_decode_failure_names_its_stage(text: str, error: type[DccDecodeError], stage: str) -> None:
    with pytest.raises(error) as info:
        decode_hc1(text)
    assert info.value.stage == stage


def test_zlib_bomb_is_refused_as_too_large() -> None:
    bomb = zlib.compress(b"\x00" * (MAX_INFLATED_BYTES * 16), 9)
    with pytest.raises(DccTooLargeError) as info:
        decode_hc1("HC1:" + b45encode(bomb))
    assert info.value.stage == "zlib"
    assert info.value.code == "dcc_too_large"


@pytest.mark.parametrize(
    "claims",
    [
        [1, 2],
        {1: "DE"},
        {-260: [1]},
        {-260: {2: {}}},
        {-260: {1: b"not a map"}},
        {-260: {1: {}}, 4: "tomorrow"},
        {-260: {1: {}}, 6: True},
        {-260: {1: {}}, 1: 276},
        {-260: {1: {}}, b"k": 1},
    ],
)
def test_bad_claims_are_cwt_stage_errors(
    ec_dsc: Any, cose_factory: Callable[..., bytes], hc1_wrapper: Callable[..., str], claims: object
) -> None:
    with pytest.raises(DccCwtError) as info:
        decode_hc1(hc1_wrapper(cose_factory(ec_dsc, encode_cbor(claims))))
    assert info.value.stage == "cwt"


def test_payload_that_is_not_cbor_is_a_cwt_stage_error(
    ec_dsc: Any, cose_factory: Callable[..., bytes], hc1_wrapper: Callable[..., str]
) -> None:
    with pytest.raises(DccCwtError):
        decode_hc1(hc1_wrapper(cose_factory(ec_dsc, b"\xa1\x01")))


def test_unknown_kid_is_refused(
    ec_dsc: Any, dsc_factory: Callable[..., Any], hc1_factory: Callable[..., str]
) -> None:
    with pytest.raises(UnknownKeyError):
        verify_hc1(hc1_factory(ec_dsc), _trust(dsc_factory("ec")), now=NOW)


def test_missing_kid_is_refused(ec_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    with pytest.raises(UnknownKeyError):
        verify_hc1(hc1_factory(ec_dsc, protected={1: -7}), _trust(ec_dsc), now=NOW)


def test_kid_from_unprotected_bucket_is_used_when_protected_has_none(
    ec_dsc: Any, hc1_factory: Callable[..., str]
) -> None:
    code = hc1_factory(ec_dsc, protected={1: -7}, unprotected={4: ec_dsc.kid})
    assert verify_hc1(code, _trust(ec_dsc), now=NOW).key.kid == ec_dsc.kid


def test_differing_kids_are_refused_by_verify_but_reported_by_inspect(
    ec_dsc: Any, hc1_factory: Callable[..., str]
) -> None:
    code = hc1_factory(ec_dsc, unprotected={4: b"foo"})
    with pytest.raises(CoseHeaderError):
        verify_hc1(code, _trust(ec_dsc), now=NOW)
    report = inspect_hc1(code, _trust(ec_dsc), now=NOW)
    # The runner contract judges the protected kid only; the conflict is reported beside it.
    assert report.signature_valid and report.kid_conflict


def test_alg_only_in_unprotected_header_is_refused(ec_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    code = hc1_factory(ec_dsc, protected={}, unprotected={1: -7, 4: ec_dsc.kid})
    with pytest.raises(CoseHeaderError):
        verify_hc1(code, _trust(ec_dsc), now=NOW)
    assert not inspect_hc1(code, _trust(ec_dsc), now=NOW).signature_valid


def test_tampered_signature_is_refused(ec_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    other = hc1_factory(ec_dsc, dict(_vacc_with(dob="1970-01-01")))
    victim = decode_hc1(hc1_factory(ec_dsc))
    forged = decode_hc1(other).cose
    code = "HC1:" + b45encode(
        zlib.compress(
            encode_cbor(CborTag(18, [forged.protected_bytes, {}, victim.cose.payload, forged.signature]))
        )
    )
    with pytest.raises(BadSignatureError):
        verify_hc1(code, _trust(ec_dsc), now=NOW)


def test_algorithm_not_matching_the_key_is_refused(rsa_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    code = hc1_factory(rsa_dsc, protected={1: -7, 4: rsa_dsc.kid})
    with pytest.raises(AlgorithmMismatchError):
        verify_hc1(code, _trust(rsa_dsc), now=NOW)


def test_duplicate_kids_try_every_key(
    ec_dsc: Any, dsc_factory: Callable[..., Any], hc1_factory: Callable[..., str]
) -> None:
    impostor = dsc_factory("ec")
    trust = _trust(impostor, ec_dsc)
    # Relabel the impostor under the real kid: both keys share one kid, only the second verifies.
    colliding = DscTrustList((dataclasses.replace(trust.keys[0], kid=ec_dsc.kid), trust.keys[1]))
    assert len(colliding.candidates(ec_dsc.kid)) == 2
    assert verify_hc1(hc1_factory(ec_dsc), colliding, now=NOW).key is colliding.keys[1]


@pytest.mark.parametrize(
    ("when", "error"),
    [
        (datetime(2021, 5, 31, tzinfo=UTC), CodeNotYetValidError),
        (datetime(2022, 6, 2, tzinfo=UTC), CodeExpiredError),
    ],
)
def test_code_outside_iat_exp_is_refused(
    ec_dsc: Any, hc1_factory: Callable[..., str], when: datetime, error: type[Exception]
) -> None:
    with pytest.raises(error):
        verify_hc1(hc1_factory(ec_dsc), _trust(ec_dsc), now=when)
    assert inspect_hc1(hc1_factory(ec_dsc), _trust(ec_dsc), now=when).expired is True


@pytest.mark.parametrize(
    ("iat", "exp"), [(None, datetime(2022, 1, 1, tzinfo=UTC)), (datetime(2021, 1, 1, tzinfo=UTC), None)]
)
def test_missing_iat_or_exp_counts_as_outside(
    ec_dsc: Any, hc1_factory: Callable[..., str], iat: datetime | None, exp: datetime | None
) -> None:
    code = hc1_factory(ec_dsc, iat=iat, exp=exp)
    with pytest.raises((CodeExpiredError, CodeNotYetValidError)):
        verify_hc1(code, _trust(ec_dsc), now=NOW)
    assert inspect_hc1(code, _trust(ec_dsc), now=NOW).expired is True


def test_expiry_is_unjudged_without_a_clock(ec_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    assert inspect_hc1(hc1_factory(ec_dsc), _trust(ec_dsc), now=None).expired is None


def test_certificate_outside_its_window_is_refused(
    dsc_factory: Callable[..., Any], hc1_factory: Callable[..., str]
) -> None:
    old = dsc_factory(
        "ec", not_before=datetime(2020, 1, 1, tzinfo=UTC), not_after=datetime(2021, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(KeyOutOfWindowError):
        verify_hc1(hc1_factory(old), _trust(old), now=NOW)


@pytest.mark.parametrize(
    ("oids", "dcc_fixture", "allowed"),
    [
        ((), "vaccination_dcc", True),
        ((OID_VACC,), "vaccination_dcc", True),
        ((OID_TEST,), "vaccination_dcc", False),
        ((OID_RECOVERY,), "naat_dcc", False),
        ((OID_TEST, OID_RECOVERY), "naat_dcc", True),
        (("1.3.6.1.4.1.0.1847.2021.1.1",), "naat_dcc", True),
        (("1.3.6.1.5.5.7.3.1",), "naat_dcc", True),  # serverAuth only: no DCC restriction
    ],
)
def test_key_usage_oids_restrict_entry_types(
    request: pytest.FixtureRequest,
    dsc_factory: Callable[..., Any],
    hc1_factory: Callable[..., str],
    oids: tuple[str, ...],
    dcc_fixture: str,
    allowed: bool,
) -> None:
    dsc = dsc_factory("ec", eku=oids)
    code = hc1_factory(dsc, request.getfixturevalue(dcc_fixture))
    assert inspect_hc1(code, _trust(dsc), now=NOW).key_usage_valid is allowed
    if allowed:
        verify_hc1(code, _trust(dsc), now=NOW)
    else:
        with pytest.raises(WrongKeyUsageError):
            verify_hc1(code, _trust(dsc), now=NOW)


def _vacc_with(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ver": "1.3.0",
        "nam": {"fnt": "DOE"},
        "dob": "1980-01-01",
        "v": [
            {"tg": "840539006", "vp": "J07BX03", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 1,
             "sd": 2, "dt": "2021-05-01", "co": "AT", "is": "BMSGPK", "ci": "URN:UVCI:01:AT:1#1"}
        ],
    }  # fmt: skip
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


@pytest.mark.parametrize(
    "dcc",
    [
        _vacc_with(ver=None),
        _vacc_with(ver="1.3"),
        _vacc_with(dob=None),
        _vacc_with(dob="12.08.1964"),
        _vacc_with(nam={}),
        _vacc_with(nam={"fnt": "X" * 81}),
        _vacc_with(v=[]),
        _vacc_with(v=None),
        _vacc_with(t=[{"tg": "840539006"}]),
        _vacc_with(v=[{"tg": "840539006"}]),
        _vacc_with(v=[{**_vacc_with()["v"][0], "dn": "1"}]),
        _vacc_with(v=[{**_vacc_with()["v"][0], "dt": "May 2021"}]),
        {1: "x", **_vacc_with()},
        # The rules every published schema version (1.0.0-1.3.x) holds beyond the shape:
        _vacc_with(dob="1899-12-31"),
        _vacc_with(dob="2100"),
        _vacc_with(dob="1800-05"),
        _vacc_with(dob="0964-08-12"),
        _vacc_with(dob="T00:00:00"),  # a time without a date (found by the fuzz test)
        _vacc_with(dob="19\u0669\u0660"),  # the schema's \d is ASCII (ECMA-262 regular expressions)
        _vacc_with(nam={"fnt": "doe"}),
        _vacc_with(nam={"fnt": "DOE", "gnt": "JOHN SMITH"}),
        _vacc_with(v=[{**_vacc_with()["v"][0], "dn": 10}]),
        _vacc_with(v=[{**_vacc_with()["v"][0], "sd": 0}]),
        _vacc_with(v=[{**_vacc_with()["v"][0], "dt": "2021-02-30"}]),
        _vacc_with(v=[{**_vacc_with()["v"][0], "ci": "URN:UVCI:01:AT:" + "9" * 70}]),
        _vacc_with(v=[{**_vacc_with()["v"][0], "is": "I" * 81}]),
    ],
)
def test_schema_violations_are_refused(
    ec_dsc: Any, hc1_factory: Callable[..., str], dcc: dict[Any, Any]
) -> None:
    code = hc1_factory(ec_dsc, dcc)
    with pytest.raises(DccSchemaError):
        verify_hc1(code, _trust(ec_dsc), now=NOW)
    report = inspect_hc1(code, _trust(ec_dsc), now=NOW)
    assert report.schema_valid is False and report.signature_valid


@pytest.mark.parametrize("dob", ["1964", "1964-08", "", "1964-08-12", "1900", "2099-12-31", "1979-04-14T00:00:00"])
def test_partial_birth_dates_are_schema_valid(ec_dsc: Any, hc1_factory: Callable[..., str], dob: str) -> None:
    verify_hc1(hc1_factory(ec_dsc, _vacc_with(dob=dob)), _trust(ec_dsc), now=NOW)


def test_schema_refusal_names_the_field(ec_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    bad = _vacc_with(v=[{**_vacc_with()["v"][0], "dn": 10}])
    with pytest.raises(DccSchemaError) as caught:
        verify_hc1(hc1_factory(ec_dsc, bad), _trust(ec_dsc), now=NOW)
    assert (caught.value.code, caught.value.field) == ("dcc_schema_invalid", "v[0].dn")
    with pytest.raises(DccSchemaError) as caught:
        verify_hc1(hc1_factory(ec_dsc, _vacc_with(dob="1899")), _trust(ec_dsc), now=NOW)
    assert caught.value.field == "dob"


def test_report_renders_date_tags_as_iso_strings(
    ec_dsc: Any, hc1_factory: Callable[..., str], naat_dcc: Any
) -> None:
    naat_dcc["t"][0]["dr"] = CborTag(1, 1622369415)
    report = inspect_hc1(hc1_factory(ec_dsc, naat_dcc), _trust(ec_dsc), now=NOW)
    assert isinstance(report.hcert, dict)
    entry = report.hcert["t"][0]  # type: ignore[index]
    assert entry["sc"] == "2021-05-30T10:12:22Z"  # type: ignore[index]
    assert entry["dr"] == "2021-05-30T10:10:15Z"  # type: ignore[index]
    json.dumps(report.to_json())


def test_report_of_undecodable_code_names_the_stage(ec_dsc: Any) -> None:
    report = inspect_hc1("HC1:::", _trust(ec_dsc), now=NOW)
    assert (report.decoded, report.failed_stage, report.signature_valid, report.expired) == (
        False,
        "base45",
        False,
        None,
    )


def test_trust_list_builds_from_pem_and_json_bundle(ec_dsc: Any, rsa_dsc: Any, tmp_path: Any) -> None:
    pem_file = tmp_path / "dsc.pem"
    pem_file.write_bytes(ec_dsc.pem + rsa_dsc.pem)
    from_pem = DscTrustList.from_pem_files([pem_file])
    bundle = json.dumps({"certificates": [base64.b64encode(d.der).decode() for d in (ec_dsc, rsa_dsc)]})
    from_json = DscTrustList.from_json_bundle(bundle)
    assert [k.kid for k in from_pem.keys] == [k.kid for k in from_json.keys] == [ec_dsc.kid, rsa_dsc.kid]


@pytest.mark.parametrize("bundle", ["{", "[1]", '{"certificates": ["***"]}', '["AAAA"]', "{}"])
def test_bad_trust_bundles_are_refused(bundle: str) -> None:
    with pytest.raises(TrustListError):
        DscTrustList.from_json_bundle(bundle)
