"""Regenerate tests/vectors/native.json (run from the repo root: python tests/vectors/make_native_vectors.py).

The keys are TEST KEYS, published here on purpose; they are never trusted outside the test suite.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.base45 import b45decode, b45encode
from crypto.keys import Alg, SigningKey
from crypto.native import HEALTH_PREFIX, Colour, issue_health_code, issue_place_code

ISSUED = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)


def main() -> None:
    keys = {"es256": SigningKey.generate(Alg.ES256), "ed25519": SigningKey.generate(Alg.ED25519)}
    cases = []
    for name, key in keys.items():
        code = issue_health_code(key, holder_ref="hk-0000000042", colour=Colour.GREEN, now=ISSUED,
                                 nonce=bytes(range(12)), lifetime_s=300)
        fields = {"kid": key.kid.hex(), "iat": ISSUED.isoformat(), "exp": (ISSUED + timedelta(seconds=300)).isoformat(),
                  "nonce": bytes(range(12)).hex(), "colour": "green", "holder_ref": "hk-0000000042"}
        at = (ISSUED + timedelta(seconds=30)).isoformat()
        cases.append({"name": f"{name}_valid", "key": name, "usage": "health", "code": code, "now": at,
                      "expect": {"ok": True, **fields}})
        cases.append({"name": f"{name}_expired", "key": name, "usage": "health", "code": code,
                      "now": (ISSUED + timedelta(seconds=311)).isoformat(), "expect": {"error": "code_expired"}})
        cases.append({"name": f"{name}_not_yet_valid", "key": name, "usage": "health", "code": code,
                      "now": (ISSUED - timedelta(seconds=11)).isoformat(), "expect": {"error": "not_yet_valid"}})
        raw = bytearray(b45decode(code[len(HEALTH_PREFIX):]))
        raw[-5] ^= 0x40
        cases.append({"name": f"{name}_tampered_signature", "key": name, "usage": "health",
                      "code": HEALTH_PREFIX + b45encode(bytes(raw)), "now": at, "expect": {"error": "bad_signature"}})
        raw = bytearray(b45decode(code[len(HEALTH_PREFIX):]))
        raw[28] = 2  # colour byte flipped to red: the signature no longer covers the body
        cases.append({"name": f"{name}_tampered_colour", "key": name, "usage": "health",
                      "code": HEALTH_PREFIX + b45encode(bytes(raw)), "now": at, "expect": {"error": "bad_signature"}})
        cases.append({"name": f"{name}_wrong_usage", "key": name, "usage": "place", "code": code, "now": at,
                      "expect": {"error": "wrong_key_usage"}})
    place = issue_place_code(keys["ed25519"], place_id="hosp-001", venue_class="A",
                             jurisdiction="city/d1/s2/g3/c4/b5", not_before=ISSUED,
                             not_after=ISSUED + timedelta(days=365))
    cases.append({"name": "place_valid", "key": "ed25519", "usage": "place", "code": place,
                  "now": (ISSUED + timedelta(days=1)).isoformat(),
                  "expect": {"ok": True, "place_id": "hosp-001", "venue_class": "A",
                             "jurisdiction": "city/d1/s2/g3/c4/b5"}})
    doc = {
        "comment": "Native code test vectors; see docs/codes.md. Keys are test keys only.",
        "keys": {
            n: {"alg": k.alg.value, "kid": k.kid.hex(), "private_pem": k.to_pem().decode()} for n, k in keys.items()
        },
        "cases": cases,
    }
    Path("tests/vectors/native.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
