"""The record of processing activities (GDPR Art. 30; PIPL Arts. 54-56), generated from the running
configuration: retention and cache limits from ``Settings``, the admission rules' version and classes, and
the recipients (roles) read off the live router, so the record cannot drift from what the code does."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from aiohttp import web

from gateway.auth import roles_of
from gateway.privacy.audit import AUDIT_RETENTION
from gateway.settings import Settings
from policy.purpose import APPROVAL_MAX_S, Purpose
from policy.rules import Rules

__all__ = ["build_ropa", "render_markdown", "route_roles"]

SECURITY_MEASURES = (
    "bearer tokens of 256 random bits, stored only as SHA-256, shown once, revocable, optionally expiring",
    "every route declares its roles (gateway.auth.requires); principals are scoped to places, a jurisdiction "
    "subtree or a department",
    "pseudonymous scan log: HMAC-SHA256 of the holder reference under a per-day key; the key expires with the "
    "day partition (crypto-shredding)",
    "holder references needed by a case are sealed with AES-256-GCM; opening one is an audited read",
    "hash-chained (SHA-256) audit trail of every read of personal data and every privileged action",
    "contact tracing only for epidemic prevention, always with a single-use approval by another privacy officer "
    "(two-person rule) naming the requester, a case in their jurisdiction, the holder (keyed hash) and a window; "
    "results limited to the requester's jurisdiction",
    "no code strings, raw holder references, names or ID numbers in Redis, logs or metric labels",
)


def route_roles(app: web.Application) -> dict[str, list[str]]:
    """``"METHOD /path" -> sorted roles`` for every route (``[]`` = public), read from the router."""
    out: dict[str, list[str]] = {}
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.canonical if route.resource is not None else "?"
        roles = roles_of(route.handler)
        out[f"{route.method} {info}"] = sorted(r.value for r in roles) if roles is not None else []
    return dict(sorted(out.items()))


def _recipients(routes: Mapping[str, list[str]], prefixes: tuple[str, ...]) -> list[str]:
    roles: set[str] = set()
    for name, admitted in routes.items():
        if name.split(" ", 1)[1].startswith(prefixes):
            roles.update(admitted)
    return sorted(roles)


def build_ropa(settings: Settings, rules: Rules, app: web.Application, *, now: datetime) -> dict[str, object]:
    """The record as JSON-ready data."""
    routes = route_roles(app)
    purpose = Purpose.EPIDEMIC_PREVENTION.value
    scan_retention = f"{settings.retention_days} days after the end of the day of the scan (log and day key)"
    activities = [
        {
            "name": "entry verification (scan)",
            "purpose": purpose,
            "legal_basis": "PIPL Art. 13(1)(4) (public health emergency) and the city's epidemic-prevention "
                           "regulation; GDPR Art. 6(1)(c)/(e), Art. 9(2)(i)",
            "data_subjects": ["people entering registered places"],
            "categories": ["pseudonym (HMAC of the holder reference under the day key)", "place", "device",
                           "decision and reason (may reveal a health-code colour)", "rules version", "time"],
            "recipients": _recipients(routes, ("/v1/scan",)),
            "storage": "Redis stream pg:log:{dYYYYMMDD}, day key pg:daykey:{dYYYYMMDD}",
            "retention": scan_retention,
        },
        {
            "name": "holder status cache",
            "purpose": purpose,
            "legal_basis": "as above; statuses supplied by the health authority",
            "data_subjects": ["health-code holders"],
            "categories": ["keyed bucket/field of the holder reference", "colour", "latest test time and result",
                           "vaccination flag"],
            "recipients": [*_recipients(routes, ("/v1/status",)), "the scan path (automated)"],
            "storage": "Redis hashes pg:st:*",
            "retention": f"{settings.status_ttl_s} s after the last update of the bucket",
        },
        {
            "name": "identity-card index (digital sentry, issue 18)",
            "purpose": purpose,
            "legal_basis": "as above; numbers supplied by the health authority beside the holder reference",
            "data_subjects": ["residents who pass a digital sentry with their identity card"],
            "categories": ["keyed hash of the identity card number (HMAC-SHA256 under its own sub-key; the "
                           "number itself is never stored)", "holder reference sealed to its entry (AES-256-GCM)"],
            "recipients": [*_recipients(routes, ("/v1/status",)),
                           "the scan path (automated; devices registered with devices add --id-card)"],
            "storage": "Redis strings pg:idc:*",
            "retention": f"{settings.status_ttl_s} s after the last feed record naming the number",
        },
        {
            "name": "exception cases (dispatch)",
            "purpose": purpose,
            "legal_basis": "as above; reporting duty of place managers",
            "data_subjects": ["people refused entry or reported by a site manager"],
            "categories": ["holder reference sealed to its event or case (AES-256-GCM)",
                           "keyed subject hash of the holder", "place", "event class",
                           "a fever case's temperature reading, sealed beside the holder (digital sentry)"],
            "recipients": _recipients(routes, ("/v1/cases", "/v1/reports")) or ["dispatch core (not yet routed)"],
            "storage": "Redis stream pg:dispatch:intake, hashes pg:case:{id}, note texts pg:casenote:{id}:{day}",
            "retention": "case structure 3 years; note texts (ID, phone and e-mail numbers masked) the end of their "
            f"day + {settings.retention_days} days, like the scan log",
        },
        {
            "name": "contact tracing",
            "purpose": purpose,
            "legal_basis": "PIPL Art. 13(1)(4); GDPR Art. 9(2)(i)",
            "data_subjects": ["the traced holder", "nobody else (other pseudonyms are not linked)"],
            "categories": ["visits: day, time, place, device, decision, reason"],
            "recipients": _recipients(routes, ("/v1/privacy/trace",)),
            "storage": "not stored; computed on request; the query is audited with the holder's keyed hash",
            "retention": f"only inside the {settings.retention_days}-day window; approvals expire within "
                         f"{APPROVAL_MAX_S // 3600} h and are single-use",
        },
        {
            "name": "audit trail",
            "purpose": "accountability (PIPL Art. 56; GDPR Art. 5(2))",
            "legal_basis": "legal obligation of the processor",
            "data_subjects": ["principals (staff, devices, systems)"],
            "categories": ["principal id, role, time, action, object, purpose, case reference, result count"],
            "recipients": _recipients(routes, ("/v1/privacy/audit",)),
            "storage": "Redis stream pg:{audit}:log (hash-chained)",
            "retention": f"at least {AUDIT_RETENTION.days} days; trimmed only past that",
        },
        {
            "name": "principal registry",
            "purpose": "access control",
            "legal_basis": "legitimate operation of the system",
            "data_subjects": ["principals"],
            "categories": ["principal id, role, scope, token hash, expiry, revoked flag"],
            "recipients": ["admins (CLI)"],
            "storage": "Redis hashes pg:principal:*",
            "retention": "until revoked and removed by an admin",
        },
    ]
    return {
        "generated_at": now.isoformat(),
        "controller": "the city operation institution operating this gateway",
        "processor_software": "placegate",
        "purposes": [purpose],
        "rules": {"version": rules.version, "venue_classes": sorted(rules.classes)},
        "settings": {"retention_days": settings.retention_days, "status_ttl_s": settings.status_ttl_s,
                     "principal_cache_s": settings.principal_cache_s},
        "activities": activities,
        "transfers": "none: no cross-border transfer, no disclosure to third parties (PIPL Arts. 23, 38)",
        "security_measures": list(SECURITY_MEASURES),
        "access": routes,
    }


def render_markdown(ropa: Mapping[str, object]) -> str:
    """The record as a Markdown document a privacy officer can file."""
    lines = [f"# Record of processing activities — generated {ropa['generated_at']}", "",
             f"Controller: {ropa['controller']}", f"Purposes: {', '.join(map(str, ropa['purposes']))}",  # type: ignore[call-overload]
             f"Transfers: {ropa['transfers']}", ""]
    for act in ropa["activities"]:  # type: ignore[attr-defined]
        lines.append(f"## {act['name']}")
        for k in ("purpose", "legal_basis", "data_subjects", "categories", "recipients", "storage", "retention"):
            v = act[k]
            lines.append(f"- **{k}**: {', '.join(v) if isinstance(v, list) else v}")
        lines.append("")
    lines += ["## Security measures", *(f"- {m}" for m in ropa["security_measures"]), "",  # type: ignore[attr-defined]
              "## Access (route → roles)", "", "| route | roles |", "|---|---|"]
    for route, roles in ropa["access"].items():  # type: ignore[attr-defined]
        lines.append(f"| `{route}` | {', '.join(roles) or 'public'} |")
    return "\n".join(lines) + "\n"
