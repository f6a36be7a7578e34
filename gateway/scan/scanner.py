"""One scan, from the presented code to the recorded decision: the phases verify -> look up -> decide -> record.

The scanner only runs the phases. What it is given: the trust lists of this worker (``TrustState``, refreshed by
the trust feature), the scan store (status lookup, replay memory, log and intake writes), the admission rules,
the sealer of holder references, and the replay window of static codes. The code's prefix picks its format
(``crypto.formats``); the format says whether the holder's status is live (looked up) or carried in the code,
how long its replay memory lasts, and which trust list vouches for it, so no code type is named here.
"""

from __future__ import annotations

import functools
import hmac
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from crypto.dcc_errors import CoseHeaderError
from crypto.errors import CodeError, TrustKeyError
from crypto.formats import FORMATS, NOT_A_CODE_ERRORS, TrustAnchors, TrustListName, VerifiedCode, format_for
from crypto.idcard import IdCardHolder
from crypto.sealing import Sealer, event_binding, reading_binding
from crypto.subject import SubjectHasher
from gateway import keyspace
from gateway.errors import MalformedCodeError, StoreUnavailableError
from gateway.intake import scan_event_class, scan_event_fields
from gateway.metrics import Metrics
from gateway.scan.offload import VerifyPool
from gateway.scan.outage import OutageMemory
from gateway.scan.scanlog import day_of, new_scan_id, partition_expiry, pseudonym
from gateway.scan.store import FieldPairs, LookupRequest, ReplayMark, ScanRecord, ScanStore
from gateway.scan.turnbatch import TurnTask
from gateway.status.idcards import IdCardIndex
from gateway.storehealth import StoreHealth
from gateway.trust.dsc import Freshness
from gateway.trust.registry import Place
from gateway.trust.state import TrustState
from policy.admission import EXCEPTION_REASONS, Decision, Reason, decide_admission, refuse
from policy.purpose import PURPOSE
from policy.rules import Rules
from policy.temperature import apply_temperature
from policy.verified import decide_verified

__all__ = ["TRUST_LIST_STALE", "Presentation", "ScanOutcome", "Scanner", "StaticReplay"]

# The list vouching for a format is past its hard age limit: its codes fail closed rather than trust withdrawn
# signers.
TRUST_LIST_STALE = "trust_list_stale"


@dataclass(frozen=True, slots=True)
class StaticReplay:
    """Replay memory of codes without a short lifetime (a DCC is static for months): the same code at a second
    place inside ``window_s`` is a shared copy. Keys are a MAC of the code's identifier (never the identifier
    itself) under ``key``, which every worker derives from the master secret, so a copy shown at gates served by
    two workers is still caught."""

    key: bytes
    window_s: int = 60


@dataclass(frozen=True, slots=True)
class Presentation:
    """What a digital sentry presents beyond a bare code (issue 18): a code, or an identity card's keyed hash
    (the number itself never reaches the scanner: the route validates and hashes it), with an optional body
    temperature. A bare code travels as its text, so the common scan builds nothing extra."""

    code: str = ""
    id_digest: str = ""  # IdCardIndex.digest(number): set instead of ``code``
    temperature_c: float | None = None


Presented = str | Presentation


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    decision: Decision
    colour: str | None
    scan_id: str
    checked_at: datetime
    via: str = "code"  # "id_card": the holder was found through the identity-card index

    def to_json(self) -> dict[str, object]:
        """The answer to the scanner: the decision and nothing personal."""
        doc: dict[str, object] = {
            "decision": self.decision.action.value,
            "reason": self.decision.reason,
            "colour": self.colour,
            "scan_id": self.scan_id,
            "checked_at": self.checked_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "degraded": self.decision.degraded,
            "rule_id": self.decision.rule_id,
            "rules_version": self.decision.rules_version,
        }
        if self.via != "code":
            doc["via"] = self.via  # issue 18: the holder was found through the identity-card index
        return doc


@dataclass(frozen=True, slots=True)
class _Request:
    """The codes of one HTTP request and where, by whom and when they were presented."""

    codes: Sequence[Presented]
    place: Place
    device_id: str
    now: datetime


_Answers = list["ScanOutcome | MalformedCodeError"]
_Verified = list["_Item | MalformedCodeError"] | Exception  # one request's verified codes, or what failed them
# How fresh a trust list is at a request's time: TrustState.freshness, or a snapshot of it (``_FreshnessAt``).
_Judge = Callable[[TrustListName, datetime], Freshness]
_TRUST_LISTS: tuple[TrustListName, ...] = tuple(sorted({fmt.trust_list for fmt in FORMATS.values()}))


class Scanner:
    def __init__(
        self,
        store: ScanStore,
        *,
        trust: TrustState,
        rules: Rules,
        sealer: Sealer,
        subjects: SubjectHasher,
        metrics: Metrics,
        static_replay: StaticReplay,
        health: StoreHealth,
        outage: OutageMemory[_Item],
        retention_days: int,
        id_cards: IdCardIndex | None = None,
        reading_sealer: Sealer | None = None,
        redis_timeout_s: float,
        retry_window_s: int = 0,
        verify_pool: VerifyPool | None = None,
    ) -> None:
        self.store = store
        self.trust = trust
        self.rules = rules
        self.sealer = sealer
        self.subjects = subjects
        self.metrics = metrics
        self.static_replay = static_replay
        self.health = health
        self.outage = outage
        self.retention_days = retention_days
        self.id_cards = id_cards  # the identity-card index (gateway/status/idcards.py); None: no ID-card scans
        # A fever's reading is sealed like a case note (its sub-key, crypto/sealing.py NOTE_LABEL), not like the
        # holder reference: the holder sub-key does not open it. None: the reading is not kept at all.
        self.reading_sealer = reading_sealer
        self.redis_timeout_s = redis_timeout_s
        self.retry_window_ms = retry_window_s * 1000  # docs/dispatch.md, "Idempotency": a retry is no replay
        # Threads that verify a multi-code request's signatures beside the loop (gateway/scan/offload.py); None: the
        # loop thread verifies every code (PLACEGATE_VERIFY_THREADS=0, or no core to spare).
        self.verify_pool = verify_pool
        # Every request of a loop turn goes through the phases together, in one task (gateway/scan/turnbatch.py).
        self.turns: TurnTask[_Request, _Answers] = TurnTask(self._scan_turn)
        health.on_recovery(self._catch_up)

    async def aclose(self) -> None:
        """Let the turns in progress finish (their records are written before the store closes)."""
        await self.turns.aclose()

    async def scan(self, code: Presented, place: Place, device_id: str, *, now: datetime) -> ScanOutcome:
        """Verify, look up, decide and record one presented code.

        :raises MalformedCodeError: when the text is not a code at all (no known prefix, not base45): HTTP 400.
        """
        (result,) = await self.turns.submit(_Request((code,), place, device_id, now))
        if isinstance(result, MalformedCodeError):
            raise result
        return result

    def scan_many(
        self, codes: Sequence[Presented], place: Place, device_id: str, *, now: datetime
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
        anchors = self.trust.anchors()  # one trust snapshot for the whole turn
        pool = self.verify_pool
        verified: list[_Verified]
        if pool is not None and any(len(request.codes) > 1 for request in requests):
            verified = await self._verify_offloaded(pool, requests, anchors)
        else:
            verified = [self._verify_request(request, anchors) for request in requests]
        live = [item for items in verified if not isinstance(items, Exception) for item in items
                if isinstance(item, _Item)]
        if live:
            if found := [item for item in live if item.id_digest and item.decision is None]:
                await self._find_holders(found)  # the one extra round trip, for turns with identity cards only
            day_keys = await self._decide(live)
            for item in live:
                if item.fresh is not Freshness.FRESH and item.decision is not None and not item.decision.degraded:
                    item.decision = replace(item.decision, degraded=True)
                if item.temperature_c is not None and item.decision is not None:
                    # A fever wins over whatever the code said: the person needs the health service first.
                    item.decision = apply_temperature(self.rules, item.decision, temperature_c=item.temperature_c,
                                                      venue_class=item.request.place.venue_class)
            await self._record(live, day_keys)
            count = self.metrics.count_scan
            for item in live:
                decision = item.decision
                assert decision is not None
                count(decision.action.value, decision.reason, decision.degraded)
                if decision.reason in EXCEPTION_REASONS and not item.retry:
                    self.metrics.exceptions.labels(scan_event_class(decision.reason)).inc()
                if item.id_digest or item.temperature_c is not None or (
                        item.verified is not None and item.verified.format == "paper"):
                    self._count_sentry(item, decision)
        return [
            items if isinstance(items, Exception)
            else [item if isinstance(item, MalformedCodeError) else item.outcome() for item in items]
            for items in verified
        ]

    def _count_sentry(self, item: _Item, decision: Decision) -> None:
        """The digital sentry's inputs by kind (issue 18): never the number, the reading or the holder."""
        inputs = self.metrics.sentry_inputs
        if item.id_digest:
            inputs.labels("id_card").inc()
            if item.verified is None and decision.reason == Reason.STATUS_UNKNOWN:
                inputs.labels("id_card_unknown").inc()
        elif item.verified is not None and item.verified.format == "paper":
            inputs.labels("paper_code").inc()
        if item.temperature_c is not None:
            inputs.labels("temperature").inc()
            if decision.reason == Reason.FEVER:
                inputs.labels("fever").inc()

    async def _verify_offloaded(
        self, pool: VerifyPool, requests: list[_Request], anchors: TrustAnchors
    ) -> list[_Verified]:
        """``_verify_request`` for every request of the turn, the codes of its multi-code requests split into one
        contiguous chunk per pool thread and one for the loop thread, which checks its chunk and every single code
        while the threads check theirs. The parts are put back in request and code order (a request that failed
        gets the exception of its first failing code), so the phases after this one see what the loop alone would
        have produced.

        What a pool thread touches, and why that is safe: the request (frozen), its codes (str or a frozen
        ``Presentation``), ``anchors`` (a frozen snapshot of immutable trust lists: ``TrustList`` and
        ``DscTrustList`` are only read, their indexes built at construction), ``self.rules`` (read only by
        ``refuse``), ``new_scan_id`` (``os.urandom``), the format registry (a constant mapping) and cryptography's
        key objects (immutable; each verify builds its own OpenSSL context). Each thread builds its own ``_Item``
        objects and no other thread sees them until the loop has them back. ``TrustState.freshness`` reads state
        that the trust refresh replaces on the loop thread, possibly while the threads work: it is judged here on
        the loop thread, once per request, and the threads read that snapshot (``_FreshnessAt``). The caches of the
        scan path stay on the loop thread: the place resolver's place-code cache (``crypto/place_cache.py``, used
        by the route before the scanner runs), the replay and outage memory, the day keys and ``day_of``'s cache
        (``_decide`` and ``_record``), and the metrics, counted after the threads are done.
        """
        flat = [(request, code) for request in requests if len(request.codes) > 1 for code in request.codes]
        judges = {id(request): _FreshnessAt(self.trust, request.now) for request, _ in flat}
        chunks = [_segments(flat[part], judges) for part in _parts(len(flat), pool.threads + 1)]
        futures = [pool.submit(functools.partial(self._verify_segments, chunk, anchors)) for chunk in chunks[:-1]]
        own = self._verify_segments(chunks[-1], anchors)
        single = {id(request): self._verify_request(request, anchors) for request in requests
                  if len(request.codes) <= 1}
        pieces: dict[int, list[_Verified]] = {}
        offloaded = 0
        for chunk, future in zip(chunks[:-1], futures, strict=True):
            results, thread = await future
            pool.ran_on.add(thread)
            offloaded += sum(len(codes) for _, codes, _ in chunk)
            for (request, _, _), result in zip(chunk, results, strict=True):
                pieces.setdefault(id(request), []).append(result)
        for (request, _, _), result in zip(chunks[-1], own, strict=True):
            pieces.setdefault(id(request), []).append(result)
        self.metrics.verifications_offloaded.inc(offloaded)
        return [single[id(request)] if id(request) in single else _joined(pieces[id(request)])
                for request in requests]

    def _verify_segments(
        self, segments: list[tuple[_Request, list[Presented], _Judge]], anchors: TrustAnchors
    ) -> list[_Verified]:
        return [self._verify_request(request, anchors, codes, judge) for request, codes, judge in segments]

    def _verify_request(
        self, request: _Request, anchors: TrustAnchors, codes: Sequence[Presented] | None = None,
        judge: _Judge | None = None,
    ) -> _Verified:
        freshness = judge or self.trust.freshness
        try:
            return [self._verify(code, anchors, request, freshness)
                    for code in (request.codes if codes is None else codes)]
        except Exception as exc:  # a defect in one request's codes must not fail the turn's other requests
            return exc

    def _verify(
        self, code: Presented, anchors: TrustAnchors, request: _Request, freshness: _Judge
    ) -> _Item | MalformedCodeError:
        now = request.now
        item = _Item(new_scan_id(now), request)
        if not isinstance(code, str):
            item.temperature_c = code.temperature_c
            if code.id_digest:
                item.id_digest = code.id_digest  # verified by the index lookup (``_find_holders``)
                return item
            code = code.code
        trust_refusal = False
        try:
            fmt = format_for(code)
            item.verified = fmt.verify(code, anchors, now)
        except NOT_A_CODE_ERRORS:
            return MalformedCodeError("not a health code")
        except CodeError as exc:
            # The rule an EU DCC failed names its field (``v[0].mp``); other refusals stay rule ``code``.
            item.decision = refuse(self.rules, exc.code, rule_id=exc.field or "code")
            trust_refusal = isinstance(exc, TrustKeyError) and not isinstance(exc, CoseHeaderError)
        item.fresh = freshness(fmt.trust_list, now)
        if item.fresh is Freshness.STALE and (item.verified is not None or trust_refusal):
            # Fail closed, and without a forgery case: an unknown kid may only be unknown to our old list.
            item.verified = None
            item.decision = refuse(self.rules, TRUST_LIST_STALE, rule_id="trust_list")
        return item

    async def _find_holders(self, items: list[_Item]) -> None:
        """The holder of every identity card of the turn, from the index (one Redis group). A number the index
        does not hold is decided as an unknown status; while the store cannot answer, in degraded mode, where
        nothing signed vouches for the holder (never an admit: policy/admission.py)."""
        index = self.id_cards
        assert index is not None  # the route refuses an identity card to a scanner without an index
        replies: list[object] | None = None
        if self.health.available:
            try:
                replies = await self.store.find_id_holders([index.lookup(item.id_digest) for item in items],
                                                           timeout_s=self.redis_timeout_s)
            except StoreUnavailableError:
                replies = None
        failed = 0
        for at, item in enumerate(items):
            reply = None if replies is None else replies[at]
            venue_class, now = item.request.place.venue_class, item.request.now
            if replies is None or isinstance(reply, Exception):
                failed += replies is not None or self.health.available
                item.decision = decide_admission(self.rules, venue_class=venue_class, signed_colour=None,
                                                 status=None, now=now, status_available=False)
                continue
            # No entry, or one that does not open under its own name (copied from another key): no holder known.
            holder_ref = None if reply is None else index.holder_of(item.id_digest, reply)
            if holder_ref is None:
                item.decision = decide_admission(self.rules, venue_class=venue_class, signed_colour=None,
                                                 status=None, now=now)
                continue
            item.verified = VerifiedCode(format="id_card", holder_ref=holder_ref, replay_id="", replay_until=None,
                                         signed_colour=None, evidence=IdCardHolder(item.id_digest))
        if failed:
            self.metrics.redis_errors.labels("scan_lookup").inc(failed)
            self.health.failed("scan lookup")

    async def _decide(self, items: list[_Item]) -> dict[str, bytes]:
        """Status and replay memory for every verified code (one Redis group), then the policy decides; returns
        the pseudonym key of each day the turn's verified codes fall on, read in that same group."""
        pending: list[tuple[_Item, VerifiedCode]] = []
        requests: list[LookupRequest] = []
        replay = self.static_replay
        for item in items:
            verified = item.verified
            if item.decision is not None or verified is None:
                continue
            holder = verified.holder_ref if verified.live_status else None
            if not verified.replay_id:
                # An identity card: no copy of it can be shown elsewhere, and the resident shows the same card at
                # every visit, so there is no replay memory (the lookup group skips it).
                ttl, memory_key = 0, ""
            elif verified.replay_until is not None:
                # A short-lived code: remembered for as long as it is accepted, by its (random) replay id.
                ttl = int((verified.replay_until - item.request.now).total_seconds())
                memory_key = keyspace.nonce_key(verified.replay_id)
            else:
                # A static code: remembered for the window, under a MAC of its identifier (it names a person).
                digest = hmac.new(replay.key, verified.replay_id.encode(), "sha256").hexdigest()[:32]
                ttl, memory_key = replay.window_s, keyspace.static_replay_key(digest)
            # Where, at which device and when the code was first presented: a second presentation at the same
            # device within the retry window is the scanner's retry after a lost answer, not a replay.
            request = item.request
            first = f"{request.place.place_id}{_SEP}{request.device_id}{_SEP}{int(request.now.timestamp() * 1000)}"
            requests.append((holder, memory_key, ttl, first))
            item.memory_key, item.mark_until = memory_key, time.monotonic() + max(1, ttl)
            pending.append((item, verified))
        if not pending:
            return {}
        day_keys: dict[str, bytes] = {}
        if self.health.available:
            # The day keys ride in the lookup group: read again every turn (a deleted key is never used again)
            # at no extra round trip.
            days = {day_of(item.request.now) for item, _ in pending}
            lookups, day_keys = await self.store.lookup_scans(
                requests, days={day: partition_expiry(day, self.retention_days) for day in days},
                timeout_s=self.redis_timeout_s,
            )
        else:
            lookups = [None] * len(requests)  # the breaker is open: no wait for a store known to be away
        unavailable = 0
        memory = self.outage
        for (item, verified), lookup in zip(pending, lookups, strict=True):
            place = item.request.place
            if not item.memory_key:
                unavailable += lookup is None
                first_place = None
            elif lookup is None:
                # Remembered here until the store has the mark: a second presentation is still a replay.
                unavailable += 1
                item.unmarked = True
                first_place = memory.first_place(item.memory_key, place.place_id, _remaining_s(item.mark_until))
            else:
                first_place = lookup.first_place
                if first_place is None:
                    # Remembered here too, so that an outage does not make a code shown before it new again;
                    # and a code shown during an outage whose mark still waits is caught here.
                    first_place = memory.first_place(item.memory_key, place.place_id, _remaining_s(item.mark_until))
            if first_place is not None and self._is_retry(first_place, item.request):
                item.retry, first_place = True, None
            if first_place is not None:
                first_place = first_place.partition(_SEP)[0]  # a mark written before it carried the device
                reason = Reason.REPLAYED if first_place == place.place_id else Reason.CODE_SHARED
                item.decision = refuse(self.rules, reason, rule_id="replay")
            else:
                item.decision = decide_verified(
                    self.rules, verified, venue_class=place.venue_class,
                    status=None if lookup is None else lookup.status, status_available=lookup is not None,
                    now=item.request.now, business=self.trust.business,
                )  # fmt: skip
        if unavailable:
            self.metrics.redis_errors.labels("scan_lookup").inc(unavailable)
            self.health.failed("scan lookup")
        return day_keys

    def _is_retry(self, first: str, request: _Request) -> bool:
        """Whether a presentation is the scanner's retry of the first one: same place, same device, within the
        retry window of the first presentation (the replay memory keeps the first, never the latest)."""
        if self.retry_window_ms <= 0:
            return False
        parts = first.split(_SEP)
        if len(parts) != 3 or parts[0] != request.place.place_id or parts[1] != request.device_id:
            return False
        try:
            elapsed = int(request.now.timestamp() * 1000) - int(parts[2])
        except ValueError:
            return False
        return 0 <= elapsed <= self.retry_window_ms

    async def _record(self, items: list[_Item], day_keys: Mapping[str, bytes] | None = None) -> None:
        """The scan-log record of every code, an intake event for each exception and the replay marks an outage
        left unset (one Redis group). While the store is away they wait in the outage memory instead."""
        if not self.health.available:
            self._defer(items)
            return
        timeout_s = self.redis_timeout_s
        try:
            # The day of each scan's own time: a turn that straddles midnight writes to both partitions.
            days = [day_of(item.request.now) for item in items]
            keys = dict(day_keys or {})
            # Days the lookup group did not read (a catch-up after an outage, a failed reply): one group now.
            missing = {day: partition_expiry(day, self.retention_days) for item, day in zip(items, days, strict=True)
                       if day not in keys and item.verified is not None}
            if missing:
                keys.update(await self.store.day_keys(missing, timeout_s=timeout_s))
            records: list[ScanRecord] = []
            marks: list[ReplayMark] = []
            for item, day in zip(items, days, strict=True):
                request, decision = item.request, item.decision
                assert decision is not None
                place, now = request.place, request.now
                millis = str(int(now.timestamp() * 1000))
                holder_ref = None if item.verified is None else item.verified.holder_ref
                holder_alias = "" if holder_ref is None else pseudonym(keys[day], holder_ref)
                # Field, value pairs in XADD order: the scan-log record and intake event PRIVACY.md lists.
                entry: FieldPairs = (
                    "scan_id", item.scan_id, "t", millis, "place", place.place_id, "device", request.device_id,
                    "decision", decision.action.value, "reason", decision.reason, "rule", decision.rule_id,
                    "rules_version", decision.rules_version, "degraded", "1" if decision.degraded else "0",
                    "purpose", PURPOSE, "pseudonym", holder_alias,
                )
                if item.temperature_c is not None:
                    # The log keeps whether the reading was a fever, never the reading (issue 18).
                    entry = (*entry, "fever", "1" if decision.reason == Reason.FEVER else "0")
                event = None
                if decision.reason in EXCEPTION_REASONS and not item.retry:  # a retry's first sent it
                    # The event never carries the day pseudonym or the day: a case must not link back into the log.
                    sealed = subject = ""
                    if holder_ref is not None:
                        sealed = self.sealer.seal(holder_ref, bound_to=event_binding(item.scan_id))
                        subject = self.subjects.of(holder_ref)
                    reading = ""
                    if decision.reason == Reason.FEVER and item.temperature_c is not None and self.reading_sealer:
                        # The reading's one copy: sealed into the fever case (the case's holder key, retention).
                        reading = self.reading_sealer.seal(f"{item.temperature_c:.1f}",
                                                   bound_to=reading_binding(event_binding(item.scan_id)))
                    event = scan_event_fields(
                        item.scan_id, decision.reason, place.place_id, place.jurisdiction, request.device_id,
                        millis, sealed, subject, reading,
                    )
                records.append((day, partition_expiry(day, self.retention_days), entry, event))
                if item.unmarked and (ttl_s := _remaining_s(item.mark_until)) > 0:
                    marks.append((item.memory_key, place.place_id, ttl_s))
            await self.store.record_scans(records, marks=marks, timeout_s=timeout_s)
        except StoreUnavailableError:
            self.metrics.redis_errors.labels("scan_record").inc(len(items))
            self.health.failed("scan record")
            self._defer(items)

    def _defer(self, items: list[_Item]) -> None:
        """Keep the scans for the store's return. Their answers still go out (people are waiting at the gate) but
        say they are degraded: nothing is in the log yet."""
        for item in items:
            assert item.decision is not None
            if not item.decision.degraded:
                item.decision = replace(item.decision, degraded=True)
        self.outage.defer(items)

    async def _catch_up(self) -> None:
        """Once the store is back: write what waited, oldest first, a bounded group at a time (scans go on)."""
        while len(self.outage) and self.health.available:
            await self._record(self.outage.take(_CATCH_UP_GROUP))


class _FreshnessAt:
    """Every trust list's freshness at one request's time, judged on the loop thread before a hand-off."""

    __slots__ = ("_by_list",)

    def __init__(self, trust: TrustState, now: datetime) -> None:
        self._by_list = {name: trust.freshness(name, now) for name in _TRUST_LISTS}

    def __call__(self, trust_list: TrustListName, now: datetime) -> Freshness:
        return self._by_list[trust_list]  # ``now`` is the request's: the one the snapshot was judged at


def _parts(count: int, parts: int) -> list[slice]:
    """``count`` positions in at most ``parts`` contiguous slices whose sizes differ by one at most."""
    parts = max(1, min(parts, count))
    size, extra = divmod(count, parts)
    bounds = list(itertools.accumulate((size + (part < extra) for part in range(parts)), initial=0))
    return [slice(start, end) for start, end in itertools.pairwise(bounds)]


def _segments(
    chunk: list[tuple[_Request, Presented]], judges: Mapping[int, _FreshnessAt]
) -> list[tuple[_Request, list[Presented], _Judge]]:
    """A chunk of the turn's codes as runs of one request's codes each, with that request's freshness snapshot."""
    segments: list[tuple[_Request, list[Presented], _Judge]] = []
    # By identity: two requests of a turn may be equal (a scanner sending the same batch twice) and stay two.
    for _, run in itertools.groupby(chunk, lambda pair: id(pair[0])):
        pairs = list(run)
        request = pairs[0][0]
        segments.append((request, [code for _, code in pairs], judges[id(request)]))
    return segments


def _joined(pieces: list[_Verified]) -> _Verified:
    """One request's verified parts in code order; the first part that failed fails the request (as the loop
    alone would have stopped at its first failing code)."""
    items: list[_Item | MalformedCodeError] = []
    for piece in pieces:
        if isinstance(piece, Exception):
            return piece
        items.extend(piece)
    return items


def _remaining_s(until: float) -> int:
    """Whole seconds left until a monotonic instant (0 when past)."""
    return max(0, int(until - time.monotonic()))


_SEP = "\x1f"  # between place, device and time in a replay mark (none of them can hold it)
_CATCH_UP_GROUP = 256  # scans written per group after an outage: small enough not to stall a loop turn


@dataclass(slots=True)
class _Item:
    """One presented code on its way through the phases of ``Scanner._scan_turn``."""

    scan_id: str
    request: _Request
    verified: VerifiedCode | None = None
    decision: Decision | None = None
    fresh: Freshness = Freshness.FRESH
    memory_key: str = ""  # the code's replay-memory key
    mark_until: float = 0.0  # monotonic instant the replay mark can expire at (the code is no longer accepted)
    unmarked: bool = False  # the lookup could not set the mark: the record's group sets it
    retry: bool = False  # the scanner's retry of its own presentation: decided as the first, no intake event
    id_digest: str = ""  # an identity card's keyed hash: the holder comes from the index (issue 18)
    temperature_c: float | None = None  # measured by the sentry; never logged, kept only in a fever case

    def outcome(self) -> ScanOutcome:
        decision = self.decision
        assert decision is not None
        verified = self.verified
        colour = None if verified is None or verified.signed_colour is None else verified.signed_colour.label
        if decision.reason in ("status_red", "status_yellow"):
            colour = decision.reason.removeprefix("status_")
        return ScanOutcome(decision, colour, self.scan_id, self.request.now, "id_card" if self.id_digest else "code")
