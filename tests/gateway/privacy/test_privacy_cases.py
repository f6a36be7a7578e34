"""Privacy by construction once the dispatch core has turned exceptions into cases: after scans, cases and an
audited follow-up read (and a dead letter), no raw holder reference is stored anywhere and every non-registry
key expires."""

from __future__ import annotations

import asyncio

from crypto.native import Colour
from gateway.dispatch.store import case_id_for_event
from gateway.keyspace import DISPATCH_DEADLETTER, REGISTRY_PREFIXES
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld, DispatchWorldFactory
from tests.gateway.privacy.test_privacy_storage import _dump

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world


async def test_cases_keep_no_raw_holder_reference_and_every_key_expires(
    make_dispatch_world: DispatchWorldFactory,
) -> None:
    dw: DispatchWorld = await make_dispatch_world(env={"WORKER": "1"}, clock=None)
    world = dw.world
    holders = [f"case-holder-{i:03d}" for i in range(12)]
    case_ids = []
    for i, holder in enumerate(holders):
        await world.set_status(holder, Colour.RED if i % 2 else Colour.YELLOW)
        _, scan = await world.scan(world.code(holder))
        case_ids.append(case_id_for_event(scan["scan_id"]))
    await dw.event("no_such_class", holder=holders[0])  # unknown class: a dead letter, still sealed
    for _ in range(300):  # the app's own intake consumer files them
        found = [(await dw.get("h-clinic", f"/v1/cases/{c}"))[0] for c in case_ids]
        if found == [200] * len(case_ids) and await world.redis.exists(DISPATCH_DEADLETTER):
            break
        await asyncio.sleep(0.02)
    assert found == [200] * len(case_ids)
    status, holder = await dw.get("h-clinic", f"/v1/cases/{case_ids[0]}/holder")
    assert (status, holder["holder_ref"]) == (200, holders[0])  # readable only through the audited path

    stored = await _dump(world.redis)
    assert any(k.startswith(b"pg:case:") for k in stored) and DISPATCH_DEADLETTER.encode() in stored
    everything = b"\n".join(k + b" " + v for k, (_, v) in stored.items())
    for ref in holders:
        assert ref.encode() not in everything, ref
    for key, (ttl, _) in stored.items():
        if not key.decode().startswith(REGISTRY_PREFIXES):
            assert ttl > 0, key
