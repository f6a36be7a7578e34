"""Prometheus metrics. Labels carry decisions, reasons and operation names only — never personal data."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.scans = Counter(
            "placegate_scans", "Scans answered", ["decision", "reason", "degraded"], registry=self.registry
        )
        self._scan_children: dict[tuple[str, str, bool], Counter] = {}
        self.redis_errors = Counter(
            "placegate_redis_errors", "Redis operations that failed or timed out", ["op"], registry=self.registry
        )
        self.http_requests = Counter(
            "placegate_http_requests", "Answers by route template (never the raw path) and final HTTP status",
            ["route", "status"], registry=self.registry,
        )
        self._http_children: dict[tuple[str, int], Counter] = {}
        self.http_seconds = Histogram(
            "placegate_http_request_seconds", "Time from the outermost middleware's start to the answer, by route "
            "template", ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self._http_seconds_children: dict[str, Histogram] = {}
        self.store_errors = Counter(
            "placegate_store_errors", "Store calls that ended in store_unavailable, by call site",
            ["op"], registry=self.registry,
        )
        self._store_children: dict[str, Counter] = {}
        self.status_records = Counter(
            "placegate_status_records", "Status feed records by outcome", ["outcome"], registry=self.registry
        )
        # The digital sentry's inputs (issue 18): kinds only (id_card, id_card_unknown, paper_code, temperature,
        # fever), never a number, a reading or a holder.
        self.sentry_inputs = Counter(
            "placegate_sentry_inputs", "Digital-sentry inputs answered, by kind", ["input"], registry=self.registry
        )
        # A multi-code scan's verifications done on a pool thread beside the loop (PLACEGATE_VERIFY_THREADS).
        self.verifications_offloaded = Counter(
            "placegate_scan_verifications_offloaded", "Code verifications of multi-code scans done on a pool thread",
            registry=self.registry,
        )
        self.exceptions = Counter(
            "placegate_exception_events", "Exception events sent to dispatch intake", ["event_class"],
            registry=self.registry,
        )
        # Degraded mode (gateway/storehealth.py): 1 while this worker cannot reach the store; under --workers N
        # the highest worker's value (any worker degraded is what an operator must see).
        self.degraded = Gauge("placegate_degraded", "1 while the store is unreachable and scans answer degraded",
                              registry=self.registry, multiprocess_mode="livemax")
        self.degraded_queue = Gauge(
            "placegate_degraded_queue", "Scans whose log records and replay marks wait for the store",
            registry=self.registry, multiprocess_mode="livesum",
        )
        self.degraded_dropped = Counter(
            "placegate_degraded_dropped", "Waiting scans dropped, oldest first, because the queue was full",
            registry=self.registry,
        )
        # Under `serve --workers N` every worker loads the same trust list: report the latest value of a live one.
        self.trust_keys = Gauge("placegate_trust_keys", "Keys in the loaded trust list", registry=self.registry,
                                multiprocess_mode="livemostrecent")

        # Store-side figures, sampled every Settings.store_gauges_s (gateway/dispatch/gauges.py, trust/refresh.py).
        self.dispatch_open = Gauge("placegate_dispatch_open_cases", "Cases not yet closed (the dispatch backlog)",
                                   registry=self.registry, multiprocess_mode="livemostrecent")
        self.dispatch_intake = Gauge("placegate_dispatch_intake_events", "Entries in the dispatch intake stream",
                                     registry=self.registry, multiprocess_mode="livemostrecent")
        self.dispatch_pending = Gauge(
            "placegate_dispatch_intake_pending", "Intake events delivered to a consumer and not yet acknowledged",
            registry=self.registry, multiprocess_mode="livemostrecent",
        )
        self.dispatch_dead_letters = Gauge("placegate_dispatch_dead_letters", "Entries in the dead-letter stream",
                                           registry=self.registry, multiprocess_mode="livemostrecent")
        self.trust_list_age = Gauge(
            "placegate_trust_list_age_seconds",
            "Seconds since each trust list was last confirmed: native = read from the store, dsc = imported",
            ["list"], registry=self.registry, multiprocess_mode="livemostrecent",
        )
        self.dsc_syncs = Counter(
            "placegate_dsc_sync_total", "Scheduled pulls of the EU DCC signer list by outcome: imported, refused "
            "(signature or format: audited, the stored list stays), unreachable", ["outcome"], registry=self.registry,
        )

    def count_scan(self, action: str, reason: str, degraded: bool) -> None:
        """Count one answer; the labelled child is looked up once per label set, not once per scan (``labels``
        takes a lock and builds a key each call: a measurable share of the hot path)."""
        key = (action, reason, degraded)
        child = self._scan_children.get(key)
        if child is None:
            child = self._scan_children[key] = self.scans.labels(action, reason, "true" if degraded else "false")
        child.inc()

    def count_http(self, route: str, status: int, duration_s: float | None = None) -> None:
        """Count one answer (and observe its duration). ``route`` is a route template or ``unmatched``, never a
        request's path: ids in a path would make the label set unbounded and put personal data in a public
        endpoint."""
        key = (route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http_requests.labels(route, str(status))
        child.inc()
        if duration_s is not None:
            timer = self._http_seconds_children.get(route)
            if timer is None:
                timer = self._http_seconds_children[route] = self.http_seconds.labels(route)
            timer.observe(duration_s)

    def count_store_error(self, op: str) -> None:
        """Count one failed store call; ``op`` is a fixed call-site name (gateway.redisio)."""
        child = self._store_children.get(op)
        if child is None:
            child = self._store_children[op] = self.store_errors.labels(op)
        child.inc()

    def render(self) -> bytes:
        """This process's metrics, or, under `serve --workers N`, the sum over every worker.

        prometheus_client itself switches to multiprocess mode on ``PROMETHEUS_MULTIPROC_DIR`` (gateway.workers).
        """
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
