"""Settings, read once from the environment (prefix ``PLACEGATE_``) in ``__main__``; code below receives them."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

__all__ = ["DispatchSettings", "Secret", "Settings", "load_or_create_secret"]


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
    waitaof_timeout_ms: int = 2000
    auto_intake_reports: bool = False  # site managers' reports wait for an intake operator's accept
    page_max: int = 100  # bound of one queue page
    metrics_max_days: int = 92  # bound of one evaluation range
    metrics_max_cases: int = 50_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DispatchSettings:
        """Build from ``PLACEGATE_DISPATCH_*`` variables; bad values raise ValueError."""
        return cls(**_env_values(cls, "PLACEGATE_DISPATCH_", environ))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Settings:
    """Every tunable of the gateway; units are in the names."""

    host: str = "127.0.0.1"
    port: int = 8080
    # None: start the embedded Redis-compatible server on ``data_dir`` (AOF on).
    redis_url: str | None = None
    data_dir: Path = Path(".placegate")
    # Master secret; the status-cache field key and the case sealing key are derived from it. In embedded mode
    # it is generated once into ``data_dir/secret`` when not set.
    secret: Secret | None = field(default=None, repr=False)
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
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Build from ``PLACEGATE_*`` variables; unknown variables are ignored, bad values raise ValueError."""
        values = _env_values(cls, "PLACEGATE_", environ)
        values["dispatch"] = DispatchSettings.from_env(environ)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 1 <= self.retention_days <= 366:
            raise ValueError("retention_days must be in [1, 366]")
        if self.status_buckets < 16 or self.status_buckets & (self.status_buckets - 1):
            raise ValueError("status_buckets must be a power of two >= 16")
        if not 0 < self.dsc_trust_degraded_after_s <= self.dsc_trust_fail_after_s:
            raise ValueError("need 0 < dsc_trust_degraded_after_s <= dsc_trust_fail_after_s")
        if not 1 <= self.dcc_replay_window_s <= 24 * 3600:
            raise ValueError("dcc_replay_window_s must be in [1, 86400]")
        if self.secret is not None and len(self.secret.reveal()) < 32:
            raise ValueError("secret must be at least 32 bytes (64 hex digits)")

    def with_secret(self) -> Settings:
        """These settings with a secret, generating one into ``data_dir`` for the embedded mode."""
        if self.secret is not None:
            return self
        return replace(self, secret=load_or_create_secret(self.data_dir / "secret"))


# How a variable's text becomes a field's value, by the field's declared type (annotations are strings here).
_CONVERT: dict[str, Callable[[str], object]] = {
    "int": int,
    "float": float,
    "str": str,
    "str | None": str,
    "Path": Path,
    "Path | None": Path,
    "bool": lambda raw: raw.lower() in ("1", "true", "yes", "on"),
    "Secret | None": lambda raw: Secret(bytes.fromhex(raw)),
}


def _env_values(cls: type, prefix: str, environ: Mapping[str, str]) -> dict[str, object]:
    """The fields of dataclass ``cls`` set in ``environ`` as ``PREFIX + NAME``; nested settings are skipped."""
    values: dict[str, object] = {}
    for f in fields(cls):
        raw = environ.get(prefix + f.name.upper())
        convert = _CONVERT.get(str(f.type))
        if raw is None or raw == "" or convert is None:
            continue
        values[f.name] = convert(raw)
    return values


def load_or_create_secret(path: Path) -> Secret:
    """Read a hex secret file, creating it (mode 0600) on first use."""
    if path.exists():
        return Secret(bytes.fromhex(path.read_text().strip()))
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value.hex())
    return Secret(value)
