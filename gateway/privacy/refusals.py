"""Role refusals in the audit trail: who tried a route their role does not admit (PIPL Art. 51, 56).

Only authenticated principals reach the role check (an unknown, revoked or expired token is refused before it,
with no identity to record; those answers are counted in the metrics), so every entry names a real principal.
One refused request writes at most one entry, and at most ``PER_PRINCIPAL`` entries per principal per
``WINDOW_S`` seconds in each process: a principal hammering a forbidden route cannot flood the trail (the
refusals over the bound are counted and the next entry carries that count as ``suppressed``). The memory is
bounded by the number of principals, which is a registry of configured accounts.

Audited: every guarded route except the scan and status-feed routes (``UNAUDITED``), whose callers are devices,
apps and the health authority's feed at scan rates; every other route touches personal data (cases, holder
references, traces, reports, the audit trail) or a privileged action.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web

from gateway.appstate import REDIS
from gateway.auth import RefusalHook
from gateway.principals import Principal
from gateway.privacy.audit import record_refusal

__all__ = ["PER_PRINCIPAL", "UNAUDITED", "WINDOW_S", "RefusalLimiter", "audit_role_refusal"]

PER_PRINCIPAL = 10
WINDOW_S = 60.0
UNAUDITED = frozenset({"/v1/scan", "/v1/scan/batch", "/v1/status"})


class RefusalLimiter:
    """Per principal: how many refusal entries may still be written in the current window."""

    def __init__(self, per_window: int = PER_PRINCIPAL, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._per_window, self._window_s, self._clock = per_window, window_s, clock
        self._seen: dict[str, tuple[float, int, int]] = {}  # principal -> (window start, written, suppressed)

    def admit(self, principal_id: str) -> int | None:
        """The count of refusals suppressed before this one (write an entry carrying it), or None to suppress."""
        now = self._clock()
        start, written, suppressed = self._seen.get(principal_id, (now, 0, 0))
        if now - start >= self._window_s:
            start, written = now, 0
        if written >= self._per_window:
            self._seen[principal_id] = (start, written, suppressed + 1)
            return None
        self._seen[principal_id] = (start, written + 1, 0)
        return suppressed


def audit_role_refusal(limiter: RefusalLimiter) -> RefusalHook:
    """The hook ``auth.requires`` calls before it answers 403 ``forbidden``."""

    async def hook(request: web.Request, principal: Principal) -> None:
        route = request.match_info.route.resource
        template = route.canonical if route is not None else request.path
        if template in UNAUDITED:
            return
        suppressed = limiter.admit(principal.principal_id)
        if suppressed is None:
            return
        await record_refusal(request.app[REDIS], principal=principal, action="role_refused", obj="route",
                             purpose="access_control", code="forbidden", now=datetime.now(UTC),
                             extra={"route": template, "method": request.method, "suppressed": str(suppressed)})

    return hook
