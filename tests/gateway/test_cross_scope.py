"""Cross-scope refusals: N principals x M objects, every foreign object refused with exactly the answer a
missing one gets, so a denial never reveals whether the object exists (PRIVACY.md "Access")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.principals import Principal, Role
from gateway.trust.cli_registry import create_principal
from gateway.trust.registry import Place, Registry
from tests.gateway.conftest import JURISDICTION, PLACES, WorldFactory
from tests.gateway.dispatch import test_dispatch_fixtures as fx
from tests.gateway.dispatch.test_dispatch_fixtures import DispatchWorld, DispatchWorldFactory

dispatch_env, make_dispatch_world = fx.dispatch_env, fx.make_dispatch_world


async def test_a_device_gets_the_same_answer_for_a_foreign_place_as_for_a_missing_one(
    make_world: WorldFactory,
) -> None:
    world = await make_world()
    registry = Registry(world.redis)
    places = [*PLACES, *(Place(f"extra-{i}", f"Extra {i}", "C", JURISDICTION) for i in range(3))]
    for place in places[3:]:
        await registry.add_place(place)
    devices = {}
    for place in places:
        devices[place.place_id] = await create_principal(
            registry, Principal(f"gate-{place.place_id}", Role.DEVICE, frozenset({place.place_id})))
    missing = [f"no-such-place-{i}" for i in range(3)]
    code = world.code("holder-1")
    answers: set[tuple[int, str]] = set()
    for own, token in devices.items():
        for target in [p.place_id for p in places if p.place_id != own] + missing:
            resp = await world.client.post("/v1/scan", json={"code": code, "place": target},
                                           headers={"Authorization": f"Bearer {token}"})
            answers.add((resp.status, await resp.text()))
    assert len(answers) == 1
    status, text = answers.pop()
    assert status == 403 and "forbidden" in text


async def test_an_approval_issued_to_someone_else_is_indistinguishable_from_none(
    make_dispatch_world: DispatchWorldFactory,
) -> None:
    dw: DispatchWorld = await make_dispatch_world(clock=None)
    world = dw.world
    registry = Registry(world.redis)
    officer = {"Authorization": "Bearer " + await create_principal(registry, Principal("po-x", Role.PRIVACY_OFFICER))}
    requesters = {}
    cases = {}
    for i in range(3):
        requesters[f"disp-x{i}"] = await create_principal(
            registry, Principal(f"disp-x{i}", Role.DISPATCHER, jurisdiction="city/d1"))
        cases[f"disp-x{i}"] = await dw.event(holder="holder-1")
    await dw.pump()
    now = datetime.now(UTC)
    window = {"since": (now - timedelta(days=1)).isoformat(), "until": (now + timedelta(minutes=1)).isoformat()}
    approvals: dict[str, str] = {}
    for rid in requesters:
        resp = await world.client.post("/v1/privacy/approvals", headers=officer, json={
            "requester": rid, "case_ref": cases[rid], "holder_ref": "holder-1", "purpose": "epidemic_prevention",
            **window})
        assert resp.status == 201, await resp.text()
        approvals[rid] = (await resp.json())["approval_id"]
    fake = ["apv_" + "f" * 32, "apv_" + "0" * 32]

    async def trace(token: str, approval: str, case_ref: str) -> tuple[int, Any]:
        resp = await world.client.post("/v1/privacy/trace", headers={"Authorization": f"Bearer {token}"}, json={
            "holder_ref": "holder-1", "purpose": "epidemic_prevention", "case_ref": case_ref,
            "approval_id": approval})
        return resp.status, await resp.json()

    answers = set()
    for rid, token in requesters.items():
        for owner, approval in approvals.items():
            if owner != rid:
                answers.add(str(await trace(token, approval, cases[owner])))  # someone else's, their case
                answers.add(str(await trace(token, approval, cases[rid])))  # someone else's, own case
        for approval in fake:
            answers.add(str(await trace(token, approval, cases[rid])))
    assert answers == {str((403, {"error": "approval_invalid", "detail": "no usable approval"}))}
    for rid, token in requesters.items():  # none was consumed by the foreign attempts
        assert (await trace(token, approvals[rid], cases[rid]))[0] == 200
