"""Place codes whose signature has already been checked, so a venue's code costs one verification, not one per visit.

A self-scan presents two signed codes: the visitor's health code, new every minute, and the venue's place code,
the same text for every visitor until the venue's code is reissued. Without this cache every self-scan pays two
ECDSA verifications (about 42 µs each on the benchmark machine, the largest single cost of a scan); with it the
place code's signature is checked once per text and trusted key.

Only the signature check is skipped on a hit, and only while the trust list still resolves the code's kid to the
very key object that verified it. Every other check runs on every scan, in the same order as
``verify_place_code``: the key (unknown, wrong usage or algorithm, revoked, outside its window), then the code's
own window. A reloaded or edited trust list therefore takes effect at once, and a forged code is never cached
(its verification fails, so nothing is stored).
"""

from __future__ import annotations

from datetime import datetime

from crypto.keys import ALG_IDS, Alg, PublicKey, verify_raw
from crypto.native import PlaceCode, check_place_window, parse_place_code
from crypto.trust import TrustList, Usage

__all__ = ["DEFAULT_CAPACITY", "PlaceCodeVerifier"]

# A city has tens of thousands of venues; an entry is a few hundred bytes, so this bounds the cache near 10 MB.
DEFAULT_CAPACITY = 32_768


class PlaceCodeVerifier:
    """``verify_place_code`` with a bounded memory of signatures already verified (pure: no I/O, no clock)."""

    __slots__ = ("_capacity", "_verified", "signature_checks")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        # text -> (decoded code, its algorithm, the key object whose verification vouched for the text)
        self._verified: dict[str, tuple[PlaceCode, Alg, PublicKey]] = {}
        self.signature_checks = 0  # signatures actually verified (the tests and the benchmark read it)

    def __len__(self) -> int:
        return len(self._verified)

    def verify(self, text: str, trust: TrustList, *, now: datetime) -> PlaceCode:
        """The verified place code, refused exactly as ``crypto.native.verify_place_code`` refuses it.

        :raises CodeError: a subclass whose ``code`` is the deny reason.
        """
        hit = self._verified.get(text)
        if hit is not None:
            code, alg, public_key = hit
            key = trust.resolve(code.kid, alg=alg, usage=Usage.PLACE, now=now)
            if key.public_key is public_key:
                check_place_window(code, now)
                return code
        code, alg_id, message, signature = parse_place_code(text)
        key = trust.resolve(code.kid, alg=ALG_IDS[alg_id], usage=Usage.PLACE, now=now)
        self.signature_checks += 1
        verify_raw(key.public_key, key.alg, signature, message)
        # Remembered before the window check: a code that is not yet valid needs no second verification later.
        self._remember(text, (code, key.alg, key.public_key))
        check_place_window(code, now)
        return code

    def _remember(self, text: str, entry: tuple[PlaceCode, Alg, PublicKey]) -> None:
        verified = self._verified
        if text not in verified and len(verified) >= self._capacity:
            # Oldest first: dicts keep insertion order, and a venue's current code is re-added on its next scan.
            del verified[next(iter(verified))]
        verified[text] = entry
