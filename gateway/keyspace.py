"""Every Redis key name and every retention TTL of placegate, in one place.

Keys are Redis-Cluster-ready: a ``{hash tag}`` appears where keys must share a slot (a day's scan-log
partition and that day's pseudonym key are written in one transaction; a case and its history likewise).
Retention is policy (PRIVACY.md "Retention and deletion"): every key that holds personal or event
data gets a TTL here; registry keys (trust list, places, principals) are configuration and live until revoked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "AUDIT_BASE",
    "AUDIT_CHECKPOINTS",
    "AUDIT_CONFIG",
    "AUDIT_HEAD",
    "AUDIT_HWM",
    "AUDIT_STREAM",
    "CASE_RETENTION_S",
    "COMPACTION_DAYS",
    "COMPACTION_DAYS_TTL_S",
    "COMPACTION_LEASE",
    "CONSOLE_SESSION_MAX_S",
    "DATA_CLASSES",
    "DCC_RULES",
    "DCC_RULES_IMPORTED_AT",
    "DCC_RULES_VERSION",
    "DCC_VALUESETS",
    "DCC_VALUESETS_IMPORTED_AT",
    "DCC_VALUESETS_VERSION",
    "DISPATCH_DEADLETTER",
    "DISPATCH_DUE",
    "DISPATCH_DUE_CHECKED",
    "DISPATCH_DUE_STAMPS",
    "DISPATCH_INTAKE",
    "DISPATCH_OPEN",
    "DSC_SYNC_LOCK",
    "DSC_TRUST",
    "DSC_TRUST_IMPORTED_AT",
    "DSC_TRUST_VERSION",
    "DUE_RECONCILE_S",
    "FOLD_WINDOW_MAX_S",
    "HOLDER_READS_WINDOW_S",
    "IDEMPOTENCY_TTL_S",
    "KEY_PREFIX",
    "NOTIFY_LEASE",
    "NOTIFY_OUTBOX",
    "PLACES",
    "PRINCIPAL_IDS",
    "REGISTRY_PREFIXES",
    "RETENTION_LEASE",
    "SECRET_FINGERPRINT",
    "SWEEP_LEASE",
    "SWEEP_LEASE_CLI_MS",
    "TRUST",
    "TRUST_VERSION",
    "DataClass",
    "Limit",
    "approval_key",
    "case_alias_key",
    "case_attachment_key",
    "case_attachments_key",
    "case_extension_key",
    "case_history_key",
    "case_holder_key",
    "case_key",
    "case_notes_key",
    "case_notify_key",
    "case_occurrences_key",
    "compaction_lease_ttl_ms",
    "console_session_key",
    "data_class_of",
    "day_key",
    "day_tag",
    "dispatch_day_key",
    "fold_key",
    "holder_reads_key",
    "id_card_key",
    "idempotency_key",
    "nonce_key",
    "place_exceptions_key",
    "place_key",
    "principal_key",
    "reporter_reports_info_key",
    "reporter_reports_key",
    "scan_log_key",
    "static_replay_key",
    "status_bucket_key",
    "sweep_lease_ttl_ms",
]

KEY_PREFIX: Final = "pg:"

# --- registry (configuration; no TTL, changed by the CLI / admin API) ---------------------------------
TRUST: Final = "pg:trust"  # hash kid-hex -> JSON trusted key (public part only)
TRUST_VERSION: Final = "pg:trust:version"  # counter bumped on every trust-list change; workers poll it
# EU DCC document signer certificates (public material only); under the TRUST prefix, so registry too.
DSC_TRUST: Final = "pg:trust:dsc"  # hash SHA-256-hex of the DER -> base64 DER
DSC_TRUST_VERSION: Final = "pg:trust:dsc:version"  # counter bumped on every import; workers poll it
DSC_TRUST_IMPORTED_AT: Final = "pg:trust:dsc:imported_at"  # unix seconds of the last import (freshness)
# EU DCC value sets and business-rule sets (public reference data, configuration: no TTL); each has a version
# counter the workers poll and the unix seconds of its last import (docs/dcc.md "Value sets", "Rule sets").
DCC_VALUESETS: Final = "pg:trust:valuesets"  # hash valueSetId -> JSON {"id", "date", "codes"}
DCC_VALUESETS_VERSION: Final = "pg:trust:valuesets:version"
DCC_VALUESETS_IMPORTED_AT: Final = "pg:trust:valuesets:imported_at"
DCC_RULES: Final = "pg:trust:dccrules"  # hash rule-set name -> JSON list of EU DCC Gateway rules
DCC_RULES_VERSION: Final = "pg:trust:dccrules:version"
DCC_RULES_IMPORTED_AT: Final = "pg:trust:dccrules:imported_at"
# Taken (SET NX EX) by the process that pulls the signer list this round; expires after the sync interval, so
# the deployment pulls once per interval whatever its number of workers.
DSC_SYNC_LOCK: Final = "pg:dscsync:lock"
PLACES: Final = "pg:places"  # set of place ids
# Keyed fingerprint of the deployment's master secret (gateway/secretcheck.py), set once by the first process;
# a process with another secret refuses to start. Configuration: no TTL.
SECRET_FINGERPRINT: Final = "pg:secret:fingerprint"


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


def id_card_key(digest_hex: str) -> str:
    """The identity-card index (issue 18): the keyed hash of an ID number (``crypto/idcard.py``, never the number)
    -> the holder reference the health authority's feed named for it, sealed (``gateway/status/idcards.py``).

    TTL = the status cache's (``status_ttl_s``), set again by every feed record that carries the number: the
    entry expires with the status it leads to.
    """
    return f"pg:idc:{digest_hex}"


# --- replay / sharing (TTL = the code's remaining lifetime + clock skew) -------------------------------
def nonce_key(replay_id: str) -> str:
    """Remembers where a short-lived code was first presented, for as long as it is accepted.

    ``replay_id`` is the format's random identifier of the presented code (a native code's ``kid:nonce``, in hex):
    it names no one.
    """
    return f"pg:nonce:{replay_id}"


def static_replay_key(digest_hex: str) -> str:
    """Remembers where a static code (a DCC, by keyed hash of its UVCI, never the UVCI itself) was first presented
    inside the replay window.

    TTL = the replay window: a DCC is static for months, so unlike a native nonce it cannot be remembered for its
    lifetime without refusing its holder's every later visit. (The ``dcc`` in the name is kept so that the keys
    of a running deployment keep their meaning.)
    """
    return f"pg:nonce:dcc:{digest_hex}"


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
# Stream of exception events (scans and reports; format in gateway/intake.py). No TTL: the consumer group lives
# on the key; the dispatch sweep trims it to the scan log's retention by time (MINID), never past an event the
# group has not consumed (gateway/dispatch/worker.py ``trim_to_retention``).
DISPATCH_INTAKE: Final = "pg:dispatch:intake"
# Events that failed too many deliveries or can never succeed. They carry the sealed holder reference, so they
# keep the intake stream's retention: trimmed by time on every sweep, and a TTL of that retention after each add.
DISPATCH_DEADLETTER: Final = "pg:dispatch:deadletter"


def case_key(case_id: str) -> str:
    """Hash with one case; its history stream shares the hash tag."""
    return "pg:case:{" + case_id + "}"


def case_history_key(case_id: str) -> str:
    """Stream of the case's history entries, oldest first (same hash tag as the case)."""
    return case_key(case_id) + ":history"


def case_holder_key(case_id: str) -> str:
    """Hash beside the case with the sealed holder reference; opened only by the audited read."""
    return case_key(case_id) + ":holder"


def case_extension_key(case_id: str) -> str:
    """Hash with the handler's pending extension request (a request, not a transition)."""
    return case_key(case_id) + ":ext"


def case_notify_key(case_id: str) -> str:
    """Hash of the case's webhook deliveries: history index -> JSON status (event kind, department, attempts,
    status, error code; no URL, no key, no note). Same hash tag as the case (gateway/dispatch/webhooks.py)."""
    return case_key(case_id) + ":notify"


# The webhook outbox: a sorted set of deliveries (``case id|history index|event|department``) scored by the Unix ms
# of their next attempt; the lease lets one process deliver at a time (gateway/dispatch/webhooks.py).
NOTIFY_OUTBOX: Final = "pg:dispatch:notify"
NOTIFY_LEASE: Final = "pg:dispatch:notify-lease"


def case_notes_key(case_id: str, day: str) -> str:
    """Hash of the (masked) note texts the case's history got on ``day`` (YYYYMMDD, UTC): entry ref -> text.

    Same hash tag as the case (one script writes both); its own prefix, because it keeps the scan log's retention
    and not the case's: EXPIREAT the end of ``day`` + ``retention_days`` (``scan.scanlog.partition_expiry``),
    one key per day so every note expires exactly when the log of its day does, however many notes follow.
    """
    return "pg:casenote:{" + case_id + "}:" + day


DISPATCH_OPEN: Final = "pg:dispatch:open"  # set of non-terminal case ids: queues and the sweeper


def case_occurrences_key(case_id: str) -> str:
    """Sorted set of the events folded into the case (docs/dispatch.md, "Merging"): event id -> Unix ms. The
    member makes a redelivered event count once; at most ``FOLD_MAX_OCCURRENCES`` members (the worker)."""
    return case_key(case_id) + ":occ"


def case_alias_key(case_id: str) -> str:
    """The case a report's announced case id was folded or merged into (a string: the other case id), so the id
    the site manager was answered with always leads to the case that holds the report."""
    return case_key(case_id) + ":into"


# The fold key of (event class, holder subject hash or "report", place): the id of the open case events of that
# kind fold into, set with SET NX and the window as TTL, so of two consumers exactly one opens the case. Hashed:
# the name then carries no place id and no subject, and has one length.
FOLD_WINDOW_MAX_S: Final = 24 * 3600  # DispatchSettings.RANGES["fold_window_s"]


def fold_key(event_class: str, who: str, place_id: str) -> str:
    digest = hashlib.sha256(f"{event_class}\x00{who}\x00{place_id}".encode()).hexdigest()[:32]
    return f"pg:dispatch:fold:{digest}"


# A scan request's Idempotency-Key: the stored answer (decisions only, nothing personal) for 60 s, under a hash of
# the principal, the route and the key (``gateway/scan/idempotency.py``).
IDEMPOTENCY_TTL_S: Final = 60


def idempotency_key(digest_hex: str) -> str:
    return f"pg:idem:{digest_hex}"
def case_attachments_key(case_id: str) -> str:
    """Hash of the case's attachments: number -> JSON (type, size, SHA-256, when, by whom); never the bytes."""
    return case_key(case_id) + ":att"


def case_attachment_key(case_id: str, n: int) -> str:
    """String with attachment ``n`` of the case, sealed (``crypto.sealing.attachment_binding``); the case's TTL."""
    return case_key(case_id) + f":att:{n}"


def reporter_reports_key(principal_id: str) -> str:
    """Sorted set of the case ids a site manager's reports were answered with (score: Unix ms filed), so the
    manager can follow them (``GET /v1/reports``); the case's retention, trimmed by time on every add."""
    # Hashed like holder_reads_key: a principal id is a staff member's identifier, and key names are listed.
    return "pg:reports-by:{" + hashlib.sha256(principal_id.encode()).hexdigest()[:32] + "}"


def reporter_reports_info_key(principal_id: str) -> str:
    """Hash beside ``reporter_reports_key`` (same hash tag): case id -> "event id, class, place" of the report."""
    return reporter_reports_key(principal_id) + ":info"


def place_exceptions_key(place_id: str, day: str) -> str:
    """Hash of one place's exception scans on ``day`` (YYYYMMDD, UTC): deny reason -> count (HINCRBY on the scan
    path). Counts only, nobody's data; EXPIREAT the end of the day + retention, like that day's scan log."""
    return f"pg:place-exceptions:{place_id}:{day}"


# The sweeper's due index: every open case scored by ``policy.deadlines.next_due_at`` in Unix ms ("+inf": no
# clock), so a pass reads only the cases whose instant has come. The stamps hash (same hash tag, one script
# writes both) holds the history length each score was computed from: an older write never overwrites a newer.
DISPATCH_DUE: Final = "pg:dispatch:{due}"
DISPATCH_DUE_STAMPS: Final = "pg:dispatch:{due}:stamps"
# Set after the open set was checked against the due index (cases written by code without the index); when it
# expires, or the index is missing, the next sweep checks again. Hours, not the retention: a day bounds how long
# a case written by an older process during a rolling upgrade can go unswept.
DISPATCH_DUE_CHECKED: Final = "pg:dispatch:{due}:checked"
DUE_RECONCILE_S: Final = 24 * 3600

# The sweeper lease: SET NX PX with a random token, renewed and released only by its holder (compare script).
SWEEP_LEASE: Final = "pg:dispatch:sweep-lease"
SWEEP_LEASE_CLI_MS: Final = 60_000  # `placegate dispatch sweep`: renewed between batches, released at the end


def sweep_lease_ttl_ms(interval_s: float) -> int:
    """The in-process sweeper's lease: it outlives three intervals (renewed every pass, so one holder keeps
    sweeping) plus 10 s for a slow pass; a holder that dies is replaced within that time."""
    return int(interval_s * 3 * 1000) + 10_000


# Compaction (gateway/privacy/compaction.py): the days whose keys existed at the last check (a day missing now had
# its key expire or deleted: the AOF is rewritten), and the lease that lets one process compact at a time.
COMPACTION_DAYS: Final = "pg:privacy:keyed-days"  # "{dYYYYMMDD},..." (day tags only; nobody's data)
COMPACTION_DAYS_TTL_S: Final = 7 * 24 * 3600  # rewritten at every change; a week bounds a forgotten one
COMPACTION_LEASE: Final = "pg:privacy:compaction-lease"


def compaction_lease_ttl_ms(interval_s: float) -> int:
    """The compaction lease outlives three checks plus 10 minutes for a rewrite of a large dataset."""
    return int(interval_s * 3 * 1000) + 600_000


def dispatch_day_key(day: str) -> str:
    """Set of the case ids created on ``day`` (YYYYMMDD, UTC): the population of evaluation reports."""
    return f"pg:dispatch:day:{day}"


# A case is an administrative record of the city operation centre; the sealed holder reference beside it is
# personal data and keeps the scan log's retention instead.
CASE_RETENTION_S: Final = 3 * 366 * 24 * 3600


# --- audit (kept >= 3 years, PIPL Art. 56; never expires, trimmed only past 3 years) -------------------
# One hash tag: the stream, its head and its trim base change together in one MULTI (Redis Cluster).
AUDIT_STREAM: Final = "pg:{audit}:log"
AUDIT_HEAD: Final = "pg:{audit}:head"  # "seq hash last-id" of the newest entry: the chain's head
AUDIT_BASE: Final = "pg:{audit}:base"  # no longer written: a value here is a forged, unsigned trim base
AUDIT_CHECKPOINTS: Final = "pg:{audit}:checkpoints"  # list of signed trim checkpoints; the last is the chain's base
# Outside the {audit} tag on purpose: evidence of the trail's length that a cut of the {audit} keys leaves behind.
AUDIT_HWM: Final = "pg:audit-hwm"  # "seq mac": the highest seq ever written, signed with the trail key
AUDIT_CONFIG: Final = "pg:{audit}:config"  # fingerprint of the last audited configuration (rules, retention)


def approval_key(approval_id: str) -> str:
    """A privacy officer's approval of one trace (two-person rule); expires with the approval."""
    return f"pg:approval:{approval_id}"


def holder_reads_key(principal_id: str) -> str:
    """Sorted set of one principal's holder reads in the last hour (score: Unix ms): the per-principal limit
    shared by every gateway process. Expires an hour after the last read."""
    # Hashed: a principal id is a staff member's identifier, and key names are listed by the retention report.
    return "pg:holder-reads:" + hashlib.sha256(principal_id.encode()).hexdigest()[:32]


HOLDER_READS_WINDOW_S: Final = 3600


def console_session_key(session_hash_hex: str) -> str:
    """One web-console session (gateway/console/sessions.py): the principal id, the hash of its token (the
    registry's key, never the token), the form token and the language. Named by the SHA-256 of the session id, so
    the store holds nothing a cookie could be rebuilt from; expires after ``console_session_s`` of sign-in."""
    return f"pg:console:session:{session_hash_hex}"


# The longest console session Settings.RANGES allows for console_session_s (the key's TTL).
CONSOLE_SESSION_MAX_S: Final = 7 * 24 * 3600


# The background retention trim's lease (gateway/privacy/feature.py): one process trims the intake stream and the
# dead letters by time each period; the same holder rules as the sweep lease (TTL ``sweep_lease_ttl_ms``).
RETENTION_LEASE: Final = "pg:privacy:retention-lease"


# Prefixes whose keys legitimately carry no TTL (configuration; the intake queue, trimmed by time; the audit
# trail, kept 3 years); the privacy tests check every other key for an expiry.
REGISTRY_PREFIXES: Final = (TRUST, PLACES, "pg:place:", "pg:principal", DISPATCH_INTAKE, "pg:{audit}:", AUDIT_HWM,
                             SECRET_FINGERPRINT)

# The longest TTL a key of a class may have: seconds, or a bound the retention report takes from the settings
# (gateway/privacy/retention.py ``_limit_s``): "retention" the scan log's retention, "day_end" a day partition's
# scheduled expiry (end of its day + retention), "status_ttl", "code_lifetime" (a native code's longest life
# plus clock leeway), "dcc_replay_window", "approval" (policy.purpose.APPROVAL_MAX_S), "none" (no TTL: expires=False).
Limit = Literal["none", "retention", "day_end", "status_ttl", "code_lifetime", "dcc_replay_window", "approval"]


@dataclass(frozen=True, slots=True)
class DataClass:
    """One class of stored data in the retention report: the full-match pattern of its key names, whether each
    key must carry a TTL, and the longest TTL it may carry."""

    name: str
    pattern: str  # a regular expression without named groups; its variable parts admit no personal data
    expires: bool
    limit: Limit | int = "retention"


# Variable parts of key names: a day, a hex digest, an id the gateway made. None can hold a name, a phone number, an
# e-mail address or a document number, so a key name never carries personal data (tests/gateway/test_keyspace.py).
_DAY = r"\{d[0-9]{8}\}"
_CASE = r"pg:case:\{c[0-9a-f]{20}\}"
_LEASE_MAX_S: Final = 3 * 24 * 3600 + 10  # sweep_lease_ttl_ms at the longest interval Settings.RANGES allows
_COMPACTION_LEASE_MAX_S: Final = 3 * 24 * 3600 + 600  # compaction_lease_ttl_ms at the longest check interval

# Every key placegate writes, one class per line; a key matching no pattern is reported ``unclassified``, a key
# matching two is a bug (tests/gateway/test_keyspace.py walks every key builder and constant of this module).
DATA_CLASSES: Final = (
    DataClass("trust_keys", r"pg:trust(?::version)?", False, "none"),
    DataClass("dsc_trust", r"pg:trust:dsc(?::version|:imported_at)?", False, "none"),
    DataClass("dcc_valuesets", r"pg:trust:valuesets(?::version|:imported_at)?", False, "none"),
    DataClass("dcc_rules", r"pg:trust:dccrules(?::version|:imported_at)?", False, "none"),
    DataClass("dsc_sync_lock", "pg:dscsync:lock", True, 7 * 24 * 3600),  # dsc_sync_interval_s at its longest
    DataClass("places", r"pg:places|pg:place:[a-z0-9][a-z0-9._-]{0,63}", False, "none"),
    DataClass("principals", r"pg:principal-ids|pg:principal:[0-9a-f]{64}", False, "none"),
    DataClass("secret_fingerprint", "pg:secret:fingerprint", False, "none"),  # configuration, like the registry
    DataClass("status_cache", r"pg:st:\{[0-9a-f]+\}[0-9a-f]+", True, "status_ttl"),
    DataClass("id_card_index", r"pg:idc:[0-9a-f]{32}", True, "status_ttl"),
    DataClass("replay_memory", r"pg:nonce:[0-9a-f]{16}:[0-9a-f]{24}", True, "code_lifetime"),
    DataClass("static_replay_memory", r"pg:nonce:dcc:[0-9a-f]{32}", True, "dcc_replay_window"),
    DataClass("scan_log", "pg:log:" + _DAY, True, "day_end"),
    DataClass("day_keys", "pg:daykey:" + _DAY, True, "day_end"),
    DataClass("approvals", r"pg:approval:apv_[0-9a-f]{32}", True, "approval"),
    DataClass("cases", _CASE, True, CASE_RETENTION_S),
    DataClass("case_history", _CASE + ":history", True, CASE_RETENTION_S),
    DataClass("case_holder", _CASE + ":holder", True, "retention"),
    DataClass("case_extension", _CASE + ":ext", True, CASE_RETENTION_S),
    DataClass("case_notifications", _CASE + ":notify", True, CASE_RETENTION_S),
    DataClass("notify_outbox", "pg:dispatch:notify", True, CASE_RETENTION_S),  # case ids, kinds, departments
    DataClass("notify_lease", "pg:dispatch:notify-lease", True, _LEASE_MAX_S),
    # Note texts keep the scan log's retention, not the case's: end of the note's day + retention_days.
    DataClass("case_notes", r"pg:casenote:\{c[0-9a-f]{20}\}:[0-9]{8}", True, "day_end"),
    DataClass("case_occurrences", _CASE + ":occ", True, CASE_RETENTION_S),
    DataClass("case_alias", _CASE + ":into", True, CASE_RETENTION_S),
    DataClass("fold_keys", r"pg:dispatch:fold:[0-9a-f]{32}", True, FOLD_WINDOW_MAX_S),
    DataClass("scan_idempotency", r"pg:idem:[0-9a-f]{32}", True, IDEMPOTENCY_TTL_S),
    # Evidence files (a photo of a person is personal data): sealed, and never kept longer than their case.
    DataClass("case_attachments", _CASE + r":att(?::[0-9]{1,3})?", True, CASE_RETENTION_S),
    DataClass("reporter_reports", r"pg:reports-by:\{[0-9a-f]{32}\}(?::info)?", True, CASE_RETENTION_S),
    DataClass("place_exceptions", r"pg:place-exceptions:[a-z0-9][a-z0-9._-]{0,63}:[0-9]{8}", True, "day_end"),
    DataClass("dispatch_intake", "pg:dispatch:intake", False, "none"),  # trimmed by time, entries checked
    DataClass("dead_letters", "pg:dispatch:deadletter", True, "retention"),  # and its entries checked
    DataClass("dispatch_open", "pg:dispatch:open", True, CASE_RETENTION_S),
    DataClass("dispatch_days", "pg:dispatch:day:[0-9]{8}", True, CASE_RETENTION_S),
    DataClass("due_index", r"pg:dispatch:\{due\}(?::stamps)?", True, CASE_RETENTION_S),
    DataClass("due_checked", r"pg:dispatch:\{due\}:checked", True, DUE_RECONCILE_S),
    DataClass("sweep_lease", "pg:dispatch:sweep-lease", True, _LEASE_MAX_S),
    DataClass("retention_lease", "pg:privacy:retention-lease", True, _LEASE_MAX_S),
    DataClass("audit", r"pg:\{audit\}:(?:log|head|base|config|checkpoints)", False, "none"),
    DataClass("audit_high_water", r"pg:audit-hwm", False, "none"),  # outside {audit} on purpose (audit.py)
    DataClass("holder_read_limits", r"pg:holder-reads:[0-9a-f]{32}", True, HOLDER_READS_WINDOW_S),
    DataClass("console_sessions", r"pg:console:session:[0-9a-f]{64}", True, CONSOLE_SESSION_MAX_S),
    DataClass("compaction_days", "pg:privacy:keyed-days", True, COMPACTION_DAYS_TTL_S),
    DataClass("compaction_lease", "pg:privacy:compaction-lease", True, _COMPACTION_LEASE_MAX_S),
)
_MATCHER: Final = re.compile("|".join(f"(?P<c{i}>{c.pattern})" for i, c in enumerate(DATA_CLASSES)))


def data_class_of(key: str) -> DataClass | None:
    """The retention class of a key, or ``None`` for a key no class names (the report calls it unclassified)."""
    found = _MATCHER.fullmatch(key)
    return None if found is None or found.lastgroup is None else DATA_CLASSES[int(found.lastgroup[1:])]
