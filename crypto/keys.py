"""Signing algorithms, key ids and issuer keys of the native formats.

ES256 is the default (P-256; the faster verify with today's OpenSSL), Ed25519 the alternative. The key id is
the first 8 bytes of SHA-256 over the public key's SubjectPublicKeyInfo DER — the same construction the EU DCC
uses over a certificate, so one trust-list shape serves both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from crypto.errors import BadSignatureError, TrustListError

__all__ = [
    "ALG_IDS",
    "Alg",
    "AlgId",
    "PublicKey",
    "SigningKey",
    "kid_of",
    "load_public_key",
    "load_public_pem",
    "public_key_der",
    "verify_raw",
]

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class Alg(StrEnum):
    """Algorithms allowed for native codes (an allowlist: nothing else is ever accepted)."""

    ES256 = "ES256"
    ED25519 = "Ed25519"


class AlgId(IntEnum):
    """The algorithm byte in the native wire formats."""

    ES256 = 1
    ED25519 = 2


ALG_IDS: dict[int, Alg] = {AlgId.ES256: Alg.ES256, AlgId.ED25519: Alg.ED25519}
_ALG_TO_ID = {v: k for k, v in ALG_IDS.items()}
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def public_key_der(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER of a public key."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def kid_of(key: PublicKey) -> bytes:
    """Key id: first 8 bytes of SHA-256 over the SubjectPublicKeyInfo DER."""
    return hashlib.sha256(public_key_der(key)).digest()[:8]


def alg_of(key: PublicKey) -> Alg:
    """The only algorithm a key may be used with (the algorithm must match the key)."""
    if isinstance(key, ed25519.Ed25519PublicKey):
        return Alg.ED25519
    if isinstance(key.curve, ec.SECP256R1):
        return Alg.ES256
    raise TrustListError("only P-256 and Ed25519 keys are supported")


def load_public_key(der: bytes) -> PublicKey:
    """Parse a SubjectPublicKeyInfo DER public key of a supported type.

    :raises TrustListError: for unparseable keys and other key types or curves.
    """
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError) as exc:
        raise TrustListError("unparseable public key") from exc
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise TrustListError("only P-256 and Ed25519 keys are supported")


def load_public_pem(pem: bytes) -> PublicKey:
    """Parse an authority's public key from a SubjectPublicKeyInfo PEM (``-----BEGIN PUBLIC KEY-----``).

    A private key is refused even though its public half could be derived: the gateway must never be handed an
    issuer's signing key, and an operator who holds one should learn that at once.

    :raises TrustListError: a private key, more or less than one PEM block, an unparseable key, or a key type
        or curve other than P-256 and Ed25519.
    """
    if b"PRIVATE KEY-----" in pem:
        raise TrustListError("this is a private key: import only the public key (openssl pkey -pubout)")
    if pem.count(b"-----BEGIN ") != 1 or b"-----BEGIN PUBLIC KEY-----" not in pem:
        raise TrustListError("not a PEM public key: expected one -----BEGIN PUBLIC KEY----- block")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise TrustListError("malformed PEM public key") from exc
    # Through DER, so the type and curve allowlist is the one every stored key passes (load_public_key).
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return load_public_key(der)


def verify_raw(key: PublicKey, alg: Alg, signature: bytes, message: bytes) -> None:
    """Verify a 64-byte raw signature (ES256: r||s as in JOSE/COSE; Ed25519: RFC 8032).

    :raises BadSignatureError: when the signature does not verify.
    """
    if len(signature) != 64:
        raise BadSignatureError("signature must be 64 bytes")
    try:
        if alg is Alg.ES256 and isinstance(key, ec.EllipticCurvePublicKey):
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            key.verify(der, message, _ECDSA_SHA256)
        elif alg is Alg.ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            raise BadSignatureError("algorithm does not match the key")
    except InvalidSignature:
        raise BadSignatureError("signature does not verify") from None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An issuer's private key (health-code authority or city operation institution)."""

    kid: bytes
    alg: Alg
    private_key: PrivateKey

    @classmethod
    def generate(cls, alg: Alg = Alg.ES256) -> SigningKey:
        """Create a fresh key pair."""
        private: PrivateKey
        if alg is Alg.ED25519:
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            private = ec.generate_private_key(ec.SECP256R1())
        return cls(kid=kid_of(private.public_key()), alg=alg, private_key=private)

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        """Load a PKCS#8 PEM private key of a supported type."""
        private = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise TrustListError("only P-256 and Ed25519 keys are supported")
        public = private.public_key()
        return cls(kid=kid_of(public), alg=alg_of(public), private_key=private)

    @property
    def alg_id(self) -> int:
        return int(_ALG_TO_ID[self.alg])

    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def sign_raw(self, message: bytes) -> bytes:
        """Sign, returning the 64-byte raw form the native formats carry."""
        if isinstance(self.private_key, ed25519.Ed25519PrivateKey):
            return self.private_key.sign(message)
        r, s = decode_dss_signature(self.private_key.sign(message, _ECDSA_SHA256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
