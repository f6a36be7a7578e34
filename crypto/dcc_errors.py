"""Errors of the EU Digital COVID Certificate ("HC1:") chain and its CBOR / COSE layers.

Every class extends the package tree of ``crypto.errors`` so the gateway maps them with the same ``code``
table.  Decode failures carry a class-level ``stage`` naming the first layer that failed, in the order of the
hcert specification §3 (prefix → base45 → zlib → COSE_Sign1 → CWT); verification failures reuse the trust-list
and signature classes of ``crypto.errors`` (``BadSignatureError``, ``UnknownKeyError``,
``AlgorithmMismatchError``, ``WrongKeyUsageError``, ``KeyOutOfWindowError``, ``CodeExpiredError``,
``CodeNotYetValidError``).

    CodeError
    ├── CodeFormatError ("malformed_code")
    │   ├── CborError ("cbor_invalid")                  not well-formed / invalid CBOR, or a decoder limit hit
    │   └── DccDecodeError ("malformed_code")           stage: one of DCC_STAGES
    │       ├── DccPrefixError ("dcc_prefix")           stage "prefix": context identifier is not "HC1:"
    │       ├── DccBase45Error ("dcc_base45")           stage "base45"
    │       ├── DccZlibError ("dcc_zlib")               stage "zlib": no zlib header, corrupt, truncated
    │       │   └── DccTooLargeError ("dcc_too_large")  stage "zlib": inflates beyond MAX_INFLATED_BYTES
    │       ├── DccCoseError ("cose_invalid")           stage "cose": not a COSE_Sign1, bad protected header
    │       └── DccCwtError ("cwt_invalid")             stage "cwt": no claims map or no -260/1 DCC map
    ├── DccSchemaError ("dcc_schema_invalid")           the DCC payload breaks a rule every schema version holds
    ├── DccUnknownValueError ("dcc_unknown_value")      a coded field's value is not in its imported value set
    └── TrustKeyError ("unknown_key", crypto.errors)
        └── CoseHeaderError ("cose_header_conflict")    kid differs between buckets, alg only unprotected
"""

from __future__ import annotations

from typing import ClassVar, Literal

from crypto.errors import CodeError, CodeFormatError, TrustKeyError

__all__ = [
    "DCC_STAGES",
    "CborError",
    "CoseHeaderError",
    "DccBase45Error",
    "DccCoseError",
    "DccCwtError",
    "DccDecodeError",
    "DccPrefixError",
    "DccSchemaError",
    "DccStage",
    "DccTooLargeError",
    "DccUnknownValueError",
    "DccZlibError",
]

DccStage = Literal["prefix", "base45", "zlib", "cose", "cwt"]
DCC_STAGES: tuple[DccStage, ...] = ("prefix", "base45", "zlib", "cose", "cwt")


class CborError(CodeFormatError):
    """Input is not well-formed CBOR (RFC 8949 §3), is invalid (§5.3), or exceeds a decoder limit."""

    code = "cbor_invalid"


class DccDecodeError(CodeFormatError):
    """A layer of the HC1 decode chain failed; ``stage`` names which."""

    code = "malformed_code"
    stage: ClassVar[DccStage] = "prefix"


class DccPrefixError(DccDecodeError):
    code = "dcc_prefix"
    stage = "prefix"


class DccBase45Error(DccDecodeError):
    code = "dcc_base45"
    stage = "base45"


class DccZlibError(DccDecodeError):
    code = "dcc_zlib"
    stage = "zlib"


class DccTooLargeError(DccZlibError):
    """Compression bomb: the inflated payload would exceed the cap."""

    code = "dcc_too_large"
    stage = "zlib"


class DccCoseError(DccDecodeError):
    code = "cose_invalid"
    stage = "cose"


class DccCwtError(DccDecodeError):
    code = "cwt_invalid"
    stage = "cwt"


class DccSchemaError(CodeError):
    """The decoded DCC does not meet the essential rules of the DCC JSON schema; ``field`` names where."""

    code = "dcc_schema_invalid"

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class DccUnknownValueError(CodeError):
    """A coded field (vaccine product, manufacturer, country, test type...) holds a code its value set lacks;
    ``field`` names it as ``v[0].mp``."""

    code = "dcc_unknown_value"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class CoseHeaderError(TrustKeyError):
    """Header parameters that could redirect verification to another key or algorithm (RFC 9052 §3)."""

    code = "cose_header_conflict"
