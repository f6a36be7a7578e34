"""The paper code (issue 18 part 1, item 2) against the JSON vectors of docs/codes.md, plus structural refusals."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crypto.base45 import b45decode, b45encode
from crypto.dcc_trust import DscTrustList
from crypto.errors import CodeError, CodeFormatError, UnknownFormatError
from crypto.formats import TrustAnchors, verify_presented
from crypto.keys import SigningKey
from crypto.native import HEALTH_PREFIX, Colour, issue_health_code
from crypto.paper import MAX_PAPER_LIFETIME_S, PAPER_PREFIX, PaperCode, issue_paper_code, verify_paper_code
from crypto.trust import TrustedKey, TrustList, Usage

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "paper.json").read_text())
KEYS = json.loads((Path(__file__).parents[1] / "vectors" / "native.json").read_text())["keys"]
WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 12, 31, tzinfo=UTC))
ISSUED = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _key(name: str) -> SigningKey:
    return SigningKey.from_pem(KEYS[name]["private_pem"].encode())


def _trust(name: str, usage: str = "health") -> TrustList:
    return TrustList([TrustedKey.create(_key(name).public_key(), usage=Usage(usage), not_before=WINDOW[0],
                                        not_after=WINDOW[1])])


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vector(case: dict[str, Any]) -> None:
    trust = _trust(case["key"], case["usage"])
    now = datetime.fromisoformat(case["now"])
    expect = case["expect"]
    if "error" in expect:
        with pytest.raises(CodeError) as info:
            verify_paper_code(case["code"], trust, now=now)
        assert info.value.code == expect["error"]
        return
    got = verify_paper_code(case["code"], trust, now=now)
    for name, value in expect.items():
        if name == "ok":
            continue
        actual = getattr(got, name)
        actual = actual.hex() if isinstance(actual, bytes) else actual
        actual = actual.isoformat() if isinstance(actual, datetime) else actual
        assert actual == value, name


def test_ed25519_issue_is_byte_exact_with_the_vector() -> None:
    """Ed25519 signatures are deterministic: the documented layout reproduces the vector byte for byte."""
    case = next(c for c in VECTORS["cases"] if c["name"] == "ed25519_valid")
    code = issue_paper_code(_key("ed25519"), holder_ref="hk-0000000042", now=ISSUED, nonce=bytes(range(12)))
    assert code == case["code"]


def test_the_documented_layout_holds_no_colour_byte() -> None:
    case = next(c for c in VECTORS["cases"] if c["name"] == "ed25519_valid")
    raw = b45decode(case["code"][len(PAPER_PREFIX):])
    assert raw[0] == 1 and raw[10:14] == int(ISSUED.timestamp()).to_bytes(4, "big")
    assert raw[18:30] == bytes(range(12)) and raw[30] == len("hk-0000000042")
    assert raw[31:31 + 13] == b"hk-0000000042" and len(raw) == 31 + 13 + 64


def test_a_paper_code_verifies_to_a_live_status_presentation_without_a_colour() -> None:
    code = issue_paper_code(_key("es256"), holder_ref="h-1", now=ISSUED, nonce=os.urandom(12))
    anchors = TrustAnchors(native=_trust("es256"), dsc=DscTrustList([]))
    verified = verify_presented(code, anchors, now=ISSUED + timedelta(days=3))
    assert verified.format == "paper" and verified.live_status and verified.signed_colour is None
    assert isinstance(verified.evidence, PaperCode) and verified.holder_ref == "h-1"
    # Shown every day for a week: remembered for the static replay window only, never for its lifetime.
    assert verified.replay_until is None and verified.replay_id.startswith("paper:")


def test_issue_refuses_a_lifetime_beyond_seven_days_and_a_bad_holder() -> None:
    key = _key("es256")
    with pytest.raises(CodeFormatError):
        issue_paper_code(key, holder_ref="h-1", now=ISSUED, nonce=os.urandom(12), lifetime_s=MAX_PAPER_LIFETIME_S + 1)
    with pytest.raises(CodeFormatError):
        issue_paper_code(key, holder_ref="no spaces", now=ISSUED, nonce=os.urandom(12))


def test_a_health_code_is_not_a_paper_code_and_its_body_does_not_verify_as_one() -> None:
    health = issue_health_code(_key("es256"), holder_ref="h-1", colour=Colour.GREEN, now=ISSUED,
                               nonce=os.urandom(12))
    with pytest.raises(UnknownFormatError):
        verify_paper_code(health, _trust("es256"), now=ISSUED)
    with pytest.raises(CodeError) as info:
        verify_paper_code(PAPER_PREFIX + health[len(HEALTH_PREFIX):], _trust("es256"), now=ISSUED)
    assert info.value.code in {"malformed_code", "bad_signature"}


@pytest.mark.parametrize("cut", [1, 30, 64])
def test_a_truncated_or_padded_paper_code_is_malformed(cut: int) -> None:
    code = issue_paper_code(_key("es256"), holder_ref="h-1", now=ISSUED, nonce=os.urandom(12))
    raw = b45decode(code[len(PAPER_PREFIX):])
    for mangled in (raw[:-cut], raw + bytes(cut)):
        with pytest.raises(CodeError) as info:
            verify_paper_code(PAPER_PREFIX + b45encode(mangled), _trust("es256"), now=ISSUED)
        assert info.value.code == "malformed_code"
