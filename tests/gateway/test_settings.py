"""Settings are read once from PLACEGATE_* variables (dispatch ones included), typed by field, secrets hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import DispatchSettings, Settings


def test_variables_become_typed_settings_including_dispatch() -> None:
    settings = Settings.from_env({
        "PLACEGATE_PORT": "9000",
        "PLACEGATE_REDIS_URL": "redis://h:1/0",
        "PLACEGATE_DATA_DIR": "/tmp/pg",
        "PLACEGATE_PRINCIPAL_CACHE_S": "0.5",
        "PLACEGATE_SECRET": "ab" * 32,
        "PLACEGATE_DISPATCH_WORKER": "0",
        "PLACEGATE_DISPATCH_SWEEP_INTERVAL_S": "2.5",
        "PLACEGATE_DISPATCH_ROUTING_FILE": "/etc/routing.toml",
        "PLACEGATE_UNRELATED": "x",
    })
    assert (settings.port, settings.redis_url, settings.data_dir, settings.principal_cache_s) == (
        9000, "redis://h:1/0", Path("/tmp/pg"), 0.5)
    assert settings.secret is not None and settings.secret.reveal() == bytes.fromhex("ab" * 32)
    assert "ab" not in repr(settings.secret)
    assert settings.dispatch == DispatchSettings(worker=False, sweep_interval_s=2.5,
                                                 routing_file=Path("/etc/routing.toml"))
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    "environ",
    [{"PLACEGATE_PORT": "eighty"}, {"PLACEGATE_RETENTION_DAYS": "0"}, {"PLACEGATE_SECRET": "abcd"},
     {"PLACEGATE_DISPATCH_MAX_DELIVERIES": "many"}],
)
def test_bad_values_are_refused_at_start(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Settings.from_env(environ)
