"""Feature: the EU DCC (HC1) document-signer list in every worker, reloaded when its version moves.

Installed through ``gateway.features.FEATURES``; its cleanup context runs after the core one, so the scanner
and the registry exist.  Like ``refresh_trust`` for native keys, a failed reload keeps the last good list; the
list's age (stamped at import) is judged at each scan, so a worker that cannot reach Redis still degrades and
then fails closed on schedule.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from crypto.kdf import derive_key
from gateway.background import refreshing
from gateway.errors import StoreUnavailableError
from gateway.state import REGISTRY, SCANNER, SETTINGS
from gateway.trust.dsc import DscRegistry

__all__ = ["DSC_REFRESH_S", "DSC_REGISTRY", "install", "refresh_dsc"]

log = logging.getLogger("placegate.dsc")
DSC_REFRESH_S = 2.0
DSC_REGISTRY: web.AppKey[DscRegistry] = web.AppKey("dsc_registry", DscRegistry)


def install(app: web.Application) -> None:
    """Load the DSC list at start-up and keep it current."""
    app.cleanup_ctx.append(_context)


async def _context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.secret is not None
    gate = app[SCANNER].dcc
    gate.degraded_after_s = settings.dsc_trust_degraded_after_s
    gate.fail_after_s = settings.dsc_trust_fail_after_s
    gate.replay_window_s = settings.dcc_replay_window_s
    # Every worker derives the same key, so a DCC shared between gates served by two workers is still caught.
    gate.replay_key = derive_key(settings.secret.reveal(), b"placegate/dcc-replay/v1")
    app[DSC_REGISTRY] = DscRegistry(app[REGISTRY].redis)
    await refresh_dsc(app)
    # A failed refresh keeps the last list; its age still counts towards degraded / fail-closed.
    async with refreshing(lambda: refresh_dsc(app), every_s=DSC_REFRESH_S, what="DSC trust-list"):
        yield


async def refresh_dsc(app: web.Application, *, force: bool = False) -> bool:
    """Reload the DSC list when its version moved; False when Redis could not answer (last list kept)."""
    gate = app[SCANNER].dcc
    registry = app[DSC_REGISTRY]
    try:
        if not force and await registry.version() == gate.version:
            return True
        snapshot = await registry.load()
    except StoreUnavailableError:
        return False
    gate.trust = snapshot.trust
    gate.imported_at = snapshot.imported_at
    gate.version = snapshot.version
    return True
