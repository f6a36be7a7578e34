"""The demo set-up of `placegate serve --demo`: keys, a place, a device, a green holder and a fresh code."""

from __future__ import annotations

import os
import shlex
from datetime import UTC, datetime, timedelta

from crypto.keys import Alg
from crypto.native import Colour, issue_health_code
from crypto.trust import Usage
from gateway.cli_common import admin_redis
from gateway.principals import Principal, Role
from gateway.settings import Settings
from gateway.status.cache import StatusRecord
from gateway.status.writer import StatusWriter
from gateway.trust.cli_registry import create_principal
from gateway.trust.keystore import latest_signing_key, new_issuer_key
from gateway.trust.registry import Place, Registry
from policy.status import HolderStatus, TestResult

__all__ = ["DEMO_HOLDER", "DEMO_PLACE", "prepare_demo"]

# Inside the packaged routing table's city, so the demo's exceptions route to a department.
DEMO_PLACE = Place("demo-office", "Demo office tower", "C", "metro/east/riverside/g01/c01")
DEMO_DEVICE = "demo-scanner"
DEMO_HOLDER = "demo-holder-0001"


async def prepare_demo(settings: Settings) -> str:
    """Idempotent demo data; returns the one-line curl command that scans a freshly minted code."""
    assert settings.secret is not None
    now = datetime.now(UTC)
    async with admin_redis(settings) as redis:
        registry = Registry(redis)
        health = await latest_signing_key(registry, settings, Usage.HEALTH)
        if health is None:
            health = await new_issuer_key(registry, settings, usage=Usage.HEALTH, alg=Alg.ES256)
        if await latest_signing_key(registry, settings, Usage.PLACE) is None:
            await new_issuer_key(registry, settings, usage=Usage.PLACE, alg=Alg.ES256)
        await registry.add_place(DEMO_PLACE)
        # A device token is shown once and stored only as a hash, so each demo run issues a new one.
        await registry.revoke_principal(DEMO_DEVICE)
        token = await create_principal(registry, Principal(DEMO_DEVICE, Role.DEVICE, frozenset({DEMO_PLACE.place_id})))
        writer = StatusWriter.standalone(redis, secret=settings.secret.reveal(),
                                         status_buckets=settings.status_buckets, status_ttl_s=settings.status_ttl_s)
        status = HolderStatus(Colour.GREEN, now, now - timedelta(hours=2), TestResult.NEGATIVE, True)
        try:
            await writer.upsert_statuses([StatusRecord(DEMO_HOLDER, status)])
        finally:
            await writer.aclose()
    code = issue_health_code(health, holder_ref=DEMO_HOLDER, colour=Colour.GREEN, now=now, nonce=os.urandom(12))
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    body = '{"code": "' + code + '"}'
    return (
        f"curl -s -X POST http://{host}:{settings.port}/v1/scan -H 'Authorization: Bearer {token}' "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
