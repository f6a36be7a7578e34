"""The paper code: a printed, longer-lived native code for people without a phone (issue 18, docs/codes.md).

``PAPER_PREFIX + base45(body || signature)``, like the native health code, but valid for up to 7 days and
carrying no colour: a printed code cannot follow its holder's status, so it proves only who the holder is, and
the gateway decides on the live status alone (never admitted in degraded mode: ``policy/admission.py``). The
signature covers its own context string, so neither a health-code nor a place-code signature verifies as one.
Signed by the health-code authority's key (usage ``health``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crypto.base45 import b45encode
from crypto.errors import CodeFormatError, UnsupportedVersionError
from crypto.keys import ALG_IDS, SigningKey, verify_raw
from crypto.native import check_lifetime, strip_prefix
from crypto.trust import TrustList, Usage

__all__ = [
    "MAX_PAPER_LIFETIME_S",
    "PAPER_PREFIX",
    "PaperCode",
    "issue_paper_code",
    "parse_paper_code",
    "verify_paper_code",
]

PAPER_PREFIX = "PGQ:"
VERSION = 1
# Printed once, carried for a week: long enough to be worth printing, short enough that a lost sheet dies soon.
MAX_PAPER_LIFETIME_S = 7 * 24 * 3600
_MAX_LIFETIME = timedelta(seconds=MAX_PAPER_LIFETIME_S)
_CONTEXT = b"placegate/paper-code/v1\x00"
_SIG = 64
_HEAD = struct.Struct(">BB8sII12sB")  # version alg kid iat exp nonce holder_len
_HOLDER_RE = re.compile(rb"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True, slots=True)
class PaperCode:
    """A paper code whose signature and validity have been checked."""

    kid: bytes
    iat: datetime
    exp: datetime
    nonce: bytes
    holder_ref: str  # the same opaque reference the holder's health code carries; never an ID number


def issue_paper_code(key: SigningKey, *, holder_ref: str, now: datetime, nonce: bytes,
                     lifetime_s: int = MAX_PAPER_LIFETIME_S) -> str:
    """Mint a paper code (the health-code authority's job; the gateway's ``issue --paper`` is a demo tool)."""
    holder = holder_ref.encode("ascii", "replace")
    if not _HOLDER_RE.fullmatch(holder) or len(nonce) != 12 or not 0 < lifetime_s <= MAX_PAPER_LIFETIME_S:
        raise CodeFormatError("invalid holder reference, nonce or lifetime")
    iat = int(now.timestamp())
    body = _HEAD.pack(VERSION, key.alg_id, key.kid, iat, iat + lifetime_s, nonce, len(holder)) + holder
    return PAPER_PREFIX + b45encode(body + key.sign_raw(_CONTEXT + body))


def parse_paper_code(text: str) -> tuple[PaperCode, int, bytes, bytes]:
    """Decode without verifying: (fields, algorithm id, signed message, signature).

    :raises CodeFormatError, Base45Error, UnsupportedVersionError: on any structural defect.
    """
    raw = strip_prefix(text, PAPER_PREFIX)
    head = _HEAD.size
    if len(raw) < head + 1 + _SIG:
        raise CodeFormatError("truncated paper code")
    version, alg_id, kid, iat, exp, nonce, holder_len = _HEAD.unpack_from(raw)
    if version != VERSION:
        raise UnsupportedVersionError("unsupported paper-code version")
    if len(raw) != head + holder_len + _SIG:
        raise CodeFormatError("paper-code length does not match its fields")
    holder = raw[head : head + holder_len]
    if alg_id not in ALG_IDS or not _HOLDER_RE.fullmatch(holder):
        raise CodeFormatError("invalid paper-code field")
    code = PaperCode(kid, datetime.fromtimestamp(iat, UTC), datetime.fromtimestamp(exp, UTC), nonce,
                     holder.decode("ascii"))
    return code, alg_id, _CONTEXT + raw[: head + holder_len], raw[head + holder_len :]


def verify_paper_code(text: str, trust: TrustList, *, now: datetime) -> PaperCode:
    """Decode and verify a paper code: key (usage ``health``), signature, then validity against ``now``.

    :raises CodeError: a subclass whose ``code`` is the deny reason.
    """
    code, alg_id, message, signature = parse_paper_code(text)
    key = trust.resolve(code.kid, alg=ALG_IDS[alg_id], usage=Usage.HEALTH, now=now)
    verify_raw(key.public_key, key.alg, signature, message)
    check_lifetime(code.iat, code.exp, now, max_lifetime=_MAX_LIFETIME, what="paper code")
    return code
