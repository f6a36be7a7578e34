"""One scan, from the presented code to the recorded decision (the orchestration of crypto, store and policy)."""

from __future__ import annotations

import asyncio
import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from crypto.errors import Base45Error, CodeError, UnknownFormatError
from crypto.native import LEEWAY_S, HealthCode, verify_health_code
from crypto.trust import TrustList
from gateway import keys
from gateway.errors import MalformedCodeError, StoreUnavailableError
from gateway.metrics import Metrics
from gateway.registry import Place
from gateway.sealing import Sealer
from gateway.store import ScanLookup, Store
from policy.admission import EXCEPTION_REASONS, Decision, Reason, decide_admission, refuse
from policy.rules import Rules

__all__ = ["PURPOSE", "ScanOutcome", "Scanner", "day_of", "partition_expiry"]

# Purpose limitation (seed regulation; PIPL Art. 6): every record says what it may be used for.
PURPOSE = "epidemic_prevention"
_EVENT_CLASS = {"status_red": "status_red", "status_yellow": "status_yellow", "replayed": "replayed",
                "code_shared": "code_shared"}


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


def day_of(now: datetime) -> str:
    """The log partition a scan belongs to (UTC days, so every worker and node agrees)."""
    return now.astimezone(UTC).strftime("%Y%m%d")


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

    async def scan(self, code: str, place: Place, device_id: str, *, now: datetime) -> ScanOutcome:
        """Verify, look up, decide and record one presented code.

        :raises MalformedCodeError: when the text is not a code at all (no known prefix, not base45): HTTP 400.
        """
        scan_id = new_scan_id(now)
        verified: HealthCode | None = None
        try:
            verified = verify_health_code(code, self.trust, now=now)
        except (Base45Error, UnknownFormatError) as exc:
            raise MalformedCodeError("not a health code") from exc
        except CodeError as exc:
            decision = refuse(self.rules, exc.code)
        if verified is not None:
            decision = await self._decide(verified, place, now)
        colour = verified.colour_at_issue.label if verified is not None else None
        if decision.reason in ("status_red", "status_yellow"):
            colour = decision.reason.removeprefix("status_")
        decision = await self._record(scan_id, decision, verified, place, device_id, now)
        self.metrics.scans.labels(decision.action.value, decision.reason, str(decision.degraded).lower()).inc()
        return ScanOutcome(decision, colour, scan_id, now)

    async def _decide(self, code: HealthCode, place: Place, now: datetime) -> Decision:
        nonce_key = keys.nonce_key(code.kid.hex(), code.nonce.hex())
        ttl = int((code.exp - now).total_seconds()) + LEEWAY_S
        lookup: ScanLookup | None = None
        try:
            async with asyncio.timeout(self.redis_timeout_s):
                lookup = await self.store.lookup_scan(code.holder_ref, nonce_key, place.place_id, ttl)
        except (TimeoutError, StoreUnavailableError):
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
        self, scan_id: str, decision: Decision, code: HealthCode | None, place: Place, device_id: str, now: datetime
    ) -> Decision:
        day = day_of(now)
        expire_at = partition_expiry(day, self.retention_days)
        millis = str(int(now.timestamp() * 1000))
        try:
            async with asyncio.timeout(self.redis_timeout_s):
                pseudonym = ""
                if code is not None:
                    day_key = await self.store.day_key(day, expire_at)
                    pseudonym = hmac.new(day_key, code.holder_ref.encode(), "sha256").hexdigest()[:32]
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
                        "holder_sealed": self.sealer.seal(code.holder_ref) if code is not None else "",
                        "purpose": PURPOSE,
                    }
                    self.metrics.exceptions.labels(event_class).inc()
                await self.store.record_scan(day, entry, expire_at, event)
        except (TimeoutError, StoreUnavailableError):
            # The answer still goes out (a person is waiting at the gate) but says it is degraded; the metric
            # lets operators see every record that could not be written.
            self.metrics.redis_errors.labels("scan_record").inc()
            if not decision.degraded:
                decision = Decision(decision.action, decision.reason, decision.rule_id, decision.rules_version, True)
        return decision
