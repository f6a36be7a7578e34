"""The native health code and place code against the JSON vectors, plus structural refusals."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crypto.base45 import b45decode, b45encode
from crypto.errors import (
    CodeError,
    CodeFormatError,
    CodeLifetimeError,
    TrustListError,
    UnknownFormatError,
    UnsupportedVersionError,
)
from crypto.keys import Alg, SigningKey
from crypto.native import (
    HEALTH_PREFIX,
    MAX_CODE_CHARS,
    Colour,
    issue_health_code,
    parse_health_code,
    verify_health_code,
    verify_place_code,
)
from crypto.trust import TrustedKey, TrustList, Usage

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "native.json").read_text())
WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 12, 31, tzinfo=UTC))


def _trust(name: str, usage: str) -> TrustList:
    key = SigningKey.from_pem(VECTORS["keys"][name]["private_pem"].encode())
    return TrustList([TrustedKey.create(key.public_key(), usage=Usage(usage), not_before=WINDOW[0],
                                        not_after=WINDOW[1])])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vector(case: dict[str, Any]) -> None:
    trust = _trust(case["key"], case["usage"])
    now = datetime.fromisoformat(case["now"])
    expect = case["expect"]
    verify = verify_place_code if case["code"].startswith("PGP:") else verify_health_code
    if "error" in expect:
        with pytest.raises(CodeError) as info:
            verify(case["code"], trust, now=now)
        assert info.value.code == expect["error"]
        return
    got = verify(case["code"], trust, now=now)
    for name, value in expect.items():
        if name == "ok":
            continue
        actual = getattr(got, {"colour": "colour_at_issue"}.get(name, name))
        if isinstance(actual, bytes):
            actual = actual.hex()
        elif isinstance(actual, datetime):
            actual = actual.isoformat()
        elif isinstance(actual, Colour):
            actual = actual.label
        assert actual == value, name


def test_ed25519_issue_is_byte_exact_with_the_vector() -> None:
    """Ed25519 signatures are deterministic, so the documented byte layout reproduces the vector exactly."""
    key = SigningKey.from_pem(VECTORS["keys"]["ed25519"]["private_pem"].encode())
    case = next(c for c in VECTORS["cases"] if c["name"] == "ed25519_valid")
    code = issue_health_code(key, holder_ref="hk-0000000042", colour=Colour.GREEN,
                             now=datetime(2026, 11, 27, 8, 0, tzinfo=UTC), nonce=bytes(range(12)), lifetime_s=300)
    assert code == case["code"]
    raw = b45decode(code[len(HEALTH_PREFIX):])
    assert raw[0] == 1 and raw[1] == 2 and raw[2:10] == key.kid
    assert int.from_bytes(raw[10:14], "big") == int(datetime(2026, 11, 27, 8, 0, tzinfo=UTC).timestamp())
    assert int.from_bytes(raw[14:18], "big") - int.from_bytes(raw[10:14], "big") == 300
    assert raw[18:30] == bytes(range(12)) and raw[30] == 0 and raw[31] == len("hk-0000000042")
    assert len(raw) == 32 + 13 + 64


NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _key_and_trust(alg: Alg = Alg.ES256) -> tuple[SigningKey, TrustList]:
    key = SigningKey.generate(alg)
    return key, TrustList([TrustedKey.create(key.public_key(), usage=Usage.HEALTH, not_before=WINDOW[0],
                                             not_after=WINDOW[1])])


def test_unknown_prefix_and_bad_base45_are_typed() -> None:
    _, trust = _key_and_trust()
    with pytest.raises(UnknownFormatError):
        verify_health_code("HC1:ABC", trust, now=NOW)
    with pytest.raises(CodeError) as info:
        verify_health_code("PGH:abc", trust, now=NOW)
    assert info.value.code == "malformed_code"
    with pytest.raises(CodeFormatError):
        verify_health_code("PGH:" + "A" * (MAX_CODE_CHARS + 1), trust, now=NOW)


def test_truncated_extended_and_wrong_version_codes_are_refused() -> None:
    key, _ = _key_and_trust()
    code = issue_health_code(key, holder_ref="h1", colour=Colour.GREEN, now=NOW, nonce=os.urandom(12))
    raw = b45decode(code[4:])
    for bad in (raw[:-1], raw + b"\x00", raw[:20]):
        with pytest.raises(CodeFormatError):
            parse_health_code(HEALTH_PREFIX + b45encode(bad))
    with pytest.raises(UnsupportedVersionError):
        parse_health_code(HEALTH_PREFIX + b45encode(b"\x02" + raw[1:]))
    with pytest.raises(CodeFormatError):  # holder reference with a forbidden byte
        parse_health_code(HEALTH_PREFIX + b45encode(raw[:32] + b"\x00" + raw[33:]))


def test_lifetime_over_five_minutes_is_refused_even_when_signed() -> None:
    key, trust = _key_and_trust()
    with pytest.raises(CodeFormatError):
        issue_health_code(key, holder_ref="h1", colour=Colour.GREEN, now=NOW, nonce=os.urandom(12), lifetime_s=301)
    raw = bytearray(b45decode(issue_health_code(key, holder_ref="h1", colour=Colour.GREEN, now=NOW,
                                                nonce=os.urandom(12))[4:]))
    body = bytes(raw[:-64])
    body = body[:14] + (int.from_bytes(body[10:14], "big") + 3600).to_bytes(4, "big") + body[18:]
    from crypto.native import _HEALTH_CONTEXT

    forged_long = HEALTH_PREFIX + b45encode(body + key.sign_raw(_HEALTH_CONTEXT + body))
    with pytest.raises(CodeLifetimeError):
        verify_health_code(forged_long, trust, now=NOW + timedelta(seconds=30))


def test_trust_entry_round_trips_and_rejects_a_kid_that_is_not_the_keys() -> None:
    key, _ = _key_and_trust(Alg.ED25519)
    entry = TrustedKey.create(key.public_key(), usage=Usage.HEALTH, not_before=WINDOW[0], not_after=WINDOW[1])
    again = TrustedKey.from_dict(entry.to_dict())
    assert (again.kid, again.alg, again.usage, again.not_after) == (entry.kid, entry.alg, entry.usage, entry.not_after)
    bad = entry.to_dict() | {"kid": "00" * 8}
    with pytest.raises(TrustListError):
        TrustedKey.from_dict(bad)
    with pytest.raises(TrustListError):
        TrustedKey.from_dict(entry.to_dict() | {"alg": "ES256"})
    with pytest.raises(TrustListError):
        TrustList([entry, entry])


def test_key_rotation_keeps_the_old_key_verifying_until_its_window_ends() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    trust = TrustList([
        TrustedKey.create(old.public_key(), usage=Usage.HEALTH, not_before=NOW - timedelta(days=30),
                          not_after=NOW + timedelta(hours=1)),
        TrustedKey.create(new.public_key(), usage=Usage.HEALTH, not_before=NOW - timedelta(hours=1),
                          not_after=NOW + timedelta(days=30)),
    ])
    for key in (old, new):
        code = issue_health_code(key, holder_ref="h1", colour=Colour.GREEN, now=NOW, nonce=os.urandom(12))
        assert verify_health_code(code, trust, now=NOW).kid == key.kid
    later = NOW + timedelta(hours=2)
    code = issue_health_code(old, holder_ref="h1", colour=Colour.GREEN, now=later, nonce=os.urandom(12))
    with pytest.raises(CodeError) as info:
        verify_health_code(code, trust, now=later)
    assert info.value.code == "key_out_of_window"
