"""Shared fixtures of the dispatch tests: a registered world whose routing table covers its city, principals of
every dispatch role, a controllable clock and an intake consumer the test drives by hand. No tests here."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crypto.sealing import event_binding
from gateway.dispatch.runtime import DISPATCH, DispatchRuntime
from gateway.dispatch.store import case_id_for_event
from gateway.dispatch.worker import IntakeWorker
from gateway.principals import Principal, Role
from gateway.settings import DispatchSettings
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Place, Registry
from tests.gateway.conftest import World, WorldFactory

ROUTING = """
version = "test.1"
city = "city"
[defaults]
status_red = "city-cdc"
status_yellow = "city-cdc"
forged_code = "city-police"
replayed = "city-police"
code_shared = "city-police"
fever = "city-health"
suspected_forgery = "city-police"
refused_verification = "city-police"
forced_entry = "city-police"
device_fault = "city-data"
crowding = "city-market"
other = "city-ops"

[[rules]]
event_classes = ["status_red", "status_yellow"]
jurisdiction = "city/d1"
department = "d1-cdc"

[[rules]]
event_classes = ["status_red", "status_yellow"]
jurisdiction = "city/d1/s1"
department = "s1-clinic"

[[rules]]
event_classes = ["refused_verification", "forced_entry", "suspected_forgery"]
jurisdiction = "city/d1"
department = "d1-police"
"""
D2_PLACE = Place("place-z", "Depot Z", "C", "city/d2/s9/g1/c1")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@dataclass
class DispatchWorld:
    world: World
    runtime: DispatchRuntime
    worker: IntakeWorker
    clock: Clock

    async def event(
        self,
        event_class: str = "status_red",
        *,
        place: str = "place-a",
        jurisdiction: str = "city/d1/s1/g1/c1",
        holder: str | None = "holder-x",
        at: datetime | None = None,
        **extra: str,
    ) -> str:
        """Append a scan-like intake event and return the case id it will become."""
        event_id = extra.pop("event_id", None) or os.urandom(8).hex()
        at = at or self.clock.now
        fields = {
            "event_id": event_id,
            "source": "scan",
            "event_class": event_class,
            "reason": event_class,
            "place": place,
            "jurisdiction": jurisdiction,
            "device": "dev-a",
            "occurred_at": str(int(at.timestamp() * 1000)),
            "purpose": "epidemic_prevention",
            "holder_sealed": self.runtime.sealer.seal(holder, bound_to=event_binding(event_id)) if holder else "",
            "subject": self.runtime.subjects.of(holder) if holder else "",
            **extra,
        }
        await self.world.redis.xadd("pg:dispatch:intake", fields)  # type: ignore[arg-type]
        return case_id_for_event(event_id)

    async def pump(self) -> dict[str, int]:
        return await self.worker.run_once()

    async def case(self, case_id: str) -> Any:
        return await self.runtime.store.get(case_id)

    async def act(self, who: str, case_id: str, action: str, **body: Any) -> tuple[int, dict[str, Any]]:
        resp = await self.world.client.post(
            f"/v1/cases/{case_id}/actions", json={"action": action, **body}, headers=self.world.auth(who)
        )
        return resp.status, await resp.json()

    async def get(self, who: str, path: str) -> tuple[int, Any]:
        resp = await self.world.client.get(path, headers=self.world.auth(who))
        return resp.status, await resp.json()


PRINCIPALS = [
    Principal("h-d1cdc", Role.HANDLER, department="d1-cdc"),
    Principal("h-clinic", Role.HANDLER, department="s1-clinic"),
    Principal("h-police", Role.HANDLER, department="d1-police"),
    Principal("h-citycdc", Role.HANDLER, department="city-cdc"),
    Principal("sup-d1", Role.SUPERVISOR, jurisdiction="city/d1"),
    Principal("sup-d2", Role.SUPERVISOR, jurisdiction="city/d2"),
    Principal("disp-d2", Role.DISPATCHER, jurisdiction="city/d2"),
    Principal("sm-a", Role.SITE_MANAGER, places=frozenset({"place-a"})),
    Principal("sm-z", Role.SITE_MANAGER, places=frozenset({"place-z", "place-ghost"})),
]
DispatchWorldFactory = Callable[..., Any]


@pytest.fixture
def dispatch_env(tmp_path: Path) -> Callable[..., DispatchSettings]:
    """Dispatch settings as the PLACEGATE_DISPATCH_* variables would give them (worker and sweeper off)."""
    routing = tmp_path / "routing.toml"
    routing.write_text(ROUTING, "utf-8")

    def apply(**overrides: str) -> DispatchSettings:
        env = {"ROUTING_FILE": str(routing), "WORKER": "0", "SWEEP_INTERVAL_S": "0", **overrides}
        return DispatchSettings.from_env({"PLACEGATE_DISPATCH_" + name: value for name, value in env.items()})

    return apply


@pytest.fixture
async def make_dispatch_world(
    make_world: WorldFactory, dispatch_env: Callable[..., DispatchSettings]
) -> DispatchWorldFactory:
    async def factory(
        *, env: dict[str, str] | None = None, clock: datetime | None = T0, settings: dict[str, Any] | None = None,
        **worker: Any,
    ) -> DispatchWorld:
        world = await make_world(dispatch=dispatch_env(**(env or {})), **(settings or {}))
        registry = Registry(world.redis)
        await registry.add_place(D2_PLACE)
        for principal in PRINCIPALS:
            world.tokens[principal.principal_id] = await create_principal(registry, principal)
        runtime = world.client.app[DISPATCH]
        the_clock = Clock(clock or datetime.now(UTC))
        if clock is not None:
            runtime.clock = the_clock
        w = IntakeWorker(
            world.redis,
            runtime.store,
            routing=runtime.routing,
            deadlines=runtime.deadlines,
            sealer=runtime.sealer,
            consumer="test-consumer",
            clock=runtime.now,
            **worker,
        )
        await w.ensure_group()
        return DispatchWorld(world, runtime, w, the_clock)

    return factory


@pytest.fixture
async def dw(make_dispatch_world: DispatchWorldFactory) -> DispatchWorld:
    world: DispatchWorld = await make_dispatch_world()
    return world
