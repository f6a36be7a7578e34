"""The administrator's registry changes, checked before anything is written: shared by the CLI
(``cli_registry.py``: ``placegate places|devices|principals``) and the web console's admin page, so both refuse
the same inputs (``checks.py``) and every write is audited by the ``Registry`` under the acting administrator.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crypto.errors import CodeFormatError
from crypto.native import issue_place_code
from crypto.trust import Usage
from gateway.principals import Principal, Role, new_token
from gateway.settings import Settings
from gateway.trust.checks import RegistryInputError, check_scope, check_venue_class
from gateway.trust.keystore import latest_signing_key
from gateway.trust.registry import Place, Registry
from policy.routing import RoutingTable
from policy.rules import Rules

__all__ = ["add_device", "add_place", "add_principal", "create_principal", "revoke"]


async def create_principal(registry: Registry, principal: Principal) -> str:
    """Store a principal under the hash of a fresh token and return the token (shown once, never stored)."""
    token, token_hash = new_token()
    await registry.add_principal(principal, token_hash)
    return token


async def _check_id_free(registry: Registry, principal_id: str, *, reissue: bool) -> None:
    """An id in use stays bound to its token until revoked; a revoked id is re-added only on purpose."""
    current = await registry.principal_by_id(principal_id)
    if current is None:
        return
    if not current.revoked:
        revoke_with = "devices" if current.role is Role.DEVICE else "principals"
        raise RegistryInputError(f"{principal_id} exists and is active: revoke it first ({revoke_with} revoke "
                                 f"{principal_id})")
    if not reissue:
        raise RegistryInputError(f"{principal_id} was revoked: pass --reissue to re-add it with a new token")


async def _check_places(registry: Registry, place_ids: frozenset[str]) -> None:
    for place_id in sorted(place_ids):
        if await registry.get_place(place_id) is None:
            raise RegistryInputError(f"no place {place_id}: register it first (places add)")


async def add_principal(registry: Registry, routing: RoutingTable, principal: Principal, *, reissue: bool) -> str:
    """A principal of any role but device, its scope checked against the routing table; the token, once."""
    check_scope(principal, routing)
    await _check_places(registry, principal.places)
    await _check_id_free(registry, principal.principal_id, reissue=reissue)
    return await create_principal(registry, principal)


async def add_device(registry: Registry, device_id: str, place_id: str, *, reissue: bool, id_card: bool = False
                     ) -> str:
    """A device bound to one registered place (``id_card``: a digital sentry that may present identity card
    numbers, issue 18); the token, once."""
    await _check_places(registry, frozenset({place_id}))
    await _check_id_free(registry, device_id, reissue=reissue)
    return await create_principal(registry, Principal(device_id, Role.DEVICE, frozenset({place_id}),
                                                      id_card=id_card))


async def revoke(registry: Registry, principal_id: str, *, device: bool = False) -> bool:
    """Revoke a principal (``device``: only if it is a device); False if there is none."""
    current = await registry.principal_by_id(principal_id)
    if device and current is not None and current.role is not Role.DEVICE:
        raise RegistryInputError(f"{principal_id} is not a device ({current.role.value}): use principals revoke")
    return current is not None and await registry.revoke_principal(principal_id)


async def add_place(
    registry: Registry, settings: Settings, rules: Rules, place: Place, *, days: int, replace: bool,
) -> str | None:
    """Register a place and return its signed place code (for the door), ``None`` without a usable local place
    key. :raises RegistryInputError: an unknown venue class, an existing place without ``replace``, a malformed
    id or jurisdiction."""
    check_venue_class(place.venue_class, rules)
    existing = await registry.get_place(place.place_id)
    if existing is not None and not replace:
        raise RegistryInputError(f"place {place.place_id} exists (class {existing.venue_class}, "
                                 f"{existing.jurisdiction}): pass --replace to overwrite it")
    key = await latest_signing_key(registry, settings, Usage.PLACE)
    if key is None:
        return None
    now = datetime.now(UTC)
    try:
        code = issue_place_code(key, place_id=place.place_id, venue_class=place.venue_class,
                                jurisdiction=place.jurisdiction, not_before=now - timedelta(minutes=5),
                                not_after=now + timedelta(days=days))  # fmt: skip
    except CodeFormatError:
        raise RegistryInputError("invalid place id, class or jurisdiction") from None
    await registry.add_place(place, replace=existing is not None)
    return code
