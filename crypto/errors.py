"""Errors raised by the pure ``crypto`` package.

Every class carries a stable machine ``code``; the gateway maps a code to a scan decision reason (a signed code that
fails is a ``deny`` with that reason, never an HTTP error) and never shows a message to a scanner.

    CodeError ("malformed_code")
    ├── Base45Error ("malformed_code")
    ├── CodeFormatError ("malformed_code")       truncated or oversized payload, bad fields
    │   └── UnknownFormatError ("malformed_code")  no registered prefix: not a code at all
    ├── UnsupportedVersionError ("unsupported_version")
    ├── BadSignatureError ("bad_signature")
    ├── CodeExpiredError ("code_expired")
    ├── CodeNotYetValidError ("not_yet_valid")
    ├── CodeLifetimeError ("lifetime_too_long")  exp - iat beyond the 5-minute cap of the native format
    └── KeyError_ (trust-list refusals)
        ├── UnknownKeyError ("unknown_key")
        ├── WrongKeyUsageError ("wrong_key_usage")
        ├── AlgorithmMismatchError ("alg_mismatch")
        ├── KeyRevokedError ("key_revoked")
        └── KeyOutOfWindowError ("key_out_of_window")
    TrustListError ("invalid_trust_list")     a trust-list entry that cannot be loaded (not a scan outcome)
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AlgorithmMismatchError",
    "BadSignatureError",
    "Base45Error",
    "CodeError",
    "CodeExpiredError",
    "CodeFormatError",
    "CodeLifetimeError",
    "CodeNotYetValidError",
    "KeyOutOfWindowError",
    "KeyRevokedError",
    "TrustKeyError",
    "TrustListError",
    "UnknownFormatError",
    "UnknownKeyError",
    "UnsupportedVersionError",
    "WrongKeyUsageError",
]


class CodeError(Exception):
    """A presented code cannot be accepted; ``field`` names the part of it at fault, when one is (``v[0].mp``)."""

    code: ClassVar[str] = "malformed_code"
    field: str = ""


class Base45Error(CodeError):
    code = "malformed_code"


class CodeFormatError(CodeError):
    code = "malformed_code"


class UnknownFormatError(CodeFormatError):
    """The text carries no known code prefix."""


class UnsupportedVersionError(CodeError):
    code = "unsupported_version"


class BadSignatureError(CodeError):
    code = "bad_signature"


class CodeExpiredError(CodeError):
    code = "code_expired"


class CodeNotYetValidError(CodeError):
    code = "not_yet_valid"


class CodeLifetimeError(CodeError):
    code = "lifetime_too_long"


class TrustKeyError(CodeError):
    """The signing key named by the code may not be used for it."""

    code = "unknown_key"


class UnknownKeyError(TrustKeyError):
    code = "unknown_key"


class WrongKeyUsageError(TrustKeyError):
    code = "wrong_key_usage"


class AlgorithmMismatchError(TrustKeyError):
    code = "alg_mismatch"


class KeyRevokedError(TrustKeyError):
    code = "key_revoked"


class KeyOutOfWindowError(TrustKeyError):
    code = "key_out_of_window"


class TrustListError(Exception):
    """A trust-list entry is malformed."""

    code: ClassVar[str] = "invalid_trust_list"
