"""One scan, from the presented code to the recorded decision (the orchestration of crypto, store and policy).

The code's prefix picks its format (``crypto.formats``).  A native code's holder status comes from the status
cache; an EU DCC (HC1) carries its own status (``policy.dcc_status``), is vouched for by the DSC trust list
whose freshness the answer reflects, and is remembered for a short replay window keyed by its UVCI.
"""

from __future__ import annotations

import functools
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from crypto.dcc import VerifiedDcc
from crypto.dcc_errors import CoseHeaderError
from crypto.dcc_trust import DscTrustList
from crypto.errors import CodeError, TrustKeyError
from crypto.formats import NOT_A_CODE_ERRORS, TrustAnchors, VerifiedCode, format_for
from crypto.native import LEEWAY_S, HealthCode
from crypto.trust import TrustList
from gateway import keys
from gateway.dsc_registry import Freshness, freshness
from gateway.errors import MalformedCodeError, StoreUnavailableError
from gateway.metrics import Metrics
from gateway.registry import Place
from gateway.sealing import Sealer
from gateway.store import ScanLookup, Store
from policy.admission import EXCEPTION_REASONS, Decision, Reason, decide_admission, refuse
from policy.dcc_status import decide_dcc_admission
from policy.rules import Rules

__all__ = ["PURPOSE", "TRUST_LIST_STALE", "DccGate", "ScanOutcome", "Scanner", "day_of", "partition_expiry"]

# Purpose limitation (seed regulation; PIPL Art. 6): every record says what it may be used for.
PURPOSE = "epidemic_prevention"
_EVENT_CLASS = {"status_red": "status_red", "status_yellow": "status_yellow", "replayed": "replayed",
                "code_shared": "code_shared"}
# The DSC list is past its hard age limit: HC1 codes fail closed rather than trust withdrawn signers.
TRUST_LIST_STALE = "trust_list_stale"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class DccGate:
    """What the scan path needs for HC1 codes; the DSC feature fills it from settings and Redis."""

    trust: DscTrustList = field(default_factory=lambda: DscTrustList(()))
    imported_at: datetime | None = None  # None: never imported, so HC1 codes fail closed
    version: int = -1
    degraded_after_s: int = 2 * 24 * 3600
    fail_after_s: int = 7 * 24 * 3600
    replay_window_s: int = 60
    # Keys the UVCI hash in replay-memory key names; shared by every worker (derived from the master secret).
    replay_key: bytes = field(default_factory=lambda: os.urandom(32), repr=False)

    def freshness(self, now: datetime) -> Freshness:
        return freshness(self.imported_at, now, degraded_after_s=self.degraded_after_s,
                         fail_after_s=self.fail_after_s)


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    decision: Decision
    colour: str | None
    scan_id: str
    checked_at: datetime

    def to_json(self) -> dict[str, object]:
        """The answer to the scanner: the decision and nothing personal."""
        return {
            "decision": self.decision.action.value,
            "reason": self.decision.reason,
            "colour": self.colour,
            "scan_id": self.scan_id,
            "checked_at": self.checked_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "degraded": self.decision.degraded,
            "rule_id": self.decision.rule_id,
            "rules_version": self.decision.rules_version,
        }


@functools.lru_cache(maxsize=64)
def _day_of_epoch_day(epoch_day: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=epoch_day)).strftime("%Y%m%d")


def day_of(now: datetime) -> str:
    """The log partition a scan belongs to (UTC days, so every worker and node agrees)."""
    # Cached per day: a strftime per scan is measurable on the hot path (bench/profile-full.md).
    return _day_of_epoch_day(int(now.timestamp()) // 86_400)


@functools.lru_cache(maxsize=64)
def partition_expiry(day: str, retention_days: int) -> int:
    """Unix time at which a day's log partition and its pseudonym key expire together."""
    start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    return int((start + timedelta(days=1 + retention_days)).timestamp())


def new_scan_id(now: datetime) -> str:
    return f"{int(now.timestamp() * 1000):012x}{os.urandom(8).hex()}"


class Scanner:
    def __init__(
        self,
        store: Store,
        *,
        rules: Rules,
        sealer: Sealer,
        metrics: Metrics,
        retention_days: int,
        redis_timeout_s: float,
    ) -> None:
        self.store = store
        self.rules = rules
        self.sealer = sealer
        self.metrics = metrics
        self.retention_days = retention_days
        self.redis_timeout_s = redis_timeout_s
        self.trust = TrustList()
        self.dcc = DccGate()
        # The routes read the time here, so tests can move the clock (trust-list age, code validity).
        self.clock: Callable[[], datetime] = _utcnow

    async def scan(self, code: str, place: Place, device_id: str, *, now: datetime) -> ScanOutcome:
        """Verify, look up, decide and record one presented code.

        :raises MalformedCodeError: when the text is not a code at all (no known prefix, not base45): HTTP 400.
        """
        scan_id = new_scan_id(now)
        verified: VerifiedCode | None = None
        trust_refusal = False
        try:
            fmt = format_for(code)
            verified = fmt.verify(code, TrustAnchors(self.trust, self.dcc.trust), now)
        except NOT_A_CODE_ERRORS as exc:
            raise MalformedCodeError("not a health code") from exc
        except CodeError as exc:
            decision = refuse(self.rules, exc.code)
            trust_refusal = isinstance(exc, TrustKeyError) and not isinstance(exc, CoseHeaderError)
        fresh = self.dcc.freshness(now) if fmt.trust_list == "dsc" else Freshness.FRESH
        if fresh is Freshness.STALE and (verified is not None or trust_refusal):
            # Fail closed, and without a forgery case: an unknown kid may only be unknown to our old list.
            verified = None
            decision = refuse(self.rules, TRUST_LIST_STALE, rule_id="trust_list")
        elif verified is not None:
            if isinstance(verified.evidence, HealthCode):
                decision = await self._decide(verified.evidence, place, now)
            else:
                decision = await self._decide_dcc(verified, verified.evidence, place, now)
        if fresh is not Freshness.FRESH and not decision.degraded:
            decision = replace(decision, degraded=True)
        colour = None if verified is None or verified.signed_colour is None else verified.signed_colour.label
        if decision.reason in ("status_red", "status_yellow"):
            colour = decision.reason.removeprefix("status_")
        holder_ref = None if verified is None else verified.holder_ref
        decision = await self._record(scan_id, decision, holder_ref, place, device_id, now)
        self.metrics.scans.labels(decision.action.value, decision.reason, str(decision.degraded).lower()).inc()
        return ScanOutcome(decision, colour, scan_id, now)

    async def _decide_dcc(self, code: VerifiedCode, dcc: VerifiedDcc, place: Place, now: datetime) -> Decision:
        """No live status exists for a DCC holder: replay memory, then the certificate's own entries decide."""
        digest = hmac.new(self.dcc.replay_key, code.replay_id.encode(), "sha256").hexdigest()[:32]
        replay_key, window_s = keys.dcc_replay_key(digest), self.dcc.replay_window_s
        first: str | None = None
        available = True
        try:
            first = await self.store.first_place(replay_key, place.place_id, window_s, timeout_s=self.redis_timeout_s)
        except StoreUnavailableError:
            self.metrics.redis_errors.labels("scan_lookup").inc()
            available = False
        if first is not None:
            reason = Reason.REPLAYED if first == place.place_id else Reason.CODE_SHARED
            return refuse(self.rules, reason, rule_id="replay")
        decision = decide_dcc_admission(self.rules, venue_class=place.venue_class, dcc=dcc.decoded.dcc, now=now)
        # The certificate still decides, but nothing could check that it is not a copy in use elsewhere.
        return decision if available else replace(decision, degraded=True)

    async def _decide(self, code: HealthCode, place: Place, now: datetime) -> Decision:
        nonce_key = keys.nonce_key(code.kid.hex(), code.nonce.hex())
        ttl = int((code.exp - now).total_seconds()) + LEEWAY_S
        lookup: ScanLookup | None = None
        try:
            lookup = await self.store.lookup_scan(
                code.holder_ref, nonce_key, place.place_id, ttl, timeout_s=self.redis_timeout_s
            )
        except StoreUnavailableError:
            self.metrics.redis_errors.labels("scan_lookup").inc()
        if lookup is not None and lookup.first_place is not None:
            reason = Reason.REPLAYED if lookup.first_place == place.place_id else Reason.CODE_SHARED
            return refuse(self.rules, reason, rule_id="replay")
        return decide_admission(
            self.rules,
            venue_class=place.venue_class,
            signed_colour=code.colour_at_issue,
            status=None if lookup is None else lookup.status,
            now=now,
            status_available=lookup is not None,
        )

    async def _record(
        self, scan_id: str, decision: Decision, holder_ref: str | None, place: Place, device_id: str, now: datetime
    ) -> Decision:
        day = day_of(now)
        expire_at = partition_expiry(day, self.retention_days)
        millis = str(int(now.timestamp() * 1000))
        timeout_s = self.redis_timeout_s
        try:
            pseudonym = ""
            if holder_ref is not None:
                day_key = await self.store.day_key(day, expire_at, timeout_s=timeout_s)
                pseudonym = hmac.new(day_key, holder_ref.encode(), "sha256").hexdigest()[:32]
            entry = {
                "scan_id": scan_id, "t": millis, "place": place.place_id, "device": device_id,
                "decision": decision.action.value, "reason": decision.reason, "rule": decision.rule_id,
                "rules_version": decision.rules_version, "degraded": "1" if decision.degraded else "0",
                "purpose": PURPOSE, "pseudonym": pseudonym,
            }
            event = None
            if decision.reason in EXCEPTION_REASONS:
                event_class = _EVENT_CLASS.get(decision.reason, "forged_code")
                event = {
                    "event_id": scan_id, "source": "scan", "event_class": event_class,
                    "reason": decision.reason, "place": place.place_id, "jurisdiction": place.jurisdiction,
                    "device": device_id, "occurred_at": millis, "day": day, "pseudonym": pseudonym,
                    "holder_sealed": self.sealer.seal(holder_ref) if holder_ref is not None else "",
                    "purpose": PURPOSE,
                }
                self.metrics.exceptions.labels(event_class).inc()
            await self.store.record_scan(day, entry, expire_at, event, timeout_s=timeout_s)
        except StoreUnavailableError:
            # The answer still goes out (a person is waiting at the gate) but says it is degraded; the metric
            # lets operators see every record that could not be written.
            self.metrics.redis_errors.labels("scan_record").inc()
            if not decision.degraded:
                decision = replace(decision, degraded=True)
        return decision
