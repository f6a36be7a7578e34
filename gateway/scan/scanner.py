"""One scan, from the presented code to the recorded decision (the orchestration of crypto, store and policy).

The code's prefix picks its format (``crypto.formats``).  A native code's holder status comes from the status
cache; an EU DCC (HC1) carries its own status (``policy.dcc_status``), is vouched for by the DSC trust list
whose freshness the answer reflects, and is remembered for a short replay window keyed by its UVCI.
"""

from __future__ import annotations

import functools
import hmac
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from crypto.dcc import VerifiedDcc
from crypto.dcc_errors import CoseHeaderError
from crypto.dcc_trust import DscTrustList
from crypto.errors import CodeError, TrustKeyError
from crypto.formats import NOT_A_CODE_ERRORS, TrustAnchors, VerifiedCode, format_for
from crypto.native import LEEWAY_S, HealthCode
from crypto.place_cache import PlaceCodeVerifier
from crypto.sealing import Sealer
from crypto.trust import TrustList
from gateway import keyspace
from gateway.errors import MalformedCodeError, StoreUnavailableError
from gateway.metrics import Metrics
from gateway.scan.store import LookupRequest, ScanRecord, Store
from gateway.scan.turnbatch import TurnTask
from gateway.trust.dsc import Freshness, freshness
from gateway.trust.registry import Place
from policy.admission import EXCEPTION_REASONS, Decision, Reason, decide_admission, refuse
from policy.dcc_status import decide_dcc_admission
from policy.rules import Rules

__all__ = [
    "PURPOSE", "TRUST_LIST_STALE", "DccGate", "ScanOutcome", "Scanner", "day_of", "partition_expiry", "pseudonym",
]

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


@dataclass(frozen=True, slots=True)
class _Request:
    """The codes of one HTTP request and where, by whom and when they were presented."""

    codes: Sequence[str]
    place: Place
    device_id: str
    now: datetime


_Answers = list["ScanOutcome | MalformedCodeError"]


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
        self.place_codes = PlaceCodeVerifier()
        self.dcc = DccGate()
        # The routes read the time here, so tests can move the clock (trust-list age, code validity).
        self.clock: Callable[[], datetime] = _utcnow
        # Every request of a loop turn goes through the phases together, in one task (gateway/scan/turnbatch.py).
        self.turns: TurnTask[_Request, _Answers] = TurnTask(self._scan_turn)

    async def aclose(self) -> None:
        """Let the turns in progress finish (their records are written before the store closes)."""
        await self.turns.aclose()

    async def scan(self, code: str, place: Place, device_id: str, *, now: datetime) -> ScanOutcome:
        """Verify, look up, decide and record one presented code.

        :raises MalformedCodeError: when the text is not a code at all (no known prefix, not base45): HTTP 400.
        """
        (result,) = await self.turns.submit(_Request((code,), place, device_id, now))
        if isinstance(result, MalformedCodeError):
            raise result
        return result

    def scan_many(
        self, codes: Sequence[str], place: Place, device_id: str, *, now: datetime
    ) -> Awaitable[_Answers]:
        """``scan`` for every code of a request, in order; a text that is not a code gets its error instead.

        Codes repeated within the batch are seen in order: the second presentation of a code is its replay.
        """
        return self.turns.submit(_Request(codes, place, device_id, now))

    def refuse_place(self, reason: str, codes: int, now: datetime) -> list[ScanOutcome]:
        """The answers when the venue's place code itself is refused: a deny for each presented code, counted
        like any other scan (the codes are not looked at: nothing says where they were shown)."""
        refusal = refuse(self.rules, reason, rule_id="place")
        for _ in range(codes):
            self.metrics.count_scan(refusal.action.value, refusal.reason, refusal.degraded)
        return [ScanOutcome(refusal, None, new_scan_id(now), now) for _ in range(codes)]

    async def _scan_turn(self, requests: list[_Request]) -> list[_Answers | Exception]:
        """Every request of one loop turn, phase by phase: all verifications back to back, one Redis group for
        all their lookups, every decision, then one Redis group for all their records. A turn of N codes costs
        two pipelined groups and one task, not 2 x N awaited futures in N handler tasks.
        """
        anchors = TrustAnchors(self.trust, self.dcc.trust)  # one trust snapshot for the whole turn
        verified = [self._verify_request(request, anchors) for request in requests]
        live = [item for items in verified if not isinstance(items, Exception) for item in items
                if isinstance(item, _Item)]
        if live:
            await self._decide(live)
            for item in live:
                if item.fresh is not Freshness.FRESH and item.decision is not None and not item.decision.degraded:
                    item.decision = replace(item.decision, degraded=True)
            await self._record(live)
            count = self.metrics.count_scan
            for item in live:
                decision = item.decision
                assert decision is not None
                count(decision.action.value, decision.reason, decision.degraded)
        return [
            items if isinstance(items, Exception)
            else [item if isinstance(item, MalformedCodeError) else item.outcome() for item in items]
            for items in verified
        ]

    def _verify_request(
        self, request: _Request, anchors: TrustAnchors
    ) -> list[_Item | MalformedCodeError] | Exception:
        try:
            return [self._verify(code, anchors, request) for code in request.codes]
        except Exception as exc:  # a defect in one request's codes must not fail the turn's other requests
            return exc

    def _verify(self, code: str, anchors: TrustAnchors, request: _Request) -> _Item | MalformedCodeError:
        now = request.now
        item = _Item(new_scan_id(now), request)
        trust_refusal = False
        try:
            fmt = format_for(code)
            item.verified = fmt.verify(code, anchors, now)
        except NOT_A_CODE_ERRORS:
            return MalformedCodeError("not a health code")
        except CodeError as exc:
            item.decision = refuse(self.rules, exc.code)
            trust_refusal = isinstance(exc, TrustKeyError) and not isinstance(exc, CoseHeaderError)
        if fmt.trust_list == "dsc":
            item.fresh = self.dcc.freshness(now)
        if item.fresh is Freshness.STALE and (item.verified is not None or trust_refusal):
            # Fail closed, and without a forgery case: an unknown kid may only be unknown to our old list.
            item.verified = None
            item.decision = refuse(self.rules, TRUST_LIST_STALE, rule_id="trust_list")
        return item

    async def _decide(self, items: list[_Item]) -> None:
        """Status and replay memory for every verified code (one Redis group), then the policy decides."""
        pending: list[tuple[_Item, VerifiedCode]] = []
        requests: list[LookupRequest] = []
        for item in items:
            verified = item.verified
            if item.decision is not None or verified is None:
                continue
            place_id = item.request.place.place_id
            evidence = verified.evidence
            if isinstance(evidence, HealthCode):
                ttl = int((evidence.exp - item.request.now).total_seconds()) + LEEWAY_S
                memory_key = keyspace.nonce_key(evidence.kid.hex(), evidence.nonce.hex())
                requests.append((evidence.holder_ref, memory_key, ttl, place_id))
            else:
                # No live status exists for a DCC holder: only the replay memory, keyed by a MAC of the UVCI.
                digest = hmac.new(self.dcc.replay_key, verified.replay_id.encode(), "sha256").hexdigest()[:32]
                requests.append((None, keyspace.dcc_replay_key(digest), self.dcc.replay_window_s, place_id))
            pending.append((item, verified))
        if not pending:
            return
        lookups = await self.store.lookup_scans(requests, timeout_s=self.redis_timeout_s)
        unavailable = 0
        for (item, verified), lookup in zip(pending, lookups, strict=True):
            unavailable += lookup is None
            place, now = item.request.place, item.request.now
            if lookup is not None and lookup.first_place is not None:
                reason = Reason.REPLAYED if lookup.first_place == place.place_id else Reason.CODE_SHARED
                item.decision = refuse(self.rules, reason, rule_id="replay")
            elif isinstance(verified.evidence, HealthCode):
                item.decision = decide_admission(
                    self.rules,
                    venue_class=place.venue_class,
                    signed_colour=verified.evidence.colour_at_issue,
                    status=None if lookup is None else lookup.status,
                    now=now,
                    status_available=lookup is not None,
                )
            else:
                assert isinstance(verified.evidence, VerifiedDcc)
                decision = decide_dcc_admission(
                    self.rules, venue_class=place.venue_class, dcc=verified.evidence.decoded.dcc, now=now
                )
                # The certificate still decides, but nothing could check that it is not a copy in use elsewhere.
                item.decision = decision if lookup is not None else replace(decision, degraded=True)
        if unavailable:
            self.metrics.redis_errors.labels("scan_lookup").inc(unavailable)

    async def _record(self, items: list[_Item]) -> None:
        """The scan-log record of every code, and an intake event for each exception (one Redis group)."""
        timeout_s = self.redis_timeout_s
        try:
            # The day of each scan's own time: a turn that straddles midnight writes to both partitions.
            days = [day_of(item.request.now) for item in items]
            day_keys: dict[str, bytes] = {}
            for item, day in zip(items, days, strict=True):
                if day not in day_keys and item.verified is not None:
                    expire_at = partition_expiry(day, self.retention_days)
                    day_keys[day] = await self.store.day_key(day, expire_at, timeout_s=timeout_s)
            records: list[ScanRecord] = []
            for item, day in zip(items, days, strict=True):
                request, decision = item.request, item.decision
                assert decision is not None
                place, now = request.place, request.now
                millis = str(int(now.timestamp() * 1000))
                holder_ref = None if item.verified is None else item.verified.holder_ref
                holder_alias = "" if holder_ref is None else pseudonym(day_keys[day], holder_ref)
                # Field, value pairs in XADD order: the scan-log record and intake event PRIVACY.md lists.
                entry = (
                    "scan_id", item.scan_id, "t", millis, "place", place.place_id, "device", request.device_id,
                    "decision", decision.action.value, "reason", decision.reason, "rule", decision.rule_id,
                    "rules_version", decision.rules_version, "degraded", "1" if decision.degraded else "0",
                    "purpose", PURPOSE, "pseudonym", holder_alias,
                )
                event = None
                if decision.reason in EXCEPTION_REASONS:
                    event_class = _EVENT_CLASS.get(decision.reason, "forged_code")
                    event = (
                        "event_id", item.scan_id, "source", "scan", "event_class", event_class,
                        "reason", decision.reason, "place", place.place_id, "jurisdiction", place.jurisdiction,
                        "device", request.device_id, "occurred_at", millis, "day", day, "pseudonym", holder_alias,
                        "holder_sealed", self.sealer.seal(holder_ref) if holder_ref is not None else "",
                        "purpose", PURPOSE,
                    )
                    self.metrics.exceptions.labels(event_class).inc()
                records.append((day, partition_expiry(day, self.retention_days), entry, event))
            await self.store.record_scans(records, timeout_s=timeout_s)
        except StoreUnavailableError:
            # The answers still go out (people are waiting at the gate) but say they are degraded; the metric
            # lets operators see every record that could not be written.
            self.metrics.redis_errors.labels("scan_record").inc(len(items))
            for item in items:
                assert item.decision is not None
                if not item.decision.degraded:
                    item.decision = replace(item.decision, degraded=True)


def pseudonym(day_key: bytes, holder_ref: str) -> str:
    """The day's pseudonym of a holder: linkable within one day's log only, unlinkable once the key expires.

    HMAC-SHA256 under the day key, first 128 bits in hex (PRIVACY.md). ``hmac.digest`` is the one-shot C path.
    """
    return hmac.digest(day_key, holder_ref.encode(), "sha256").hex()[:32]


@dataclass(slots=True)
class _Item:
    """One presented code on its way through the phases of ``Scanner._scan_turn``."""

    scan_id: str
    request: _Request
    verified: VerifiedCode | None = None
    decision: Decision | None = None
    fresh: Freshness = Freshness.FRESH

    def outcome(self) -> ScanOutcome:
        decision = self.decision
        assert decision is not None
        verified = self.verified
        colour = None if verified is None or verified.signed_colour is None else verified.signed_colour.label
        if decision.reason in ("status_red", "status_yellow"):
            colour = decision.reason.removeprefix("status_")
        return ScanOutcome(decision, colour, self.scan_id, self.request.now)
