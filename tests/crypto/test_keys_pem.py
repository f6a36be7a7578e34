"""crypto.keys.load_public_pem: an authority's SubjectPublicKeyInfo PEM, and nothing else."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from crypto.errors import TrustListError
from crypto.keys import Alg, SigningKey, kid_of, load_public_pem, public_key_der


@pytest.mark.parametrize("alg", list(Alg))
def test_a_public_pem_loads_to_the_key_whose_kid_the_codes_carry(alg: Alg) -> None:
    signer = SigningKey.generate(alg)
    pem = signer.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    key = load_public_pem(pem)
    assert public_key_der(key) == public_key_der(signer.public_key())
    assert kid_of(key) == signer.kid


@pytest.mark.parametrize("private", [ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()])
def test_a_private_key_is_refused_though_its_public_half_could_be_derived(
    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
) -> None:
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.OpenSSH):
        if fmt is serialization.PrivateFormat.OpenSSH and isinstance(private, ec.EllipticCurvePrivateKey):
            fmt = serialization.PrivateFormat.TraditionalOpenSSL
        pem = private.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        with pytest.raises(TrustListError, match="private key"):
            load_public_pem(pem)


def test_a_p384_key_is_refused() -> None:
    pem = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(TrustListError, match="only P-256 and Ed25519"):
        load_public_pem(pem)
