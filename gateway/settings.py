"""Settings, read once from the environment (prefix ``PLACEGATE_``) in the CLI; code below receives them.

Strict by design: a value that does not parse or is out of range raises ``SettingsError`` naming its variable
(the CLI prints it and exits 2), and ``unknown_variables`` lists ``PLACEGATE_*`` names that no setting reads, so
a typo (``PLACEGATE_PROT``) is reported instead of silently leaving the default in force.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar, Final, Literal

from policy.routing import EventClass

__all__ = [
    "DispatchSettings",
    "Secret",
    "Settings",
    "SettingsError",
    "known_variables",
    "load_or_create_secret",
    "read_secret_file",
    "unknown_variable_warnings",
    "unknown_variables",
]

PREFIX = "PLACEGATE_"
DISPATCH_PREFIX = "PLACEGATE_DISPATCH_"
# PLACEGATE_* variables that are not settings of the gateway but are read by the tooling around it; they must
# not be reported as unknown (tests/gateway/test_settings.py checks that this list covers every reader).
READ_ELSEWHERE: Mapping[str, str] = {
    "PLACEGATE_TEST_REDIS_URL": "tests/conftest.py: the Redis the test session uses instead of its own",
    "PLACEGATE_TEST_STORE": "tests/conftest.py: `cluster` runs the suite on a private cluster (make test-cluster)",
    "PLACEGATE_LOCUST_STATE": "bench/locustfile.py: the load generator's state file",
    "PLACEGATE_LOCUST_HOLDERS": "bench/locustfile.py: holders the load generator feeds",
    "PLACEGATE_CHROMIUM": "tests/console/: the Chromium binary the browser tests drive (default /usr/bin/chromium)",
    "PLACEGATE_CONSOLE_ARTIFACTS": "tests/console/: where the browser tests put their screenshots",
}
# The secret keys keyed BLAKE2b (crypto/kdf.py), whose key is at most 64 bytes; below 32 bytes it is too weak.
_SECRET_BYTES = (32, 64)


class SettingsError(ValueError):
    """A refused setting; ``variable`` names it (``PLACEGATE_PORT``) and the message starts with that name."""

    code: ClassVar[str] = "invalid_setting"

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class Secret:
    """A secret value whose ``repr`` never shows it (logs, tracebacks, debuggers)."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def reveal(self) -> bytes:
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """Tunables of the dispatch core (``PLACEGATE_DISPATCH_*``); units in the names."""

    routing_file: Path | None = None  # None: policy/default_routing.toml
    deadlines_file: Path | None = None  # None: policy/default_deadlines.toml
    worker: bool = True  # run the intake consumer inside the gateway process
    sweep_interval_s: float = 30.0  # 0 disables the in-process sweeper
    claim_idle_ms: int = 60_000  # XAUTOCLAIM pending events idle this long (a crashed consumer's)
    max_deliveries: int = 5  # dead-letter an event after this many failed deliveries
    waitaof_timeout_ms: int = 2000  # 0 would be WAITAOF's "block forever": refused by RANGES
    auto_intake_reports: bool = False  # site managers' reports wait for an intake operator's accept
    page_max: int = 100  # bound of one queue page
    metrics_max_days: int = 92  # bound of one evaluation range
    metrics_max_cases: int = 50_000
    calendar_file: Path | None = None  # None: 24x7 (policy/calendar.py); used by [working_time] stages
    webhooks_file: Path | None = None  # None: no department is notified (gateway/dispatch/webhooks.py)
    webhook_interval_s: float = 1.0  # outbox poll of the delivery loop; 0 turns the loop off in this process
    webhook_timeout_s: float = 5.0  # bound of one POST, connect to last byte
    webhook_max_attempts: int = 8  # then the delivery is marked failed
    webhook_backoff_s: float = 2.0  # wait before the 2nd attempt; doubled after each failure
    webhook_backoff_max_s: float = 3600.0  # longest wait between two attempts
    # Exceptions of one class, one holder (or site managers' reports of one kind) at one place within this window
    # fold into one open case (docs/dispatch.md, "Merging"); 0 opens a case per event.
    fold_window_s: int = 600

    # Inclusive bounds of every number; a test checks that no numeric field is missing here.
    RANGES: ClassVar[Mapping[str, tuple[float, float]]] = {
        "webhook_interval_s": (0, 3600),
        "webhook_timeout_s": (0.1, 60),
        "webhook_max_attempts": (1, 100),
        "webhook_backoff_s": (0.01, 3600),
        "webhook_backoff_max_s": (0.01, 24 * 3600),
        "sweep_interval_s": (0, 24 * 3600),
        "claim_idle_ms": (1000, 24 * 3600 * 1000),
        "max_deliveries": (1, 1000),
        "waitaof_timeout_ms": (1, 60_000),
        "page_max": (1, 10_000),
        "metrics_max_days": (1, 3 * 366),
        "metrics_max_cases": (1, 10_000_000),
        "fold_window_s": (0, 24 * 3600),
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DispatchSettings:
        """Build from ``PLACEGATE_DISPATCH_*`` variables; a bad value raises SettingsError naming it."""
        settings = cls(**_env_values(cls, DISPATCH_PREFIX, environ))  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """:raises SettingsError: a value out of its range, named by its variable."""
        _check_ranges(self, DISPATCH_PREFIX)


# A setting the gateway may size itself: PLACEGATE_VERIFY_THREADS=auto.
Auto = Literal["auto"]


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of the gateway; units are in the names."""

    host: str = "127.0.0.1"
    port: int = 8080
    # None: start the embedded Redis-compatible server on ``data_dir`` (AOF on).
    redis_url: str | None = None
    data_dir: Path = Path(".placegate")
    # Master secret; the status-cache field key and the case sealing key are derived from it. In embedded mode
    # it is generated once into ``data_dir/secret`` when not set; an external store requires it (``with_secret``).
    secret: Secret | None = field(default=None, repr=False)
    # A file holding the secret in hex (a mounted Kubernetes Secret, a systemd credential): instead of
    # PLACEGATE_SECRET, which an environment listing would show.
    secret_file: Path | None = None
    retention_days: int = 21
    status_buckets: int = 65536
    # A status record is personal data: kept only while it can still be fresh enough to decide on.
    status_ttl_s: int = 2 * 24 * 3600
    # Past this the status cache counts as unavailable and the scan is answered in degraded mode.
    redis_timeout_ms: int = 250
    principal_cache_s: float = 5.0
    max_body_bytes: int = 16 * 1024
    rules_file: Path | None = None
    workers: int = 1
    # EU DCC document-signer list (`placegate trust import`): past the first age HC1 answers say degraded,
    # past the second HC1 codes are refused (a withdrawn DSC must not verify forever on a forgotten list).
    dsc_trust_degraded_after_s: int = 2 * 24 * 3600
    dsc_trust_fail_after_s: int = 7 * 24 * 3600
    # A DCC is static for months: the same one at a second place inside this window is a shared copy; the
    # window matches the native code's 60 s refresh interval.
    dcc_replay_window_s: int = 60
    # How often every worker re-reads the trust list (native keys and EU DCC signer list): a revoked key
    # stops verifying within this delay.
    trust_refresh_s: float = 2.0
    # The EU DCC signer list pulled on a schedule from a national backend (docs/dcc.md "Trust-list sync"): its
    # URL, the trust-anchor certificate (PEM) its signature must verify against, and how often one process pulls.
    dsc_sync_url: str | None = None
    dsc_sync_anchor_file: Path | None = None
    dsc_sync_interval_s: float = 3600.0
    # Codes in one POST /v1/scan/batch (a turnstile bank); the batch body limit scales with it.
    max_batch_codes: int = 64
    # Every Redis connection's own bounds (redis-py's defaults wait for ever); above the longest command we send
    # on purpose (WAITAOF, 2 s; the intake consumer's blocking read, 0.5 s). Scans use redis_timeout_ms instead.
    redis_connect_timeout_s: float = 1.0
    redis_socket_timeout_s: float = 5.0
    # While the store is unreachable: how often a worker asks whether it is back, how long principals, places and
    # trust lists are served from their last good copies (a token revoked during the outage keeps working until
    # the store is back or this passes), and the bounds of what the worker remembers meanwhile.
    store_probe_s: float = 0.5
    outage_stale_max_s: float = 24 * 3600
    outage_max_codes: int = 1_000_000
    outage_max_pending: int = 100_000
    # A request body must have arrived whole this long after its handler starts reading it (408 past it): a
    # client that stalls after the headers would otherwise hold its connection and handler forever.
    body_read_timeout_s: float = 10.0
    # On SIGTERM/SIGINT a served process stops accepting, lets in-flight requests finish and exits within this.
    drain_timeout_s: float = 10.0
    # GET /v1/cases/{id}/holder (issue 14): the event classes whose follow-up needs the holder (comma-separated;
    # a ``replayed`` green code at the same gate does not), and the reads one principal may make in any hour
    # (the rest are 429 ``rate_limited``, across every gateway process).
    holder_read_classes: frozenset[str] = frozenset({"status_red", "status_yellow", "code_shared", "forged_code",
                                                     "fever"})
    holder_reads_per_hour: int = 30
    # A web-console session (gateway/console/) lasts this long from sign-in, whatever is done with it: a browser
    # left open at a desk signs itself out (the session's key expires with it).
    console_session_s: int = 8 * 3600
    # One JSON line per answer on stderr (gateway/logjson.py); application log records as JSON or text.
    access_log: bool = True
    log_format: str = "json"
    # /metrics shows decisions as they happen (a red holder's denial at a small venue is visible as a counter
    # step): with a token set it needs `Authorization: Bearer <token>`; without one it answers loopback peers only.
    metrics_token: Secret | None = field(default=None, repr=False)
    # The trust lists /readyz requires: a worker without one of them would refuse every code of that format.
    ready_trust_lists: str = "native,dsc"
    # How often a worker samples the store-side gauges (dispatch backlog, intake, dead letters).
    store_gauges_s: float = 15.0
    # How often one process (under a lease) trims the intake stream and the dead letters to the retention by time,
    # whether or not a dispatch sweeper runs; an entry outlives the retention by at most about this much.
    retention_trim_s: float = 60.0
    # How often one process (under a lease) checks whether a day key expired or was deleted, and if so rewrites
    # the AOF so that the key's value leaves the disk too (gateway/privacy/compaction.py).
    compaction_check_s: float = 300.0
    # The same code at the same device within this many seconds of its first presentation is the scanner's retry
    # after a lost answer, decided like a first presentation and opening no replay case (docs/dispatch.md,
    # "Idempotency"); 0: every second presentation is a replay.
    scan_retry_window_s: int = 5
    # Threads that verify a multi-code scan's signatures beside the event loop (cryptography releases the GIL
    # while OpenSSL verifies): ``auto`` = the cores this process may run on / ``workers`` - 1, at most 4
    # (gateway/scan/offload.py); 0: every verification stays on the loop thread.
    verify_threads: int | Auto = "auto"
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)

    # Inclusive bounds of every number; a test checks that no numeric field is missing here.
    RANGES: ClassVar[Mapping[str, tuple[float, float]]] = {
        "port": (1, 65535),
        "retention_days": (1, 366),
        "status_buckets": (16, 1 << 24),
        "status_ttl_s": (1, 366 * 24 * 3600),
        "redis_timeout_ms": (1, 60_000),
        # 0 turns the cache off; it is the delay before a revoked token stops working, hence the hour.
        "principal_cache_s": (0, 3600),
        "max_body_bytes": (1024, 16 * 1024 * 1024),
        "workers": (1, 1024),
        "dsc_trust_degraded_after_s": (1, 366 * 24 * 3600),
        "dsc_trust_fail_after_s": (1, 366 * 24 * 3600),
        "dcc_replay_window_s": (1, 24 * 3600),
        "trust_refresh_s": (0.1, 3600),
        "dsc_sync_interval_s": (1, 7 * 24 * 3600),
        "max_batch_codes": (1, 1024),
        "redis_connect_timeout_s": (0.01, 60),
        "redis_socket_timeout_s": (3, 600),
        "store_probe_s": (0.05, 60),
        "outage_stale_max_s": (0, 30 * 24 * 3600),
        "outage_max_codes": (1000, 100_000_000),
        "outage_max_pending": (100, 10_000_000),
        "body_read_timeout_s": (0.1, 600),
        "drain_timeout_s": (1, 600),
        "holder_reads_per_hour": (1, 10_000),
        "console_session_s": (60, 7 * 24 * 3600),
        "store_gauges_s": (1, 3600),
        "retention_trim_s": (0.1, 3600),
        "compaction_check_s": (1, 24 * 3600),
        "scan_retry_window_s": (0, 60),
        "verify_threads": (0, 16),  # or "auto", which is not range-checked
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Build from ``PLACEGATE_*`` variables; unknown names are ignored here (see ``unknown_variables``).

        :raises SettingsError: a value that does not parse or is out of range, named by its variable.
        """
        values = _env_values(cls, PREFIX, environ)
        values["dispatch"] = DispatchSettings.from_env(environ)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """:raises SettingsError: a value out of its range, named by its variable."""
        _check_ranges(self, PREFIX)
        if self.status_buckets & (self.status_buckets - 1):
            raise SettingsError("PLACEGATE_STATUS_BUCKETS", f"must be a power of two, got {self.status_buckets}")
        if self.dsc_trust_degraded_after_s > self.dsc_trust_fail_after_s:
            raise SettingsError("PLACEGATE_DSC_TRUST_DEGRADED_AFTER_S",
                                f"must not exceed PLACEGATE_DSC_TRUST_FAIL_AFTER_S ({self.dsc_trust_fail_after_s}), "
                                f"got {self.dsc_trust_degraded_after_s}")
        if self.redis_url is not None:
            _check_redis_url(self.redis_url)
        if self.dsc_sync_url is not None and (not self.dsc_sync_url.startswith(("https://", "http://"))
                                              or self.dsc_sync_anchor_file is None):
            # An unsigned or unanchored pull would let whoever answers the URL pick the signers.
            raise SettingsError("PLACEGATE_DSC_SYNC_URL", "expected an http(s):// URL, with "
                                "PLACEGATE_DSC_SYNC_ANCHOR_FILE set")
        if unknown := sorted(self.holder_read_classes - {c.value for c in EventClass}):
            raise SettingsError("PLACEGATE_HOLDER_READ_CLASSES", f"not event classes: {', '.join(unknown)}")
        if self.secret is not None and not _SECRET_BYTES[0] <= len(self.secret.reveal()) <= _SECRET_BYTES[1]:
            raise SettingsError("PLACEGATE_SECRET", _SECRET_RULE)
        if self.log_format not in _LOG_FORMATS:
            raise SettingsError("PLACEGATE_LOG_FORMAT", f"expected one of {', '.join(_LOG_FORMATS)}, got "
                                f"{self.log_format!r}")
        if self.metrics_token is not None and len(self.metrics_token.reveal()) < 16:
            raise SettingsError("PLACEGATE_METRICS_TOKEN", "expected at least 32 hex digits (value not shown)")
        lists = self.ready_trust_list_names()
        if not lists or not lists <= _TRUST_LISTS:
            raise SettingsError("PLACEGATE_READY_TRUST_LISTS", f"expected a comma-separated subset of "
                                f"{', '.join(sorted(_TRUST_LISTS))}, got {self.ready_trust_lists!r}")
        self.dispatch.validate()

    def ready_trust_list_names(self) -> frozenset[str]:
        """``ready_trust_lists`` as a set of names (``native``, ``dsc``, ``valuesets``)."""
        return frozenset(p.strip() for p in self.ready_trust_lists.split(",") if p.strip())

    def with_secret(self) -> Settings:
        """These settings with their secret: PLACEGATE_SECRET, the secret file, or (embedded mode only) generated.

        Against an external store each process generating its own secret would split the deployment silently (a
        status loaded under one secret is unreadable under another: every holder ``review status_unknown``), so
        there the secret must be given.

        :raises SettingsError: no secret for an external store, both sources given, or an unreadable file.
        """
        if self.secret is not None and self.secret_file is not None:
            raise SettingsError("PLACEGATE_SECRET_FILE", "set either PLACEGATE_SECRET or a secret file, not both")
        if self.secret is not None:
            return self
        if self.secret_file is not None:  # resolved once: calling again must not see "both" set
            return replace(self, secret=read_secret_file(self.secret_file), secret_file=None)
        if self.redis_url is not None:
            raise SettingsError("PLACEGATE_SECRET", EXTERNAL_SECRET_RULE)
        return replace(self, secret=load_or_create_secret(self.data_dir / "secret"))


_LOG_FORMATS = ("json", "text")  # gateway/logjson.py LOG_FORMATS; settings import nothing of the gateway
_TRUST_LISTS = frozenset({"native", "dsc", "valuesets"})
EXTERNAL_SECRET_RULE = ("required with an external store (--redis-url or PLACEGATE_REDIS_URL): set PLACEGATE_SECRET "
                        "or pass --secret-file PATH (PLACEGATE_SECRET_FILE), the same for every process of the "
                        "deployment; only the embedded store generates its own")
_SECRET_RULE = f"expected {2 * _SECRET_BYTES[0]} to {2 * _SECRET_BYTES[1]} hex digits (value not shown)"
_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
_HEX = re.compile(r"([0-9a-fA-F]{2})+")
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


class _Refused(ValueError):
    """A text a converter cannot turn into its type; ``_env_values`` adds the variable's name."""


def _to_int(raw: str) -> int:
    # int() alone would also take "1_000", " 12 ", "+5" and non-ASCII digits: an operator's typo, not a number.
    if not _INT.fullmatch(raw):
        raise _Refused(f"expected an integer, got {raw!r}")
    return int(raw)


def _to_float(raw: str) -> float:
    value = float(raw) if _FLOAT.fullmatch(raw) else math.nan  # float() alone takes "nan", "inf", " 1 "
    if not math.isfinite(value):
        raise _Refused(f"expected a finite number, got {raw!r}")
    return value


def _to_bool(raw: str) -> bool:
    # Anything else used to mean False: PLACEGATE_DISPATCH_WORKER=ture must not silently turn the worker off.
    value = _BOOLEANS.get(raw.lower())
    if value is None:
        raise _Refused(f"expected one of 1/0, true/false, yes/no, on/off, got {raw!r}")
    return value


def _to_int_or_auto(raw: str) -> int | str:
    if raw == "auto":
        return raw
    if not _INT.fullmatch(raw):
        raise _Refused(f"expected auto or an integer, got {raw!r}")
    return int(raw)


def _to_names(raw: str) -> frozenset[str]:
    names = [name.strip() for name in raw.split(",")]
    if not all(names):
        raise _Refused(f"expected comma-separated names, got {raw!r}")
    return frozenset(names)


def _to_path(raw: str) -> Path:
    if not raw.strip():
        raise _Refused(f"expected a path, got {raw!r}")
    return Path(raw)


def _to_secret(raw: str) -> Secret:
    if not _HEX.fullmatch(raw):  # bytes.fromhex alone would take spaces between the digits
        raise _Refused(_SECRET_RULE)  # never echo a secret, not even a malformed one
    return Secret(bytes.fromhex(raw))


# How a variable's text becomes a field's value, by the field's declared type (annotations are strings here).
_CONVERT: dict[str, Callable[[str], object]] = {
    "int": _to_int,
    "float": _to_float,
    "str": str,
    "str | None": str,
    "Path": _to_path,
    "Path | None": _to_path,
    "bool": _to_bool,
    "Secret | None": _to_secret,
    "frozenset[str]": _to_names,
    "int | Auto": _to_int_or_auto,
}


def _env_values(cls: type, prefix: str, environ: Mapping[str, str]) -> dict[str, object]:
    """The fields of dataclass ``cls`` set in ``environ`` as ``PREFIX + NAME``; nested settings are skipped.

    An empty value counts as unset (``VAR=`` in a unit file or shell clears an inherited one).
    """
    values: dict[str, object] = {}
    for f in fields(cls):
        if str(f.type) not in _CONVERT:
            continue
        variable = prefix + f.name.upper()
        raw = environ.get(variable)
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = _CONVERT[str(f.type)](raw)
        except _Refused as exc:
            raise SettingsError(variable, str(exc)) from None
    return values


def _check_ranges(settings: Settings | DispatchSettings, prefix: str) -> None:
    for name, (low, high) in settings.RANGES.items():
        value = getattr(settings, name)
        if value == "auto":  # an ``int | Auto`` field left to size itself
            continue
        if not low <= value <= high:
            raise SettingsError(prefix + name.upper(), f"must be in [{_number(low)}, {_number(high)}], got {value}")


def _number(bound: float) -> str:
    return str(int(bound)) if bound == int(bound) else str(bound)


def known_variables() -> frozenset[str]:
    """Every ``PLACEGATE_*`` name something reads: the settings, the dispatch settings and ``READ_ELSEWHERE``."""
    names = {PREFIX + f.name.upper() for f in fields(Settings) if str(f.type) in _CONVERT}
    names |= {DISPATCH_PREFIX + f.name.upper() for f in fields(DispatchSettings)}
    return frozenset(names | set(READ_ELSEWHERE))


def unknown_variables(environ: Mapping[str, str] = os.environ) -> list[str]:
    """``PLACEGATE_*`` names in ``environ`` that nothing reads, sorted (any case: ``placegate_port`` too)."""
    known = known_variables()
    return sorted(name for name in environ if name.upper().startswith(PREFIX) and name not in known)


def unknown_variable_warnings(environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line per unknown variable, with the closest known name when it looks like a typo."""
    # Compared without the shared prefix, which would make every name look close to every other.
    known = {name[len(PREFIX):]: name for name in known_variables()}
    lines = []
    for name in unknown_variables(environ):
        close = difflib.get_close_matches(name[len(PREFIX):].upper(), sorted(known), n=1, cutoff=0.7)
        hint = f"; did you mean {known[close[0]]}?" if close else ""
        lines.append(f"unknown setting {name} (ignored{hint})")
    return lines


def read_secret_file(path: Path) -> Secret:
    """The hex secret in ``path`` (surrounding white space ignored).

    :raises SettingsError: the file cannot be read or does not hold a valid secret (never echoed).
    """
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a text file"
        raise SettingsError("PLACEGATE_SECRET_FILE", f"cannot read {path}: {reason}") from None
    if not _HEX.fullmatch(text) or not _SECRET_BYTES[0] <= len(text) // 2 <= _SECRET_BYTES[1]:
        raise SettingsError("PLACEGATE_SECRET_FILE", f"{path}: {_SECRET_RULE}")
    return Secret(bytes.fromhex(text))


def load_or_create_secret(path: Path) -> Secret:
    """Read a hex secret file, creating it (mode 0600) on first use.

    :raises SettingsError: the file does not hold a valid secret (named as PLACEGATE_SECRET, which it stands for).
    """
    if path.exists():
        text = path.read_text().strip()
        if not _HEX.fullmatch(text) or not _SECRET_BYTES[0] <= len(text) // 2 <= _SECRET_BYTES[1]:
            raise SettingsError("PLACEGATE_SECRET", f"not set, and {path}: {_SECRET_RULE}")
        return Secret(bytes.fromhex(text))
    value = secrets.token_bytes(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value.hex())
    except OSError as exc:  # an unwritable data directory is the operator's to fix: name it, no traceback
        raise SettingsError("PLACEGATE_DATA_DIR", f"cannot write {path}: {exc.strerror or exc}") from None
    return Secret(value)


_SINGLE_SCHEMES: Final = ("redis", "rediss", "unix")
_MULTI_SCHEMES: Final = ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")


def _check_redis_url(url: str) -> None:
    """:raises SettingsError: an unknown scheme, or a cluster/Sentinel URL without ``host:port`` list (and service).

    Only the scheme is echoed: the rest of a URL may carry the server's password.
    """
    scheme, sep, rest = url.partition("://")
    if scheme not in _SINGLE_SCHEMES + _MULTI_SCHEMES:
        got = f"scheme {scheme!r}" if sep else "no scheme"
        raise SettingsError("PLACEGATE_REDIS_URL", "expected a redis://, rediss://, unix://, redis+cluster://, "
                            f"rediss+cluster://, redis+sentinel:// or rediss+sentinel:// URL, got {got}")
    if scheme not in _MULTI_SCHEMES:
        return
    netloc, _, path = rest.partition("/")
    hosts = netloc.rpartition("@")[2].split(",")
    for host in hosts:
        name, colon, port = host.strip().rpartition(":")
        if not colon or not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError("PLACEGATE_REDIS_URL", f"a {scheme}:// URL lists host:port[,host:port...]")
    if "sentinel" in scheme and not path.partition("?")[0]:
        raise SettingsError("PLACEGATE_REDIS_URL", f"a {scheme}:// URL names its service: {scheme}://h1:p1,h2:p2/service")
