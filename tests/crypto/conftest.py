"""Fixtures that mint DCC signing certificates and signed HC1 codes with freshly generated keys."""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from crypto.base45 import b45encode
from crypto.cbor import CborTag, encode_cbor
from crypto.dcc_trust import dsc_kid

ISSUED = datetime(2021, 6, 1, tzinfo=UTC)
EXPIRES = datetime(2022, 6, 1, tzinfo=UTC)
NOW = datetime(2021, 9, 1, 12, 0, tzinfo=UTC)

VACCINATION_DCC: dict[str, Any] = {
    "ver": "1.3.0",
    "nam": {"fn": "Musterfrau", "fnt": "MUSTERFRAU", "gn": "Erika", "gnt": "ERIKA"},
    "dob": "1964-08-12",
    "v": [
        {
            "tg": "840539006", "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215",
            "dn": 2, "sd": 2, "dt": "2021-05-29", "co": "DE", "is": "Robert Koch-Institut",
            "ci": "URN:UVCI:01DE/IZ12345A/5CWLU12RNOB9RXSEOP6FG8#W",
        }
    ],
}  # fmt: skip
TEST_DCC: dict[str, Any] = {
    "ver": "1.3.0",
    "nam": {"fnt": "MUSTERMANN"},
    "dob": "1964",
    "t": [
        {
            "tg": "840539006", "tt": "LP6464-4", "sc": CborTag(0, "2021-05-30T10:12:22Z"), "tr": "260415000",
            "co": "DE", "is": "Robert Koch-Institut", "ci": "URN:UVCI:01DE/T1#1",
        }
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Dsc:
    """A document signer: private key, certificate DER and its hcert kid."""

    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    der: bytes

    @property
    def kid(self) -> bytes:
        return dsc_kid(self.der)

    @property
    def pem(self) -> bytes:
        return x509.load_der_x509_certificate(self.der).public_bytes(Encoding.PEM)


def make_dsc(
    kind: str = "ec",
    *,
    eku: Sequence[str] = (),
    not_before: datetime = datetime(2021, 1, 1, tzinfo=UTC),
    not_after: datetime = datetime(2023, 1, 1, tzinfo=UTC),
) -> Dsc:
    """A self-signed DSC; ``eku``: dotted OIDs for the extended-key-usage extension (empty: none)."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "placegate test DSC")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if eku:
        usages = x509.ExtendedKeyUsage([x509.ObjectIdentifier(oid) for oid in eku])
        builder = builder.add_extension(usages, critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return Dsc(key, cert.public_bytes(Encoding.DER))


def sign_cose(
    dsc: Dsc,
    payload: bytes,
    *,
    alg: int = -7,
    protected: Mapping[int, Any] | None = None,
    unprotected: Mapping[int, Any] | None = None,
    tags: Sequence[int] = (18,),
) -> bytes:
    """A COSE_Sign1 over ``payload``; by default alg and kid sit in the protected bucket."""
    prot = {1: alg, 4: dsc.kid} if protected is None else dict(protected)
    protected_bytes = encode_cbor(prot) if prot else b""
    to_sign = encode_cbor(["Signature1", protected_bytes, b"", payload])
    key = dsc.private_key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        signature = key.sign(to_sign, pss, hashes.SHA256())
    message: Any = [protected_bytes, dict(unprotected or {}), payload, signature]
    for tag in reversed(tags):
        message = CborTag(tag, message)
    return encode_cbor(message)


def wrap_hc1(cose: bytes, *, compress: bool = True, prefix: str = "HC1:") -> str:
    """zlib + base45 + context prefix (hcert §3)."""
    return prefix + b45encode(zlib.compress(cose, 9) if compress else cose)


def make_hc1(
    dsc: Dsc,
    dcc: Mapping[str, Any] | None = None,
    *,
    iat: datetime | None = ISSUED,
    exp: datetime | None = EXPIRES,
    **cose_options: Any,
) -> str:
    """A complete signed HC1 code for ``dcc`` (default: a vaccination)."""
    claims: dict[int, Any] = {1: "DE", -260: {1: dict(VACCINATION_DCC if dcc is None else dcc)}}
    if iat is not None:
        claims[6] = int(iat.timestamp())
    if exp is not None:
        claims[4] = int(exp.timestamp())
    return wrap_hc1(sign_cose(dsc, encode_cbor(claims), **cose_options))


@pytest.fixture(scope="session")
def ec_dsc() -> Dsc:
    return make_dsc("ec")


@pytest.fixture(scope="session")
def rsa_dsc() -> Dsc:
    return make_dsc("rsa")


@pytest.fixture(scope="session")
def dsc_factory() -> Callable[..., Dsc]:
    return make_dsc


@pytest.fixture(scope="session")
def hc1_factory() -> Callable[..., str]:
    return make_hc1


@pytest.fixture(scope="session")
def cose_factory() -> Callable[..., bytes]:
    return sign_cose


@pytest.fixture(scope="session")
def hc1_wrapper() -> Callable[..., str]:
    return wrap_hc1


@pytest.fixture
def vaccination_dcc() -> dict[str, Any]:
    return copy.deepcopy(VACCINATION_DCC)


@pytest.fixture
def naat_dcc() -> dict[str, Any]:
    return copy.deepcopy(TEST_DCC)
