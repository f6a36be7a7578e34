"""Every Redis key name and every retention TTL of placegate, in one place.

Keys are Redis-Cluster-ready: a ``{hash tag}`` appears where keys must share a slot (a day's scan-log
partition and that day's pseudonym key are written in one transaction; a case and its history likewise).
Retention is policy (DESIGN.md "Purpose-limited log and retention"): every key that holds personal or event
data gets a TTL here; registry keys (trust list, places, principals) are configuration and live until revoked.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AUDIT_HEAD",
    "AUDIT_STREAM",
    "DISPATCH_DEADLETTER",
    "DISPATCH_INTAKE",
    "KEY_PREFIX",
    "PLACES",
    "PRINCIPAL_IDS",
    "REGISTRY_PREFIXES",
    "TRUST",
    "TRUST_VERSION",
    "case_key",
    "day_key",
    "day_tag",
    "nonce_key",
    "place_key",
    "principal_key",
    "scan_log_key",
    "status_bucket_key",
]

KEY_PREFIX: Final = "pg:"

# --- registry (configuration; no TTL, changed by the CLI / admin API) ---------------------------------
TRUST: Final = "pg:trust"  # hash kid-hex -> JSON trusted key (public part only)
TRUST_VERSION: Final = "pg:trust:version"  # counter bumped on every trust-list change; workers poll it
PLACES: Final = "pg:places"  # set of place ids


def place_key(place_id: str) -> str:
    """Hash with one registered place: venue class, jurisdiction path, name."""
    return f"pg:place:{place_id}"


PRINCIPAL_IDS: Final = "pg:principal-ids"  # hash principal id -> token hash, to revoke by id


def principal_key(token_hash_hex: str) -> str:
    """Hash with one principal, found by the SHA-256 of its bearer token (the token itself is never stored)."""
    return f"pg:principal:{token_hash_hex}"


# --- status cache (TTL = status freshness limit, refreshed on write) ----------------------------------
def status_bucket_key(bucket: int) -> str:
    """One bucket of the compact status cache: a small hash kept in listpack encoding.

    256 consecutive buckets share a hash tag, so a bulk load can update a whole group in one script call on
    Redis Cluster.
    """
    return "pg:st:{" + f"{bucket >> 8:x}" + "}" + f"{bucket:x}"


# --- replay / sharing (TTL = the code's remaining lifetime + clock skew) -------------------------------
def nonce_key(kid_hex: str, nonce_hex: str) -> str:
    """Remembers where a code was first presented, for its lifetime."""
    return f"pg:nonce:{kid_hex}:{nonce_hex}"


# --- purpose-limited scan log (TTL = end of day + retention) -------------------------------------------
def day_tag(day: str) -> str:
    """Hash tag shared by one day's log partition and that day's pseudonym key (``day`` is YYYYMMDD)."""
    return "{d" + day + "}"


def scan_log_key(day: str) -> str:
    """The day's scan-log partition (a stream)."""
    return f"pg:log:{day_tag(day)}"


def day_key(day: str) -> str:
    """The day's pseudonym key; once it expires the day's pseudonyms are unlinkable (crypto-shredding)."""
    return f"pg:daykey:{day_tag(day)}"


# --- dispatch ------------------------------------------------------------------------------------------
DISPATCH_INTAKE: Final = "pg:dispatch:intake"  # stream of exception events (scans and reports)
DISPATCH_DEADLETTER: Final = "pg:dispatch:deadletter"  # events that failed too many deliveries


def case_key(case_id: str) -> str:
    """Hash with one case; its history stream shares the hash tag."""
    return "pg:case:{" + case_id + "}"


# --- audit (kept >= 3 years, PIPL Art. 56) -------------------------------------------------------------
AUDIT_STREAM: Final = "pg:audit"
AUDIT_HEAD: Final = "pg:audit:head"  # hash of the newest entry: the chain's head

# Prefixes whose keys are configuration and legitimately carry no TTL; the privacy tests check every other
# key for an expiry.
REGISTRY_PREFIXES: Final = (
    TRUST, PLACES, "pg:place:", "pg:principal", DISPATCH_INTAKE, DISPATCH_DEADLETTER, AUDIT_STREAM,
)
