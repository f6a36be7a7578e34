"""The place-code verifier's memory: a signature is checked once per text and key, every other check every time."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crypto.base45 import b45decode, b45encode
from crypto.errors import (
    BadSignatureError,
    CodeError,
    CodeExpiredError,
    CodeNotYetValidError,
    KeyRevokedError,
    UnknownKeyError,
    WrongKeyUsageError,
)
from crypto.keys import SigningKey
from crypto.native import PLACE_PREFIX, issue_place_code, verify_place_code
from crypto.place_cache import PlaceCodeVerifier
from crypto.trust import TrustedKey, TrustList, Usage

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "native.json").read_text())


def _trusted(key: SigningKey, usage: Usage = Usage.PLACE) -> TrustedKey:
    return TrustedKey.create(key.public_key(), usage=usage, not_before=NOW - timedelta(days=30),
                             not_after=NOW + timedelta(days=30))


def _place_code(key: SigningKey, place_id: str = "mall-7", *, starts: timedelta = timedelta(days=-1),
                lasts: timedelta = timedelta(days=2)) -> str:
    return issue_place_code(key, place_id=place_id, venue_class="B", jurisdiction="city/d1/s2",
                            not_before=NOW + starts, not_after=NOW + starts + lasts)


def _tampered(code: str) -> str:
    raw = bytearray(b45decode(code[len(PLACE_PREFIX):]))
    raw[-1] ^= 0x01  # one bit of the signature
    return PLACE_PREFIX + b45encode(bytes(raw))


def test_the_vector_verifies_the_same_on_a_miss_and_on_a_hit() -> None:
    case = next(c for c in VECTORS["cases"] if c["name"] == "place_valid")
    key = SigningKey.from_pem(VECTORS["keys"][case["key"]]["private_pem"].encode())
    trust = TrustList([TrustedKey.create(key.public_key(), usage=Usage.PLACE,
                                         not_before=datetime(2026, 1, 1, tzinfo=UTC),
                                         not_after=datetime(2027, 12, 31, tzinfo=UTC))])
    now = datetime.fromisoformat(case["now"])
    verifier = PlaceCodeVerifier()
    expected = verify_place_code(case["code"], trust, now=now)
    assert verifier.verify(case["code"], trust, now=now) == expected
    assert verifier.verify(case["code"], trust, now=now) == expected
    assert verifier.signature_checks == 1
    assert expected.place_id == case["expect"]["place_id"]


def test_a_venue_code_is_verified_once_for_all_its_visitors() -> None:
    key = SigningKey.generate()
    trust = TrustList([_trusted(key)])
    code = _place_code(key)
    verifier = PlaceCodeVerifier()
    places = {verifier.verify(code, trust, now=NOW + timedelta(seconds=i)).place_id for i in range(50)}
    assert places == {"mall-7"}
    assert verifier.signature_checks == 1 and len(verifier) == 1


def test_a_forged_code_is_refused_every_time_and_never_remembered() -> None:
    key = SigningKey.generate()
    trust = TrustList([_trusted(key)])
    forged = _tampered(_place_code(key))
    verifier = PlaceCodeVerifier()
    for _ in range(3):
        with pytest.raises(BadSignatureError):
            verifier.verify(forged, trust, now=NOW)
    assert verifier.signature_checks == 3 and len(verifier) == 0


def test_a_revoked_key_refuses_a_remembered_code_at_once() -> None:
    key = SigningKey.generate()
    trusted = _trusted(key)
    code = _place_code(key)
    verifier = PlaceCodeVerifier()
    verifier.verify(code, TrustList([trusted]), now=NOW)
    with pytest.raises(KeyRevokedError):
        verifier.verify(code, TrustList([trusted.revoke()]), now=NOW)
    with pytest.raises(UnknownKeyError):
        verifier.verify(code, TrustList([]), now=NOW)
    with pytest.raises(WrongKeyUsageError):
        verifier.verify(code, TrustList([_trusted(key, Usage.HEALTH)]), now=NOW)


def test_a_reloaded_trust_list_gets_the_signature_checked_again() -> None:
    """A different key object under the same kid is not taken on trust: the signature is verified against it."""
    key = SigningKey.generate()
    code = _place_code(key)
    verifier = PlaceCodeVerifier()
    verifier.verify(code, TrustList([_trusted(key)]), now=NOW)
    reloaded = TrustList([_trusted(key)])  # same key material, loaded again
    verifier.verify(code, reloaded, now=NOW)
    verifier.verify(code, reloaded, now=NOW)
    assert verifier.signature_checks == 2


def test_the_window_is_checked_on_every_hit() -> None:
    key = SigningKey.generate()
    trust = TrustList([_trusted(key)])
    code = _place_code(key, starts=timedelta(hours=1), lasts=timedelta(hours=2))
    verifier = PlaceCodeVerifier()
    with pytest.raises(CodeNotYetValidError):
        verifier.verify(code, trust, now=NOW)
    assert verifier.verify(code, trust, now=NOW + timedelta(hours=2)).place_id == "mall-7"
    with pytest.raises(CodeExpiredError):
        verifier.verify(code, trust, now=NOW + timedelta(hours=4))
    assert verifier.signature_checks == 1


def test_refusals_on_a_hit_match_the_uncached_verifier() -> None:
    """Same deny reason, in the same order of precedence, whether or not the text was seen before."""
    key = SigningKey.generate()
    trusted = _trusted(key)
    code = _place_code(key, starts=timedelta(hours=1), lasts=timedelta(hours=2))
    verifier = PlaceCodeVerifier()
    cases = [(TrustList([trusted]), NOW + timedelta(hours=2)), (TrustList([trusted]), NOW),
             (TrustList([trusted.revoke()]), NOW), (TrustList([trusted]), NOW + timedelta(days=40)),
             (TrustList([]), NOW)]
    for trust, now in cases + cases:
        expected: str | None = None
        try:
            verify_place_code(code, trust, now=now)
        except CodeError as exc:
            expected = exc.code
        got: str | None = None
        try:
            verifier.verify(code, trust, now=now)
        except CodeError as exc:
            got = exc.code
        assert got == expected, (now, expected)


def test_the_memory_is_bounded_and_forgets_the_oldest_first() -> None:
    key = SigningKey.generate()
    trust = TrustList([_trusted(key)])
    codes = [_place_code(key, f"shop-{i}") for i in range(5)]
    verifier = PlaceCodeVerifier(capacity=3)
    for code in codes:
        verifier.verify(code, trust, now=NOW)
    assert len(verifier) == 3
    verifier.verify(codes[-1], trust, now=NOW)  # still remembered
    assert verifier.signature_checks == 5
    verifier.verify(codes[0], trust, now=NOW)  # forgotten: checked again
    assert verifier.signature_checks == 6
    with pytest.raises(ValueError):
        PlaceCodeVerifier(capacity=0)
