"""Signed DSC trust lists (a national backend's format): the signature against the trust anchor, the CSCA -> DSC
chain, the kid check. Every list here is signed by the test itself."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from crypto.dcc_trust import dsc_kid
from crypto.dcc_trustlist import TrustListSignatureError, load_anchor, verify_signed_list
from crypto.errors import TrustListError
from tests.crypto.conftest import Dsc, make_dsc

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Authority:
    """A key and its self-signed certificate: a trust anchor or a CSCA."""

    key: PrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_authority(common: str = "placegate test trust anchor", kind: str = "ec") -> Authority:
    key: PrivateKey = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(
        65537, 2048)
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    return Authority(key, cert)


def issued_dsc(csca: Authority, *, days: int = 365) -> Dsc:
    """A DSC whose certificate the CSCA signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("placegate test DSC")).issuer_name(csca.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=days))
            .sign(csca.key, hashes.SHA256()))  # fmt: skip
    return Dsc(key, cert.public_bytes(Encoding.DER))


def entry(der: bytes, kind: str = "DSC", country: str = "DE", kid: bytes | None = None) -> dict[str, Any]:
    item = {"certificateType": kind, "country": country, "rawData": base64.b64encode(der).decode(),
            "timestamp": "2026-12-01T00:00:00Z"}
    if kind == "DSC":
        item["kid"] = base64.b64encode(dsc_kid(der) if kid is None else kid).decode()
    return item


def signed_list(anchor: Authority, entries: list[dict[str, Any]]) -> bytes:
    """The published form: a base64 signature line over the JSON bytes that follow it."""
    content = json.dumps({"certificates": entries}).encode()
    if isinstance(anchor.key, ec.EllipticCurvePrivateKey):
        signature = anchor.key.sign(content, ec.ECDSA(hashes.SHA256()))
    else:
        signature = anchor.key.sign(content, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature) + b"\n" + content


@pytest.fixture(scope="module")
def anchor() -> Authority:
    return make_authority()


def test_a_list_signed_by_the_anchor_gives_its_dscs(anchor: Authority) -> None:
    one, two = make_dsc(), make_dsc("rsa")
    result = verify_signed_list(signed_list(anchor, [entry(one.der), entry(two.der, country="AT")]),
                                load_anchor(anchor.pem))
    assert set(result.ders) == {one.der, two.der}
    assert (result.cscas, result.dropped_chain, result.dropped_other) == (0, 0, 0)


def test_an_rsa_anchor_signs_with_pkcs1v15_sha256() -> None:
    rsa_anchor = make_authority(kind="rsa")
    dsc = make_dsc()
    assert verify_signed_list(signed_list(rsa_anchor, [entry(dsc.der)]), load_anchor(rsa_anchor.pem)).ders == (
        dsc.der,)


@pytest.mark.parametrize("tamper", ["content", "signature", "other_anchor", "no_signature_line", "not_base64"])
def test_a_list_whose_signature_fails_is_refused_whole(anchor: Authority, tamper: str) -> None:
    body = signed_list(anchor, [entry(make_dsc().der)])
    head, _, content = body.partition(b"\n")
    if tamper == "content":
        body = head + b"\n" + content.replace(b'"DE"', b'"AT"')
    elif tamper == "signature":
        signature = bytearray(base64.b64decode(head))
        signature[-1] ^= 1
        body = base64.b64encode(bytes(signature)) + b"\n" + content
    elif tamper == "other_anchor":
        body = signed_list(make_authority("someone else"), [entry(make_dsc().der)])
    elif tamper == "no_signature_line":
        body = content
    else:
        body = b"not base64!\n" + content
    with pytest.raises(TrustListSignatureError) as caught:
        verify_signed_list(body, load_anchor(anchor.pem))
    assert caught.value.code == "trust_list_signature_invalid"


def test_where_the_list_carries_cscas_only_dscs_they_issued_are_kept(anchor: Authority) -> None:
    csca = make_authority("placegate test CSCA DE")
    rogue_csca = make_authority("placegate test CSCA DE")  # the same name, another key
    good, forged, self_signed = issued_dsc(csca), issued_dsc(rogue_csca), make_dsc()
    other_country = make_dsc()  # AT carries no CSCA in this list: no chain to check
    body = signed_list(anchor, [entry(csca.der, "CSCA"), entry(good.der), entry(forged.der),
                                entry(self_signed.der), entry(other_country.der, country="AT")])
    result = verify_signed_list(body, load_anchor(anchor.pem))
    assert set(result.ders) == {good.der, other_country.der}
    assert (result.cscas, result.dropped_chain) == (1, 2)


def test_a_dsc_listed_under_another_kid_is_left_out(anchor: Authority) -> None:
    kept, relabelled = make_dsc(), make_dsc()
    body = signed_list(anchor, [entry(kept.der), entry(relabelled.der, kid=kept.kid)])
    result = verify_signed_list(body, load_anchor(anchor.pem))
    assert (result.ders, result.dropped_other) == ((kept.der,), 1)


@pytest.mark.parametrize(
    "entries",
    [[], [{"certificateType": "DSC", "country": "DE", "rawData": "!!"}], [{"certificateType": "DSC"}], ["x"]],
)
def test_a_signed_list_without_a_usable_dsc_is_refused(anchor: Authority, entries: list[Any]) -> None:
    with pytest.raises(TrustListError) as caught:
        verify_signed_list(signed_list(anchor, entries), load_anchor(anchor.pem))
    assert not isinstance(caught.value, TrustListSignatureError)


def test_an_anchor_must_be_a_pem_certificate() -> None:
    with pytest.raises(TrustListError):
        load_anchor(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
