"""The one registry of presentable health-code formats: the prefix of the text picks the format.

A format is a name, a prefix and a ``verify`` function turning text into a ``VerifiedCode`` (or raising a
``CodeError`` whose ``code`` is the deny reason).  Adding a third format is one new module with its verify
function plus one entry in ``FORMATS``; the scan path never looks at prefixes itself.

Errors that mean "this text is not a code at all" (no registered prefix, not base45) are listed in
``NOT_A_CODE_ERRORS``: the gateway answers them with HTTP 400 ``malformed_code``.  Every other ``CodeError`` is
a decodable-but-bad code, answered with a ``deny`` carrying its reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal

from crypto.dcc import HC1_PREFIX, VerifiedDcc, verify_hc1
from crypto.dcc_errors import DccBase45Error, DccSchemaError
from crypto.dcc_trust import DscTrustList
from crypto.dcc_valuesets import ValueSets, check_dcc_values
from crypto.errors import Base45Error, CodeError, UnknownFormatError
from crypto.idcard import IdCardHolder
from crypto.native import HEALTH_PREFIX, LEEWAY_S, Colour, HealthCode, verify_health_code
from crypto.paper import PAPER_PREFIX, PaperCode, verify_paper_code
from crypto.trust import TrustList

__all__ = [
    "FORMATS",
    "NOT_A_CODE_ERRORS",
    "CodeFormat",
    "Evidence",
    "TrustAnchors",
    "TrustListName",
    "VerifiedCode",
    "format_for",
    "normalise_uvci",
    "verify_presented",
]

TrustListName = Literal["native", "dsc"]
# What a verified code proves, per format; the scan path and the policy branch on its type.
# A paper code and an identity-card match carry no colour: their holder is decided on the live status alone.
Evidence = HealthCode | VerifiedDcc | PaperCode | IdCardHolder
_LIVE: Final = (HealthCode, PaperCode, IdCardHolder)

NOT_A_CODE_ERRORS: Final[tuple[type[CodeError], ...]] = (UnknownFormatError, Base45Error, DccBase45Error)


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """Every trust list a format may need: native issuer keys and EU DCC document signers."""

    native: TrustList
    dsc: DscTrustList
    # The imported EU DCC value sets; empty: no coded field is judged (nothing imported yet).
    valuesets: ValueSets = field(default_factory=lambda: ValueSets({}))


@dataclass(frozen=True, slots=True)
class VerifiedCode:
    """A code that passed its format's verification, reduced to what the scan path needs."""

    format: str  # registry name: "native" | "hc1"
    holder_ref: str  # stable holder reference for the pseudonym; never a name or a national ID number
    replay_id: str  # identifies the presented artefact for replay / sharing memory
    # Native codes die within minutes, so their replay memory lasts as long as they are accepted (expiry plus the
    # clock leeway); a static code (a DCC is valid for months) has no such bound and the gateway remembers it for
    # a configured window instead.
    replay_until: datetime | None
    signed_colour: Colour | None
    evidence: Evidence

    @property
    def live_status(self) -> bool:
        """Whether the holder's status comes from the status cache (native) or from the code itself."""
        return isinstance(self.evidence, _LIVE)


@dataclass(frozen=True, slots=True)
class CodeFormat:
    """One registered format."""

    name: str
    prefix: str
    verify: Callable[[str, TrustAnchors, datetime], VerifiedCode]
    # Which trust list vouches for this format: the gateway applies that list's freshness to its answers.
    trust_list: TrustListName = "native"


_LEEWAY: Final = timedelta(seconds=LEEWAY_S)  # a code is accepted until exp + leeway (crypto.native)


def _verify_native(text: str, anchors: TrustAnchors, now: datetime) -> VerifiedCode:
    code = verify_health_code(text, anchors.native, now=now)
    return VerifiedCode(
        format="native",
        holder_ref=code.holder_ref,
        replay_id=f"{code.kid.hex()}:{code.nonce.hex()}",
        replay_until=code.exp + _LEEWAY,
        signed_colour=code.colour_at_issue,
        evidence=code,
    )


def _verify_paper(text: str, anchors: TrustAnchors, now: datetime) -> VerifiedCode:
    code = verify_paper_code(text, anchors.native, now=now)
    # Shown again and again for a week: remembered, like a DCC, only for the static replay window (a copy at a
    # second place inside it is shared), under a MAC of this identifier (scan/scanner.py).
    return VerifiedCode(
        format="paper",
        holder_ref=code.holder_ref,
        replay_id=f"paper:{code.kid.hex()}:{code.nonce.hex()}",
        replay_until=None,
        signed_colour=None,
        evidence=code,
    )


_UVCI_URN = re.compile(r"^URN:UVCI:", re.IGNORECASE)


def normalise_uvci(ci: str) -> str:
    """The UVCI without its optional ``URN:UVCI:`` prefix and ``#`` checksum (eHN UVCI guidelines, Annex 2)."""
    return _UVCI_URN.sub("", ci.strip()).split("#", 1)[0].upper()


def _verify_dcc(text: str, anchors: TrustAnchors, now: datetime) -> VerifiedCode:
    verified = verify_hc1(text, anchors.dsc, now=now)
    check_dcc_values(verified.decoded.dcc, anchors.valuesets)
    entries = verified.decoded.dcc.get(verified.entry_type)
    ci = ""
    if isinstance(entries, list) and entries and isinstance(entries[0], dict):
        raw = entries[0].get("ci")
        ci = normalise_uvci(raw) if isinstance(raw, str) else ""
    if not ci:
        # The UVCI is the only signed identifier that survives re-encoding of the code (an ES256 signature
        # does not: (r, n - s) verifies too), so without it neither replay memory nor a pseudonym can work.
        raise DccSchemaError("certificate identifier (ci) is empty", field=f"{verified.entry_type}[0].ci")
    return VerifiedCode(
        format="hc1",
        holder_ref="uvci:" + ci,
        replay_id="uvci:" + ci,
        replay_until=None,
        signed_colour=None,
        evidence=verified,
    )


FORMATS: Final[Mapping[str, CodeFormat]] = {
    fmt.prefix: fmt
    for fmt in (
        CodeFormat("native", HEALTH_PREFIX, _verify_native),
        CodeFormat("paper", PAPER_PREFIX, _verify_paper),
        CodeFormat("hc1", HC1_PREFIX, _verify_dcc, trust_list="dsc"),
    )
}
_PREFIX_LENGTHS: Final = sorted({len(prefix) for prefix in FORMATS}, reverse=True)


def format_for(text: str) -> CodeFormat:
    """The registered format whose prefix starts ``text``.

    :raises UnknownFormatError: no registered prefix (the text is not a code at all).
    """
    for length in _PREFIX_LENGTHS:
        fmt = FORMATS.get(text[:length])
        if fmt is not None:
            return fmt
    raise UnknownFormatError("no registered code prefix")


def verify_presented(text: str, anchors: TrustAnchors, *, now: datetime) -> VerifiedCode:
    """Dispatch on the prefix and verify at ``now`` (an aware datetime).

    :raises CodeError: a subclass whose ``code`` is the deny reason; ``NOT_A_CODE_ERRORS`` mean "not a code".
    """
    return format_for(text).verify(text, anchors, now)
