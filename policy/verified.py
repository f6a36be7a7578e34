"""The admission decision for any verified code, whatever its format.

A format whose holder status is live (``VerifiedCode.live_status``: the native dynamic code) is decided on the
cached status, with the colour signed at issue as the degraded-mode fallback. A format that carries its own status
(the EU DCC: vaccination, test or recovery inside the certificate) is decided on that, through the entry for its
format in ``SELF_CONTAINED``. The scan path calls only ``decide_verified`` and never names a code type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Final

from crypto.dcc import VerifiedDcc
from crypto.formats import VerifiedCode
from policy.admission import Decision, decide_admission
from policy.dcc_rules import DccBusinessRules
from policy.dcc_status import decide_dcc_admission
from policy.rules import Rules
from policy.status import HolderStatus

__all__ = ["SELF_CONTAINED", "decide_verified"]

SelfContainedDecision = Callable[[Rules, VerifiedCode, str, datetime, "DccBusinessRules | None"], Decision]


def _decide_dcc(
    rules: Rules, verified: VerifiedCode, venue_class: str, now: datetime, business: DccBusinessRules | None
) -> Decision:
    evidence = verified.evidence
    if not isinstance(evidence, VerifiedDcc):
        raise TypeError(f"format {verified.format!r} did not carry a verified DCC")
    return decide_dcc_admission(rules, venue_class=venue_class, dcc=evidence.decoded.dcc, now=now,
                                business=business, issuer_country=evidence.decoded.issuer)


# Format name (crypto.formats.FORMATS) -> how a code of that format that carries its own status is decided.
SELF_CONTAINED: Final[Mapping[str, SelfContainedDecision]] = {"hc1": _decide_dcc}


def decide_verified(
    rules: Rules,
    verified: VerifiedCode,
    *,
    venue_class: str,
    status: HolderStatus | None,
    status_available: bool,
    now: datetime,
    business: DccBusinessRules | None = None,
) -> Decision:
    """Decide for a code that passed its format's verification.

    :param status: the cached status of a live-status holder (``None``: not in the cache); ignored otherwise.
    :param status_available: ``False`` when Redis could not answer in time: a live-status code is decided in
        degraded mode on its signed colour (one without a signed colour is never admitted then); a self-contained
        one still decides, but its answer says degraded,
        since nothing could check that the code is not a copy in use elsewhere.
    :param business: the imported EU DCC business-rule sets and value sets (``None``: none available).
    :raises KeyError: a self-contained format with no entry in ``SELF_CONTAINED`` (a defect, not an input).
    """
    if verified.live_status:
        # A paper code or an identity-card match has no signed colour: decided on the live status alone.
        return decide_admission(rules, venue_class=venue_class, signed_colour=verified.signed_colour, status=status,
                                now=now, status_available=status_available)
    decision = SELF_CONTAINED[verified.format](rules, verified, venue_class, now, business)
    return decision if status_available else replace(decision, degraded=True)
