"""The DCC Document Signer Certificate (DSC) trust list.

The hcert specification §3.3.1 identifies a DSC by its kid: the first 8 bytes of the SHA-256 hash of the DER
certificate.  Eight bytes are not a unique identifier, so when several DSCs share a kid a verifier tries every
one of them (hcert §3.3.1).  A DSC may restrict itself to entry types with extended-key-usage OIDs (§5.1.1);
without any of them it may sign every type.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from crypto.cose import PublicKey
from crypto.der import extended_key_usage_oids
from crypto.errors import TrustListError

__all__ = [
    "DCC_KEY_USAGE_OIDS",
    "DscKey",
    "DscTrustList",
    "EntryType",
    "dsc_kid",
    "json_bundle_ders",
]

EntryType = Literal["t", "v", "r"]
KID_BYTES = 8

# hcert §5.1.1 key-usage OIDs, plus the "1.3.6.1.4.1.0.1847" variants some national issuers shipped.
DCC_KEY_USAGE_OIDS: Mapping[str, EntryType] = {
    "1.3.6.1.4.1.1847.2021.1.1": "t",
    "1.3.6.1.4.1.1847.2021.1.2": "v",
    "1.3.6.1.4.1.1847.2021.1.3": "r",
    "1.3.6.1.4.1.0.1847.2021.1.1": "t",
    "1.3.6.1.4.1.0.1847.2021.1.2": "v",
    "1.3.6.1.4.1.0.1847.2021.1.3": "r",
}


def dsc_kid(der: bytes) -> bytes:
    """The hcert kid of a certificate: SHA-256 over its DER, first 8 bytes."""
    return hashlib.sha256(der).digest()[:KID_BYTES]


@dataclass(frozen=True, slots=True)
class DscKey:
    """One trusted DSC: its kid, public key, validity window and the entry types it may sign."""

    kid: bytes
    public_key: PublicKey
    not_before: datetime
    not_after: datetime
    entry_types: frozenset[EntryType] | None  # None: no DCC key-usage OID, so every type is allowed

    def allows(self, entry_type: EntryType) -> bool:
        """Whether the key-usage OIDs permit signing a DCC of this entry type."""
        return self.entry_types is None or entry_type in self.entry_types

    def valid_at(self, now: datetime) -> bool:
        """Whether ``now`` lies inside the certificate's validity window (RFC 5280 §4.1.2.5, inclusive)."""
        return self.not_before <= now <= self.not_after

    @classmethod
    def from_der(cls, der: bytes) -> DscKey:
        """Load a DSC from DER.

        :raises TrustListError: not a parseable X.509 certificate, a malformed extended-key-usage extension,
            or a key that is neither EC nor RSA.
        """
        try:
            cert = x509.load_der_x509_certificate(der)
            key = cert.public_key()
            entry_types = _entry_types(cert)
            not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        except ValueError as exc:
            raise TrustListError("certificate cannot be parsed") from exc
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise TrustListError("DSC key is neither EC nor RSA (hcert §3.3.1 allows ES256 and PS256)")
        return cls(dsc_kid(der), key, not_before, not_after, entry_types)


def _eku_oids(cert: x509.Certificate) -> list[str] | None:
    try:
        usage = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    except x509.ExtensionNotFound:
        return None
    except ValueError:
        # The library refuses every extension when one breaks RFC 5280 (an empty EKU does, and real DSCs
        # carry one); recover the EKU alone, still refusing anything that is not well-formed DER.
        return extended_key_usage_oids(cert.tbs_certificate_bytes)
    assert isinstance(usage, x509.ExtendedKeyUsage)
    return [oid.dotted_string for oid in usage]


def _entry_types(cert: x509.Certificate) -> frozenset[EntryType] | None:
    found = frozenset(DCC_KEY_USAGE_OIDS[oid] for oid in _eku_oids(cert) or () if oid in DCC_KEY_USAGE_OIDS)
    # Other purposes (e.g. serverAuth) do not restrict DCC signing: only the DCC OIDs do.
    return found or None


@dataclass(frozen=True, slots=True)
class DscTrustList:
    """Trusted DSCs indexed by kid; duplicate kids are kept and all of them are tried."""

    keys: tuple[DscKey, ...]
    _by_kid: Mapping[bytes, tuple[DscKey, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[bytes, tuple[DscKey, ...]] = {}
        for key in self.keys:
            index[key.kid] = (*index.get(key.kid, ()), key)
        object.__setattr__(self, "_by_kid", index)

    def candidates(self, kid: bytes | None) -> tuple[DscKey, ...]:
        """Every trusted key under ``kid`` (empty when unknown or absent)."""
        return () if kid is None else self._by_kid.get(kid, ())

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def from_der_list(cls, ders: Iterable[bytes]) -> DscTrustList:
        """Build from DER certificates.

        :raises TrustListError: an entry that is not a usable DSC.
        """
        return cls(tuple(DscKey.from_der(der) for der in ders))

    @classmethod
    def from_pem(cls, pem: bytes) -> DscTrustList:
        """Build from a PEM bundle holding one or more certificates.

        :raises TrustListError: no certificate, or one that is not a usable DSC.
        """
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise TrustListError("PEM bundle holds no parseable certificate") from exc
        return cls.from_der_list(cert.public_bytes(Encoding.DER) for cert in certs)

    @classmethod
    def from_pem_files(cls, paths: Iterable[str | os.PathLike[str]]) -> DscTrustList:
        """Build from PEM files (a convenience for the gateway's I/O edge; everything else here is pure)."""
        keys: list[DscKey] = []
        for path in paths:
            keys.extend(cls.from_pem(Path(path).read_bytes()).keys)
        return cls(tuple(keys))

    @classmethod
    def from_json_bundle(cls, data: bytes | str) -> DscTrustList:
        """Build from JSON: a list of base64 DER strings, or ``{"certificates": [...]}``.

        :raises TrustListError: not that JSON shape, bad base64, or an unusable certificate.
        """
        return cls.from_der_list(json_bundle_ders(data))


def json_bundle_ders(data: bytes | str) -> list[bytes]:
    """The DER certificates of a JSON trust bundle: a list of base64 DER strings, or ``{"certificates": [...]}``.

    :raises TrustListError: not that JSON shape, or an entry that is not base64.
    """
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise TrustListError("trust bundle is not JSON") from exc
    items = doc.get("certificates") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise TrustListError("trust bundle must be a list of base64 DER strings")
    try:
        return [base64.b64decode(item, validate=True) for item in items]
    except binascii.Error as exc:
        raise TrustListError("trust bundle entry is not base64") from exc
