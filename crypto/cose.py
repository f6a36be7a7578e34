"""COSE_Sign1 (RFC 9052 §4.2) parsing and ES256 / PS256 verification, as profiled by the hcert specification.

Only the algorithms the hcert specification §3.3.1 allows are accepted (an allowlist, never "whatever the
header says"): ES256 (-7) and PS256 (-37).  The algorithm is read from the protected bucket only, because an
unprotected ``alg`` is not covered by the signature and would let an attacker pick the verification algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from crypto.cbor import CborKey, CborTag, CborValue, decode_cbor, encode_cbor
from crypto.dcc_errors import CborError, CoseHeaderError, DccCoseError
from crypto.errors import AlgorithmMismatchError, BadSignatureError

__all__ = [
    "ALG_ES256",
    "ALG_PS256",
    "COSE_SIGN1_TAG",
    "CWT_TAG",
    "CoseSign1",
    "PublicKey",
    "parse_cose_sign1",
    "verify_cose_sign1",
]

COSE_SIGN1_TAG = 18  # RFC 9052 §2
CWT_TAG = 61  # RFC 8392 §6
ALG_ES256 = -7
ALG_PS256 = -37
_HEADER_ALG = 1
_HEADER_KID = 4
_ES256_SIGNATURE_BYTES = 64  # RFC 9053 §2.1: r || s, each padded to the 32-byte group order size
_PS256_SALT_BYTES = 32  # RFC 8230 §2: the salt length equals the hash length

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
HeaderMap: TypeAlias = dict[CborKey, CborValue]


@dataclass(frozen=True, slots=True)
class CoseSign1:
    """A structurally valid COSE_Sign1 message; ``protected_bytes`` is kept verbatim for the Sig_structure."""

    protected_bytes: bytes
    protected: HeaderMap
    unprotected: HeaderMap
    payload: bytes
    signature: bytes

    @property
    def alg(self) -> int | str | None:
        """The algorithm, from the protected bucket only."""
        value = self.protected.get(_HEADER_ALG)
        return value if isinstance(value, int | str) and not isinstance(value, bool) else None

    @property
    def alg_only_unprotected(self) -> bool:
        """True when ``alg`` sits in the unprotected bucket but not in the protected one."""
        return _HEADER_ALG not in self.protected and _HEADER_ALG in self.unprotected

    @property
    def kid(self) -> bytes | None:
        """The key id: protected label 4, else unprotected label 4 (RFC 9052 §3: protected wins)."""
        for bucket in (self.protected, self.unprotected):
            value = bucket.get(_HEADER_KID)
            if isinstance(value, bytes):
                return value
        return None

    @property
    def kid_conflict(self) -> bool:
        """True when both buckets carry different kids (RFC 9052 §3: labels SHOULD be disjoint)."""
        inner, outer = self.protected.get(_HEADER_KID), self.unprotected.get(_HEADER_KID)
        return inner is not None and outer is not None and inner != outer

    def sig_structure(self) -> bytes:
        """The ToBeSigned bytes of RFC 9052 §4.4: ["Signature1", protected, external_aad = h'', payload]."""
        return encode_cbor(["Signature1", self.protected_bytes, b"", self.payload])


def _check_header(bucket: HeaderMap, where: str) -> None:
    alg = bucket.get(_HEADER_ALG)
    if _HEADER_ALG in bucket and (isinstance(alg, bool) or not isinstance(alg, int | str)):
        raise DccCoseError(f"{where} alg is neither int nor tstr (RFC 9052 §3.1)")
    if _HEADER_KID in bucket and not isinstance(bucket[_HEADER_KID], bytes):
        raise DccCoseError(f"{where} kid is not a bstr (RFC 9052 §3.1)")


def parse_cose_sign1(data: bytes) -> CoseSign1:
    """Parse a COSE_Sign1: untagged, tag 18, or CWT tag 61 wrapping tag 18 (RFC 8392 §6).

    :raises DccCoseError: not CBOR, wrong tags, not a 4-element array of the right types, or a protected
        header that is not a serialized map.
    """
    try:
        item = decode_cbor(data)
    except CborError as exc:
        raise DccCoseError("COSE_Sign1 is not well-formed CBOR") from exc
    if isinstance(item, CborTag) and item.tag == CWT_TAG:
        item = item.value
        if not (isinstance(item, CborTag) and item.tag == COSE_SIGN1_TAG):
            raise DccCoseError("CWT tag must wrap a tagged COSE_Sign1")
    if isinstance(item, CborTag):
        if item.tag != COSE_SIGN1_TAG:
            raise DccCoseError("unexpected tag on COSE message")
        item = item.value
    if not isinstance(item, list) or len(item) != 4:
        raise DccCoseError("COSE_Sign1 is not a 4-element array")
    protected_bytes, unprotected, payload, signature = item
    if not isinstance(protected_bytes, bytes):
        raise DccCoseError("protected header is not a bstr")
    if not isinstance(unprotected, dict):
        raise DccCoseError("unprotected header is not a map")
    # A detached payload (nil) cannot occur in a QR code: the payload is the certificate.
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise DccCoseError("payload or signature is not a bstr")
    protected: HeaderMap = {}
    if protected_bytes:  # RFC 9052 §3: a zero-length bstr stands for an empty map
        try:
            decoded = decode_cbor(protected_bytes)
        except CborError as exc:
            raise DccCoseError("protected header is not well-formed CBOR") from exc
        if not isinstance(decoded, dict):
            raise DccCoseError("protected header is not a map")
        protected = decoded
    _check_header(protected, "protected")
    _check_header(unprotected, "unprotected")
    return CoseSign1(protected_bytes, protected, unprotected, payload, signature)


def verify_cose_sign1(message: CoseSign1, key: PublicKey) -> None:
    """Verify the signature with ``key`` under the protected ``alg``.

    :raises CoseHeaderError: ``alg`` is absent from the protected bucket.
    :raises AlgorithmMismatchError: ``alg`` is not ES256/PS256, or does not fit the key type.
    :raises BadSignatureError: the signature does not verify.
    """
    alg = message.alg
    if alg is None:
        raise CoseHeaderError("alg is not in the protected header")
    to_be_signed = message.sig_structure()
    try:
        if alg == ALG_ES256:
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
                raise AlgorithmMismatchError("ES256 needs a P-256 key")
            if len(message.signature) != _ES256_SIGNATURE_BYTES:
                raise BadSignatureError("ES256 signature is not 64 bytes")
            r = int.from_bytes(message.signature[:32], "big")
            s = int.from_bytes(message.signature[32:], "big")
            key.verify(encode_dss_signature(r, s), to_be_signed, ec.ECDSA(hashes.SHA256()))
        elif alg == ALG_PS256:
            if not isinstance(key, rsa.RSAPublicKey):
                raise AlgorithmMismatchError("PS256 needs an RSA key")
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=_PS256_SALT_BYTES)
            key.verify(message.signature, to_be_signed, pss, hashes.SHA256())
        else:
            raise AlgorithmMismatchError("algorithm outside the hcert allowlist (ES256, PS256)")
    except InvalidSignature:
        raise BadSignatureError("signature does not verify") from None
