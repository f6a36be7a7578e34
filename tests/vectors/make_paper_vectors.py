"""Regenerate tests/vectors/paper.json (run from the repo root: python tests/vectors/make_paper_vectors.py).

Signed with the TEST KEYS of tests/vectors/native.json (published on purpose, never trusted outside the tests).
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

from crypto.base45 import b45decode, b45encode
from crypto.keys import SigningKey
from crypto.paper import PAPER_PREFIX, issue_paper_code

ISSUED = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)
WEEK = 7 * 24 * 3600


def main() -> None:
    native = json.loads(Path("tests/vectors/native.json").read_text())
    keys = {name: SigningKey.from_pem(k["private_pem"].encode()) for name, k in native["keys"].items()}
    nonce = bytes(range(12))
    cases = []
    for name, key in keys.items():
        code = issue_paper_code(key, holder_ref="hk-0000000042", now=ISSUED, nonce=nonce)
        exp = (ISSUED + timedelta(seconds=WEEK)).isoformat()
        fields = {"kid": key.kid.hex(), "iat": ISSUED.isoformat(), "exp": exp,
                  "nonce": nonce.hex(), "holder_ref": "hk-0000000042"}
        on_day_6 = (ISSUED + timedelta(days=6)).isoformat()
        cases.append({"name": f"{name}_valid", "key": name, "usage": "health", "code": code, "now": on_day_6,
                      "expect": {"ok": True, **fields}})
        cases.append({"name": f"{name}_expired", "key": name, "usage": "health", "code": code,
                      "now": (ISSUED + timedelta(seconds=WEEK + 11)).isoformat(), "expect": {"error": "code_expired"}})
        cases.append({"name": f"{name}_not_yet_valid", "key": name, "usage": "health", "code": code,
                      "now": (ISSUED - timedelta(seconds=11)).isoformat(), "expect": {"error": "not_yet_valid"}})
        raw = bytearray(b45decode(code[len(PAPER_PREFIX):]))
        raw[-5] ^= 0x40
        cases.append({"name": f"{name}_tampered_signature", "key": name, "usage": "health",
                      "code": PAPER_PREFIX + b45encode(bytes(raw)), "now": on_day_6,
                      "expect": {"error": "bad_signature"}})
        cases.append({"name": f"{name}_wrong_usage", "key": name, "usage": "place", "code": code, "now": on_day_6,
                      "expect": {"error": "wrong_key_usage"}})
    # Signed, but valid for eight days: beyond the format's 7-day cap (issue_paper_code refuses to make one).
    key = keys["es256"]
    iat = int(ISSUED.timestamp())
    body = struct.pack(">BB8sII12sB", 1, key.alg_id, key.kid, iat, iat + 8 * 24 * 3600, nonce, 3) + b"h-8"
    long_lived = PAPER_PREFIX + b45encode(body + key.sign_raw(b"placegate/paper-code/v1\x00" + body))
    cases.append({"name": "es256_eight_days", "key": "es256", "usage": "health", "code": long_lived,
                  "now": (ISSUED + timedelta(days=1)).isoformat(), "expect": {"error": "lifetime_too_long"}})
    # The same bytes signed under the health-code context: a signature never crosses formats.
    body = struct.pack(">BB8sII12sB", 1, key.alg_id, key.kid, iat, iat + WEEK, nonce, 3) + b"h-1"
    crossed = PAPER_PREFIX + b45encode(body + key.sign_raw(b"placegate/health-code/v1\x00" + body))
    cases.append({"name": "es256_health_context", "key": "es256", "usage": "health", "code": crossed,
                  "now": (ISSUED + timedelta(days=1)).isoformat(), "expect": {"error": "bad_signature"}})
    doc = {"comment": "Paper code test vectors; see docs/codes.md. Keys: tests/vectors/native.json (test keys only).",
           "cases": cases}
    Path("tests/vectors/paper.json").write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
