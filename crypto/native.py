"""The native dynamic health code and the signed place code: byte format, issuing and verification.

The byte layout is specified in docs/codes.md with test vectors in tests/vectors/native.json. Both formats are
``PREFIX + base45(body || signature)``; the signature covers a context string plus the body, so a place-code
signature can never be replayed as a health-code signature even under a mis-configured shared key.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum

from crypto.base45 import b45decode, b45encode
from crypto.errors import (
    CodeExpiredError,
    CodeFormatError,
    CodeLifetimeError,
    CodeNotYetValidError,
    UnknownFormatError,
    UnsupportedVersionError,
)
from crypto.keys import ALG_IDS, SigningKey, verify_raw
from crypto.trust import TrustList, Usage

__all__ = [
    "HEALTH_PREFIX",
    "MAX_CODE_CHARS",
    "MAX_LIFETIME_S",
    "PLACE_PREFIX",
    "Colour",
    "HealthCode",
    "PlaceCode",
    "check_lifetime",
    "check_place_window",
    "issue_health_code",
    "issue_place_code",
    "parse_health_code",
    "parse_place_code",
    "strip_prefix",
    "verify_health_code",
    "verify_place_code",
]

HEALTH_PREFIX = "PGH:"
PLACE_PREFIX = "PGP:"
VERSION = 1
# A native code is refreshed every <= 60 s; docs/codes.md caps its life at 5 minutes so a screenshot goes stale.
MAX_LIFETIME_S = 300
LEEWAY_S = 10  # tolerated clock difference between issuer and gateway
MAX_CODE_CHARS = 1024  # far above any valid code; bounds work done on hostile input
_MAX_LIFETIME, _LEEWAY = timedelta(seconds=MAX_LIFETIME_S), timedelta(seconds=LEEWAY_S)  # built once, not per scan
_HEALTH_CONTEXT = b"placegate/health-code/v1\x00"
_PLACE_CONTEXT = b"placegate/place-code/v1\x00"
_SIG = 64
_HEALTH_HEAD = struct.Struct(">BB8sII12sBB")  # version alg kid iat exp nonce colour holder_len
_PLACE_HEAD = struct.Struct(">BB8sIIcB")  # version alg kid not_before not_after venue_class place_len
_HOLDER_RE = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_PLACE_ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_JURISDICTION_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}(/[a-z0-9][a-z0-9_-]{0,31}){0,5}")


class Colour(IntEnum):
    """Health-code colour; the signed colour at issue is the fallback in degraded mode."""

    GREEN = 0
    YELLOW = 1
    RED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class HealthCode:
    """A health code whose signature and lifetime have been checked."""

    kid: bytes
    iat: datetime
    exp: datetime
    nonce: bytes
    colour_at_issue: Colour
    holder_ref: str  # opaque reference issued by the health-code authority; never a national ID number


@dataclass(frozen=True, slots=True)
class PlaceCode:
    """A place code signed by the city operation institution, checked."""

    kid: bytes
    place_id: str
    venue_class: str
    jurisdiction: str
    not_before: datetime
    not_after: datetime


def _ts(value: datetime) -> int:
    return int(value.timestamp())


def _dt(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def strip_prefix(text: str, prefix: str) -> bytes:
    """The base45-decoded body of a code with ``prefix`` (native and paper codes share the envelope).

    :raises CodeFormatError: longer than MAX_CODE_CHARS. :raises UnknownFormatError: another prefix.
    """
    if len(text) > MAX_CODE_CHARS:
        raise CodeFormatError("code too long")
    if not text.startswith(prefix):
        raise UnknownFormatError("wrong prefix")
    return b45decode(text[len(prefix) :])


def issue_health_code(
    key: SigningKey,
    *,
    holder_ref: str,
    colour: Colour,
    now: datetime,
    nonce: bytes,
    lifetime_s: int = MAX_LIFETIME_S,
) -> str:
    """Mint a native health code (the issuer's job; the gateway uses this only in demo and test tools)."""
    holder = holder_ref.encode("ascii")
    if not _HOLDER_RE.fullmatch(holder) or len(nonce) != 12 or not 0 < lifetime_s <= MAX_LIFETIME_S:
        raise CodeFormatError("invalid holder reference, nonce or lifetime")
    iat = _ts(now)
    body = _HEALTH_HEAD.pack(VERSION, key.alg_id, key.kid, iat, iat + lifetime_s, nonce, colour, len(holder))
    body += holder
    return HEALTH_PREFIX + b45encode(body + key.sign_raw(_HEALTH_CONTEXT + body))


def parse_health_code(text: str) -> tuple[HealthCode, int, bytes, bytes]:
    """Decode without verifying: (fields, algorithm id, signed message, signature).

    :raises CodeFormatError, Base45Error, UnsupportedVersionError: on any structural defect.
    """
    raw = strip_prefix(text, HEALTH_PREFIX)
    head = _HEALTH_HEAD.size
    if len(raw) < head + 1 + _SIG:
        raise CodeFormatError("truncated health code")
    version, alg_id, kid, iat, exp, nonce, colour, holder_len = _HEALTH_HEAD.unpack_from(raw)
    if version != VERSION:
        raise UnsupportedVersionError("unsupported health-code version")
    if len(raw) != head + holder_len + _SIG:
        raise CodeFormatError("health-code length does not match its fields")
    holder = raw[head : head + holder_len]
    if alg_id not in ALG_IDS or colour > Colour.RED or not _HOLDER_RE.fullmatch(holder):
        raise CodeFormatError("invalid health-code field")
    code = HealthCode(kid, _dt(iat), _dt(exp), nonce, Colour(colour), holder.decode("ascii"))
    return code, alg_id, _HEALTH_CONTEXT + raw[: head + holder_len], raw[head + holder_len :]


def verify_health_code(text: str, trust: TrustList, *, now: datetime) -> HealthCode:
    """Decode and verify a native health code: key, signature, then lifetime against ``now``.

    :raises CodeError: a subclass whose ``code`` is the deny reason.
    """
    code, alg_id, message, signature = parse_health_code(text)
    key = trust.resolve(code.kid, alg=ALG_IDS[alg_id], usage=Usage.HEALTH, now=now)
    verify_raw(key.public_key, key.alg, signature, message)
    check_lifetime(code.iat, code.exp, now)
    return code


def check_lifetime(
    iat: datetime, exp: datetime, now: datetime, *, max_lifetime: timedelta = _MAX_LIFETIME, what: str = "code"
) -> None:
    """A lifetime in (0, ``max_lifetime``] that covers ``now`` within the clock leeway (the paper code: 7 days)."""
    if exp - iat > max_lifetime or exp <= iat:
        raise CodeLifetimeError(f"lifetime outside (0, {_span(max_lifetime)}]")
    if now + _LEEWAY < iat:
        raise CodeNotYetValidError("issued in the future")
    if now - _LEEWAY > exp:
        raise CodeExpiredError(f"{what} expired")


def _span(delta: timedelta) -> str:
    return f"{delta.days} days" if delta.days else f"{int(delta.total_seconds()) // 60} min"


def issue_place_code(
    key: SigningKey,
    *,
    place_id: str,
    venue_class: str,
    jurisdiction: str,
    not_before: datetime,
    not_after: datetime,
) -> str:
    """Sign a place code (the city operation institution's job; `placegate places add` does it)."""
    pid, path = place_id.encode("ascii", "replace"), jurisdiction.encode("ascii", "replace")
    valid = (
        _PLACE_ID_RE.fullmatch(place_id)
        and _JURISDICTION_RE.fullmatch(jurisdiction)
        and len(venue_class) == 1
        and venue_class.isascii()
        and venue_class.isupper()
        and not_before < not_after
    )
    if not valid:
        raise CodeFormatError("invalid place id, jurisdiction, venue class or window")
    body = _PLACE_HEAD.pack(
        VERSION, key.alg_id, key.kid, _ts(not_before), _ts(not_after), venue_class.encode(), len(pid)
    )
    body += pid + bytes([len(path)]) + path
    return PLACE_PREFIX + b45encode(body + key.sign_raw(_PLACE_CONTEXT + body))


def parse_place_code(text: str) -> tuple[PlaceCode, int, bytes, bytes]:
    """Decode a place code without verifying it: (fields, algorithm id, signed message, signature).

    :raises CodeFormatError, Base45Error, UnsupportedVersionError: on any structural defect.
    """
    raw = strip_prefix(text, PLACE_PREFIX)
    head = _PLACE_HEAD.size
    if len(raw) < head + 2 + _SIG:
        raise CodeFormatError("truncated place code")
    version, alg_id, kid, nbf, naf, venue_class, pid_len = _PLACE_HEAD.unpack_from(raw)
    if version != VERSION:
        raise UnsupportedVersionError("unsupported place-code version")
    path_at = head + pid_len
    if len(raw) < path_at + 1 + _SIG:
        raise CodeFormatError("truncated place code")
    path_len = raw[path_at]
    end = path_at + 1 + path_len
    if len(raw) != end + _SIG or alg_id not in ALG_IDS:
        raise CodeFormatError("place-code length does not match its fields")
    try:
        place_id = raw[head:path_at].decode("ascii")
        path = raw[path_at + 1 : end].decode("ascii")
        cls = venue_class.decode("ascii")
    except UnicodeDecodeError:
        raise CodeFormatError("place code is not ASCII") from None
    if not (_PLACE_ID_RE.fullmatch(place_id) and _JURISDICTION_RE.fullmatch(path) and cls.isupper()):
        raise CodeFormatError("invalid place-code field")
    code = PlaceCode(kid, place_id, cls, path, _dt(nbf), _dt(naf))
    return code, alg_id, _PLACE_CONTEXT + raw[:end], raw[end:]


def check_place_window(code: PlaceCode, now: datetime) -> None:
    """Refuse a place code outside its own validity window (its signature is checked elsewhere)."""
    if now < code.not_before:
        raise CodeNotYetValidError("place code not yet valid")
    if now > code.not_after:
        raise CodeExpiredError("place code expired")


def verify_place_code(text: str, trust: TrustList, *, now: datetime) -> PlaceCode:
    """Decode and verify a place code; a forged, revoked or out-of-window one is refused like a health code.

    The refusals come in this order: structure, then the key (``TrustList.resolve``), the signature, the window.

    :raises CodeError: a subclass whose ``code`` is the deny reason.
    """
    code, alg_id, message, signature = parse_place_code(text)
    key = trust.resolve(code.kid, alg=ALG_IDS[alg_id], usage=Usage.PLACE, now=now)
    verify_raw(key.public_key, key.alg, signature, message)
    check_place_window(code, now)
    return code
