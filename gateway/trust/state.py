"""What this worker trusts right now: the native issuer keys and the EU DCC document signers, each with the
version it was loaded at, and the place registry behind a short cache. The refresh loop (``trust.refresh``)
fills it; the scanner and the place resolver read it, one snapshot per loop turn."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from crypto.dcc_trust import DscTrustList
from crypto.dcc_valuesets import ValueSets
from crypto.formats import TrustAnchors, TrustListName
from crypto.trust import TrustList, Usage
from gateway.storehealth import StoreHealth
from gateway.trust.dsc import DscRegistry, Freshness, freshness
from gateway.trust.registry import Place, Registry
from gateway.ttlcache import TtlCache
from policy.dcc_rules import DccBusinessRules, RuleSet

__all__ = ["DSC_REGISTRY", "PLACES", "REGISTRY", "TRUST_STATE", "PlaceCache", "TrustState"]


@dataclass
class TrustState:
    """The trust lists this worker holds and whether the last refresh of each worked.

    A failed refresh keeps the last good lists; the DSC list's age (stamped at import) is judged at each scan,
    so a worker that cannot reach Redis still degrades and then fails closed on schedule.
    """

    native: TrustList = field(default_factory=TrustList)
    version: int = -1
    healthy: bool = False
    usable_health_keys: int = 0
    dsc: DscTrustList = field(default_factory=lambda: DscTrustList(()))
    dsc_imported_at: datetime | None = None  # None: never imported, so HC1 codes fail closed
    dsc_version: int = -1
    dsc_degraded_after_s: int = 2 * 24 * 3600
    dsc_fail_after_s: int = 7 * 24 * 3600
    # When the store last confirmed the native list (a successful version check, on this process's monotonic
    # clock: an outage is measured in real time, whatever a scan's own time says); past ``native_stale_max_s``
    # without one (a long store outage) native codes fail closed: a key revoked meanwhile must not verify for ever.
    native_confirmed_at: float | None = None
    native_stale_max_s: float = 24 * 3600
    # EU DCC value sets (docs/dcc.md "Value sets"): empty until imported, and then no coded field is judged.
    valuesets: ValueSets = field(default_factory=lambda: ValueSets({}))
    valuesets_version: int = -1
    valuesets_imported_at: datetime | None = None
    # EU DCC business-rule sets by name (docs/dcc.md "Rule sets"), and what the scan path applies: those sets
    # with the value sets in the form the rules read (rebuilt when either reloads, not at every scan).
    dcc_rule_sets: Mapping[str, RuleSet] = field(default_factory=dict)
    dcc_rules_version: int = -1
    dcc_rules_imported_at: datetime | None = None
    business: DccBusinessRules = field(default_factory=lambda: DccBusinessRules({}, {}))

    def anchors(self) -> TrustAnchors:
        """One snapshot of every list (a loop turn verifies all its codes against the same one)."""
        return TrustAnchors(self.native, self.dsc, self.valuesets)

    def set_native(self, version: int, trust: TrustList, now: datetime) -> None:
        self.native = trust
        self.version = version
        self.healthy = True
        self.native_confirmed_at = time.monotonic()
        self.usable_health_keys = sum(
            1 for k in trust if k.usage is Usage.HEALTH and not k.revoked and k.not_before <= now <= k.not_after
        )

    def set_valuesets(self, value_sets: ValueSets, version: int, imported_at: datetime | None) -> None:
        self.valuesets, self.valuesets_version, self.valuesets_imported_at = value_sets, version, imported_at
        self.business = DccBusinessRules(self.dcc_rule_sets, value_sets.compressed())

    def set_rule_sets(self, rule_sets: Mapping[str, RuleSet], version: int, imported_at: datetime | None) -> None:
        self.dcc_rule_sets, self.dcc_rules_version, self.dcc_rules_imported_at = rule_sets, version, imported_at
        self.business = DccBusinessRules(rule_sets, self.business.value_sets)

    def freshness(self, trust_list: TrustListName, now: datetime) -> Freshness:
        """How far the list vouching for a format can be relied on at ``now`` (native keys carry their own
        validity windows; the DSC list ages as a whole)."""
        if trust_list == "native":
            confirmed = self.native_confirmed_at
            if confirmed is not None and time.monotonic() - confirmed > self.native_stale_max_s:
                return Freshness.STALE
            return Freshness.FRESH
        return freshness(self.dsc_imported_at, now, degraded_after_s=self.dsc_degraded_after_s,
                         fail_after_s=self.dsc_fail_after_s)


class PlaceCache:
    """Place registry lookups, cached for a few seconds (places change rarely; scans are many)."""

    def __init__(
        self, registry: Registry, ttl_s: float, *,
        health: StoreHealth | None = None, stale_max_s: float = 0.0, load_timeout_s: float | None = None,
    ) -> None:
        self._cache: TtlCache[Place | None] = TtlCache(
            registry.get_place, ttl_s, health=health, stale_max_s=stale_max_s, load_timeout_s=load_timeout_s,
            what="places",
        )  # fmt: skip

    async def get(self, place_id: str) -> Place | None:
        return await self._cache.get(place_id)


TRUST_STATE: web.AppKey[TrustState] = web.AppKey("trust_state", TrustState)
REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
DSC_REGISTRY: web.AppKey[DscRegistry] = web.AppKey("dsc_registry", DscRegistry)
PLACES: web.AppKey[PlaceCache] = web.AppKey("places", PlaceCache)
