"""EU Digital COVID Certificate ("HC1:") decoding and verification (hcert specification v1.x §3).

Decode chain, each step a stage of ``DccDecodeError``:
``HC1:`` context identifier → base45 (RFC 9285) → zlib (RFC 1950, header required) → COSE_Sign1 (RFC 9052)
→ CWT claims (RFC 8392) whose claim -260 (hcert) holds the DCC under key 1.

``verify_hc1`` is the admission path and raises on the first refusal.  ``inspect_hc1`` never raises and
computes each verdict of the conformance contract on its own, so one failure does not hide the others.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from crypto.base45 import b45decode
from crypto.cbor import CborKey, CborTag, CborValue, decode_cbor
from crypto.cose import CoseSign1, parse_cose_sign1, verify_cose_sign1
from crypto.dcc_errors import (
    CborError,
    CoseHeaderError,
    DccBase45Error,
    DccCwtError,
    DccDecodeError,
    DccPrefixError,
    DccSchemaError,
    DccStage,
    DccTooLargeError,
    DccZlibError,
)
from crypto.dcc_schema import JsonValue, check_dcc_schema, dcc_entry_types, dcc_to_json
from crypto.dcc_trust import DscKey, DscTrustList, EntryType
from crypto.errors import (
    AlgorithmMismatchError,
    BadSignatureError,
    Base45Error,
    CodeExpiredError,
    CodeNotYetValidError,
    KeyOutOfWindowError,
    TrustKeyError,
    UnknownKeyError,
    WrongKeyUsageError,
)

__all__ = [
    "HC1_PREFIX",
    "MAX_INFLATED_BYTES",
    "MAX_TEXT_CHARS",
    "DccReport",
    "DecodedDcc",
    "VerifiedDcc",
    "decode_hc1",
    "inspect_hc1",
    "verify_hc1",
]

HC1_PREFIX = "HC1:"  # hcert §4.2 context identifier, version 1
MAX_TEXT_CHARS = 8192  # a version-40 QR code holds at most 4296 alphanumeric characters
MAX_INFLATED_BYTES = 64 * 1024  # far above any real DCC (~1 KiB); anything bigger is a compression bomb
_CLAIM_ISS, _CLAIM_EXP, _CLAIM_IAT, _CLAIM_HCERT = 1, 4, 6, -260  # RFC 8392 §3.1, hcert §3.3.3
_HCERT_DCC_V1 = 1


@dataclass(frozen=True, slots=True)
class DecodedDcc:
    """A structurally valid HC1 code; nothing about it is trusted yet."""

    cose: CoseSign1
    claims: dict[CborKey, CborValue]
    issuer: str | None
    issued_at_s: float | None  # CWT iat, seconds since the epoch
    expires_at_s: float | None  # CWT exp
    dcc: dict[CborKey, CborValue]

    @property
    def entry_types(self) -> frozenset[EntryType]:
        """The entry groups (v, t, r) the DCC carries."""
        return dcc_entry_types(self.dcc)

    def within_validity(self, now: datetime) -> bool:
        """Whether ``now`` lies in [iat, exp]; a code without both bounds cannot be shown current."""
        if self.issued_at_s is None or self.expires_at_s is None:
            return False
        return self.issued_at_s <= now.timestamp() <= self.expires_at_s


@dataclass(frozen=True, slots=True)
class VerifiedDcc:
    """A DCC whose signature, signer, key usage, schema and validity all passed."""

    decoded: DecodedDcc
    key: DscKey
    entry_type: EntryType


def _inflate(data: bytes) -> bytes:
    # RFC 1950 §2.2: CMF/FLG form a header whose 16-bit value is a multiple of 31, with method 8 (deflate).
    if len(data) < 2 or data[0] & 0x0F != 8 or ((data[0] << 8) | data[1]) % 31 != 0:
        raise DccZlibError("payload has no zlib header (hcert §3.2 requires zlib compression)")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise DccZlibError("zlib stream is corrupt") from exc
    if inflater.unconsumed_tail:
        raise DccTooLargeError("inflated payload exceeds the size cap")
    if not inflater.eof:
        raise DccZlibError("zlib stream is truncated")
    if inflater.unused_data:
        raise DccZlibError("bytes after the end of the zlib stream")
    return out


def _numeric_date(claims: Mapping[CborKey, CborValue], label: int) -> float | None:
    if label not in claims:
        return None
    value = claims[label]
    if isinstance(value, CborTag) and value.tag == 1:  # RFC 8392 §2: NumericDate, tag 1 tolerated
        value = value.value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DccCwtError("NumericDate claim is not a finite number (RFC 8392 §2)")
    return float(value)


def _parse_claims(payload: bytes) -> tuple[dict[CborKey, CborValue], dict[CborKey, CborValue]]:
    try:
        claims = decode_cbor(payload)
    except CborError as exc:
        raise DccCwtError("CWT payload is not well-formed CBOR") from exc
    if not isinstance(claims, dict):
        raise DccCwtError("CWT claims are not a map (RFC 8392 §7)")
    if not all(isinstance(key, int | str) and not isinstance(key, bool) for key in claims):
        raise DccCwtError("CWT claim key is neither int nor tstr (RFC 8392 §3)")
    hcert = claims.get(_CLAIM_HCERT)
    if not isinstance(hcert, dict):
        raise DccCwtError("claim -260 (hcert) is missing or not a map")
    dcc = hcert.get(_HCERT_DCC_V1)
    if not isinstance(dcc, dict):
        raise DccCwtError("hcert key 1 (DCC v1) is missing or not a map")
    return claims, dcc


def decode_hc1(text: str) -> DecodedDcc:
    """Decode an ``HC1:`` string down to its DCC, without trusting anything.

    :raises DccDecodeError: a subclass whose ``stage`` names the first layer that failed.
    """
    if not text.startswith(HC1_PREFIX):
        raise DccPrefixError("context identifier is not HC1:")
    if len(text) > MAX_TEXT_CHARS:
        raise DccBase45Error("code longer than any QR code can carry")
    try:
        compressed = b45decode(text[len(HC1_PREFIX) :])
    except Base45Error as exc:
        raise DccBase45Error("payload is not base45") from exc
    cose = parse_cose_sign1(_inflate(compressed))
    claims, dcc = _parse_claims(cose.payload)
    issuer = claims.get(_CLAIM_ISS)
    if issuer is not None and not isinstance(issuer, str):
        raise DccCwtError("iss claim is not a text string (RFC 8392 §3.1.1)")
    iat, exp = _numeric_date(claims, _CLAIM_IAT), _numeric_date(claims, _CLAIM_EXP)
    return DecodedDcc(cose, claims, issuer, iat, exp, dcc)


def _verify_signature(decoded: DecodedDcc, trust: DscTrustList) -> list[DscKey]:
    """Every trusted key under the code's kid whose signature check passes (hcert §3.3.1: try them all)."""
    candidates = trust.candidates(decoded.cose.kid)
    if not candidates:
        raise UnknownKeyError("kid is absent or not in the trust list")
    verified: list[DscKey] = []
    last: TrustKeyError | BadSignatureError | None = None
    for key in candidates:
        try:
            verify_cose_sign1(decoded.cose, key.public_key)
        except (AlgorithmMismatchError, CoseHeaderError, BadSignatureError) as exc:
            last = exc
            continue
        verified.append(key)
    if not verified:
        assert last is not None
        raise last
    return verified


def verify_hc1(text: str, trust: DscTrustList, *, now: datetime) -> VerifiedDcc:
    """Decode and fully verify an ``HC1:`` code at ``now`` (an aware datetime).

    :raises DccDecodeError: undecodable (with the stage).
    :raises CoseHeaderError: alg only unprotected, or protected and unprotected kids differ.
    :raises UnknownKeyError / AlgorithmMismatchError / BadSignatureError: signature refusals.
    :raises KeyOutOfWindowError: the signing DSC is outside its validity window at ``now``.
    :raises WrongKeyUsageError: the DSC's key-usage OIDs exclude the DCC's entry type.
    :raises DccSchemaError: the DCC breaks the schema essentials.
    :raises CodeNotYetValidError / CodeExpiredError: ``now`` is outside [iat, exp] or a bound is missing.
    """
    decoded = decode_hc1(text)
    if decoded.cose.alg_only_unprotected:
        raise CoseHeaderError("alg is only in the unprotected header, which the signature does not cover")
    if decoded.cose.kid_conflict:
        # RFC 9052 §3 lets the protected kid win; we refuse instead, as a relabelled unprotected kid only
        # ever appears in a tampered or mis-issued code.
        raise CoseHeaderError("protected and unprotected kid differ")
    keys = _verify_signature(decoded, trust)
    in_window = [key for key in keys if key.valid_at(now)]
    if not in_window:
        raise KeyOutOfWindowError("the signing certificate is not valid at this time")
    check_dcc_schema(decoded.dcc)
    (entry_type,) = decoded.entry_types
    allowed = [key for key in in_window if key.allows(entry_type)]
    if not allowed:
        raise WrongKeyUsageError("the signing certificate may not sign this entry type")
    if decoded.issued_at_s is None or now.timestamp() < decoded.issued_at_s:
        raise CodeNotYetValidError("now is before iat, or iat is missing")
    if decoded.expires_at_s is None or now.timestamp() > decoded.expires_at_s:
        raise CodeExpiredError("now is after exp, or exp is missing")
    return VerifiedDcc(decoded, allowed[0], entry_type)


@dataclass(frozen=True, slots=True)
class DccReport:
    """Every verdict on one code, each computed independently (the conformance runner's contract)."""

    decoded: bool
    failed_stage: DccStage | None
    signature_valid: bool
    expired: bool | None  # None: cannot be judged (not decoded, or no clock)
    key_usage_valid: bool | None  # None: no trusted key or no entry type to judge
    schema_valid: bool | None
    hcert: JsonValue
    kid_conflict: bool
    error: str | None  # the ``code`` of the first refusal, for operators

    def to_json(self) -> dict[str, JsonValue]:
        """The runner's JSON object."""
        return {
            "decoded": self.decoded,
            "failed_stage": self.failed_stage,
            "signature_valid": self.signature_valid,
            "expired": self.expired,
            "key_usage_valid": self.key_usage_valid,
            "schema_valid": self.schema_valid,
            "hcert": self.hcert,
            "kid_conflict": self.kid_conflict,
            "error": self.error,
        }


def inspect_hc1(text: str, trust: DscTrustList, *, now: datetime | None) -> DccReport:
    """Judge every aspect of a code without raising; ``now=None`` leaves ``expired`` unjudged."""
    try:
        decoded = decode_hc1(text)
    except DccDecodeError as exc:
        return DccReport(False, exc.stage, False, None, None, None, None, False, exc.code)
    errors: list[str] = []
    verified: list[DscKey] = []
    try:
        verified = _verify_signature(decoded, trust)
    except (TrustKeyError, BadSignatureError) as exc:
        errors.append(exc.code)
    schema_valid = True
    try:
        check_dcc_schema(decoded.dcc)
    except DccSchemaError as exc:
        schema_valid = False
        errors.append(exc.code)
    # Key usage is judged against the key that verified, else any trusted key the kid names.
    judges = verified or list(trust.candidates(decoded.cose.kid))
    kinds = decoded.entry_types
    key_usage: bool | None = None
    if judges and kinds:
        key_usage = any(all(key.allows(kind) for kind in kinds) for key in judges)
        if not key_usage:
            errors.append(WrongKeyUsageError.code)
    expired = None if now is None else not decoded.within_validity(now)
    if expired:
        errors.append(CodeExpiredError.code)
    return DccReport(
        decoded=True,
        failed_stage=None,
        signature_valid=bool(verified),
        expired=expired,
        key_usage_valid=key_usage,
        schema_valid=schema_valid,
        hcert=dcc_to_json(decoded.dcc),
        kid_conflict=decoded.cose.kid_conflict,
        error=errors[0] if errors else None,
    )
