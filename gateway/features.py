"""Features that plug into the application: each is an ``install(app)`` adding routes and, where it needs
resources or background tasks, a cleanup context (appended after the core one, so the store is ready)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from gateway.dispatch import feature as dispatch_feature
from gateway.privacy import feature as privacy_feature
from gateway.trust import refresh as dsc_feature

__all__ = ["FEATURES"]

FEATURES: list[Callable[[web.Application], None]] = [
    dsc_feature.install,  # EU DCC (HC1) document-signer list and its freshness
    privacy_feature.install,  # privacy officer: audit trail, retention, RoPA, contact tracing (issue 4)
    dispatch_feature.install,  # dispatch core: reports, cases, intake consumer, sweeper (issue 3)
]
