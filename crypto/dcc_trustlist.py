"""A national backend's signed DSC trust list: signature against a trust anchor, CSCA -> DSC chain, kid check.

The format is the one the German DCC backend publishes (and others copied): the body is a line with the
base64 signature, a newline, then the JSON content it signs::

    <base64 signature>
    {"certificates": [{"certificateType": "DSC" | "CSCA", "country": "DE", "kid": "<base64 8 bytes>",
                       "rawData": "<base64 DER>", ...}, ...]}

The signature covers the JSON bytes exactly as sent: ECDSA with SHA-256 (DER-encoded, an EC anchor) or
RSASSA-PKCS1-v1_5 with SHA-256 (an RSA anchor).  A list whose signature does not verify is refused whole.  Inside
a verified list a DSC is kept only when its ``kid`` (when given) is its hcert kid, it loads as a DSC, and, where the
list carries CSCAs of its country, one of them issued it (issuer name and signature, RFC 5280 §6.1 for one link).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from crypto.dcc_trust import DscKey, dsc_kid
from crypto.errors import TrustListError

__all__ = ["MAX_LIST_BYTES", "SignedDscList", "TrustListSignatureError", "load_anchor", "verify_signed_list"]

MAX_LIST_BYTES: Final = 32 * 1024 * 1024  # the EU-wide list is a few MiB
_MAX_ENTRIES: Final = 100_000


class TrustListSignatureError(TrustListError):
    """The list's signature does not verify against the trust anchor: refused whole, the previous list stays."""

    code = "trust_list_signature_invalid"


@dataclass(frozen=True, slots=True)
class SignedDscList:
    """What a verified list vouches for: the DSCs kept, and how many were left out and why."""

    ders: tuple[bytes, ...]
    cscas: int
    dropped_chain: int  # a DSC no CSCA of its country issued
    dropped_other: int  # a kid that is not the certificate's, or a certificate that is not a usable DSC


def load_anchor(pem: bytes) -> x509.Certificate:
    """The trust-anchor certificate (PEM) a list must be signed with.

    :raises TrustListError: not one PEM certificate with an EC or RSA key.
    """
    try:
        anchor = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise TrustListError("trust anchor is not a PEM certificate") from exc
    if not isinstance(anchor.public_key(), ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise TrustListError("trust anchor key is neither EC nor RSA")
    return anchor


def _check_signature(anchor: x509.Certificate, signature: bytes, content: bytes) -> None:
    key = anchor.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, content, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise TrustListSignatureError("trust anchor key is neither EC nor RSA")
    except InvalidSignature:
        raise TrustListSignatureError("trust list signature does not verify against the trust anchor") from None


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise TrustListError(f"{what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise TrustListError(f"{what} is not base64") from None


def _issued_by_one_of(dsc: x509.Certificate, cscas: list[x509.Certificate]) -> bool:
    for csca in cscas:
        try:
            dsc.verify_directly_issued_by(csca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def verify_signed_list(body: bytes, anchor: x509.Certificate) -> SignedDscList:
    """Check a fetched list and keep the DSCs it vouches for.

    :raises TrustListSignatureError: the signature does not verify (or is missing).
    :raises TrustListError: not the format above, too large, or no usable DSC left.
    """
    if len(body) > MAX_LIST_BYTES:
        raise TrustListError("trust list larger than the size cap")
    head, newline, content = body.partition(b"\n")
    if not newline:
        raise TrustListSignatureError("trust list has no signature line")
    try:
        signature = base64.b64decode(head.strip(), validate=True)
    except binascii.Error:
        raise TrustListSignatureError("trust list signature line is not base64") from None
    _check_signature(anchor, signature, content)
    try:
        doc = json.loads(content)
    except ValueError as exc:
        raise TrustListError("signed trust list content is not JSON") from exc
    entries = doc.get("certificates") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or len(entries) > _MAX_ENTRIES:
        raise TrustListError("signed trust list has no certificates array")
    cscas: dict[str, list[x509.Certificate]] = {}
    dscs: list[tuple[str, bytes, bytes | None]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise TrustListError(f"certificates[{index}] is not an object")
        kind, country = entry.get("certificateType"), entry.get("country")
        der = _b64(entry.get("rawData"), f"certificates[{index}].rawData")
        if not isinstance(country, str):
            raise TrustListError(f"certificates[{index}].country is missing")
        if kind == "CSCA":
            try:
                cscas.setdefault(country, []).append(x509.load_der_x509_certificate(der))
            except ValueError:
                raise TrustListError(f"certificates[{index}] is not a certificate") from None
        elif kind == "DSC":
            kid = entry.get("kid")
            dscs.append((country, der, None if kid is None else _b64(kid, f"certificates[{index}].kid")))
    kept: list[bytes] = []
    dropped_chain = dropped_other = 0
    for country, der, kid in dscs:
        if kid is not None and kid != dsc_kid(der):
            dropped_other += 1
            continue
        try:
            DscKey.from_der(der)
            cert = x509.load_der_x509_certificate(der)
        except (TrustListError, ValueError):
            dropped_other += 1
            continue
        if country in cscas and not _issued_by_one_of(cert, cscas[country]):
            dropped_chain += 1
            continue
        kept.append(der)
    if not kept:
        raise TrustListError("signed trust list holds no usable DSC")
    return SignedDscList(tuple(kept), sum(len(c) for c in cscas.values()), dropped_chain, dropped_other)
