"""Settings are read once from PLACEGATE_* variables (dispatch ones included), typed by field, secrets hidden;
casting is strict, every refusal names its variable, and unknown PLACEGATE_* names are found."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from gateway.settings import (
    DispatchSettings,
    Secret,
    Settings,
    SettingsError,
    known_variables,
    load_or_create_secret,
    unknown_variable_warnings,
    unknown_variables,
)

ROOT = Path(__file__).resolve().parents[2]


def _refusal(environ: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert caught.value.code == "invalid_setting"
    return caught.value


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
    ("environ", "variable"),
    [({"PLACEGATE_PORT": "eighty"}, "PLACEGATE_PORT"), ({"PLACEGATE_RETENTION_DAYS": "0"}, "PLACEGATE_RETENTION_DAYS"),
     ({"PLACEGATE_SECRET": "abcd"}, "PLACEGATE_SECRET"),
     ({"PLACEGATE_DISPATCH_MAX_DELIVERIES": "many"}, "PLACEGATE_DISPATCH_MAX_DELIVERIES")],
)
def test_bad_values_are_refused_at_start(environ: dict[str, str], variable: str) -> None:
    assert _refusal(environ).variable == variable


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("PLACEGATE_PORT", "abc"), ("PLACEGATE_PORT", "1_000"), ("PLACEGATE_PORT", " 8080"), ("PLACEGATE_PORT", "+80"),
        ("PLACEGATE_PORT", "8080.0"), ("PLACEGATE_PORT", "٨٠٨٠"), ("PLACEGATE_WORKERS", "2 "),
        ("PLACEGATE_PRINCIPAL_CACHE_S", "nan"), ("PLACEGATE_PRINCIPAL_CACHE_S", "inf"),
        ("PLACEGATE_PRINCIPAL_CACHE_S", "1e999"), ("PLACEGATE_PRINCIPAL_CACHE_S", "fast"),
        ("PLACEGATE_TRUST_REFRESH_S", "2s"),
        ("PLACEGATE_DISPATCH_WORKER", "ture"), ("PLACEGATE_DISPATCH_WORKER", "2"),
        ("PLACEGATE_DISPATCH_WORKER", "enabled"), ("PLACEGATE_DISPATCH_AUTO_INTAKE_REPORTS", "y"),
        ("PLACEGATE_DATA_DIR", "  "), ("PLACEGATE_RULES_FILE", " "), ("PLACEGATE_DISPATCH_ROUTING_FILE", "\t"),
        ("PLACEGATE_SECRET", "zz" * 32), ("PLACEGATE_SECRET", "ab " * 32), ("PLACEGATE_SECRET", "a" * 65),
        ("PLACEGATE_DISPATCH_MAX_DELIVERIES", "many"),
    ],
)
def test_text_that_is_not_its_type_is_refused_naming_the_variable(variable: str, raw: str) -> None:
    refused = _refusal({variable: raw})
    assert refused.variable == variable
    assert str(refused).startswith(variable + ": ")  # the CLI prints this line as it is


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), ("On", True),
     ("0", False), ("false", False), ("False", False), ("no", False), ("OFF", False)],
)
def test_booleans_are_exactly_four_spellings_in_any_case(raw: str, value: bool) -> None:
    assert Settings.from_env({"PLACEGATE_DISPATCH_WORKER": raw}).dispatch.worker is value


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "value"),
    [("PLACEGATE_PORT", "08080", "port", 8080), ("PLACEGATE_PRINCIPAL_CACHE_S", ".5", "principal_cache_s", 0.5),
     ("PLACEGATE_PRINCIPAL_CACHE_S", "2", "principal_cache_s", 2.0),
     ("PLACEGATE_PRINCIPAL_CACHE_S", "1e1", "principal_cache_s", 10.0),
     ("PLACEGATE_TRUST_REFRESH_S", "0.5", "trust_refresh_s", 0.5),
     ("PLACEGATE_MAX_BATCH_CODES", "128", "max_batch_codes", 128)],
)
def test_plain_decimal_numbers_are_accepted(variable: str, raw: str, attribute: str, value: float) -> None:
    assert getattr(Settings.from_env({variable: raw}), attribute) == value


def test_an_empty_value_counts_as_unset() -> None:
    assert Settings.from_env({"PLACEGATE_PORT": "", "PLACEGATE_DATA_DIR": "", "PLACEGATE_SECRET": "",
                              "PLACEGATE_DISPATCH_WORKER": ""}) == Settings()


def test_new_tunables_have_their_defaults() -> None:
    assert (Settings().trust_refresh_s, Settings().max_batch_codes) == (2.0, 64)


def _numeric_fields(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if str(f.type) in ("int", "float", "int | Auto")}


@pytest.mark.parametrize("cls", [Settings, DispatchSettings])
def test_every_number_has_a_range(cls: type[Settings] | type[DispatchSettings]) -> None:
    assert set(cls.RANGES) == _numeric_fields(cls)


def _bounds() -> list[tuple[str, str, float, float]]:
    cases = []
    for cls, prefix in ((Settings, "PLACEGATE_"), (DispatchSettings, "PLACEGATE_DISPATCH_")):
        ints = {f.name for f in fields(cls) if str(f.type) == "int"}
        for name, (low, high) in cls.RANGES.items():
            below = low - 1 if name in ints or low == 0 else low / 2
            cases.append((prefix + name.upper(), name, below, high + 1))
    return cases


def _text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


@pytest.mark.parametrize(("variable", "name", "below", "above"), _bounds())
def test_values_outside_their_range_are_refused_naming_the_variable(
    variable: str, name: str, below: float, above: float
) -> None:
    for value in (below, above):
        assert _refusal({variable: _text(value)}).variable == variable


@pytest.mark.parametrize(("variable", "name", "below", "above"), _bounds())
def test_both_ends_of_a_range_are_accepted(variable: str, name: str, below: float, above: float) -> None:
    cls = DispatchSettings if variable.startswith("PLACEGATE_DISPATCH_") else Settings
    for bound in cls.RANGES[name]:
        environ = {variable: _text(bound)}
        if name.startswith("dsc_trust_"):  # degraded_after <= fail_after: move both together
            environ = {"PLACEGATE_DSC_TRUST_DEGRADED_AFTER_S": _text(bound),
                       "PLACEGATE_DSC_TRUST_FAIL_AFTER_S": _text(bound)}
        settings = Settings.from_env(environ)
        owner = settings.dispatch if cls is DispatchSettings else settings
        assert getattr(owner, name) == bound


def test_the_defaults_are_valid() -> None:
    Settings().validate()


@pytest.mark.parametrize(
    ("environ", "variable"),
    [({"PLACEGATE_STATUS_BUCKETS": "1000"}, "PLACEGATE_STATUS_BUCKETS"),
     ({"PLACEGATE_DSC_TRUST_DEGRADED_AFTER_S": "700000"}, "PLACEGATE_DSC_TRUST_DEGRADED_AFTER_S"),
     ({"PLACEGATE_DISPATCH_WAITAOF_TIMEOUT_MS": "0"}, "PLACEGATE_DISPATCH_WAITAOF_TIMEOUT_MS"),
     ({"PLACEGATE_SECRET": "ab" * 31}, "PLACEGATE_SECRET"), ({"PLACEGATE_SECRET": "ab" * 65}, "PLACEGATE_SECRET"),
     ({"PLACEGATE_REDIS_URL": "localhost:6379"}, "PLACEGATE_REDIS_URL")],
)
def test_rules_beyond_ranges_name_their_variable(environ: dict[str, str], variable: str) -> None:
    assert _refusal(environ).variable == variable


@pytest.mark.parametrize("url", [
    "redis://h:1/0", "rediss://h:1", "unix:///tmp/r.sock", "redis+cluster://h1:7000,h2:7001,[::1]:7002",
    "rediss+cluster://user:pw@h1:7000", "redis+sentinel://s1:26379,s2:26379/placegate",
    "rediss+sentinel://:pw@s1:26379/placegate",
])
def test_cluster_and_sentinel_urls_are_accepted(url: str) -> None:
    assert Settings.from_env({"PLACEGATE_REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize("url", [
    "redis+cluster://", "redis+cluster://h1", "redis+cluster://h1:7000,h2", "redis+cluster://h1:0",
    "redis+sentinel://s1:26379", "redis+sentinel://s1:26379/", "redis+clusters://h1:7000",
])
def test_malformed_cluster_and_sentinel_urls_are_refused(url: str) -> None:
    assert _refusal({"PLACEGATE_REDIS_URL": url}).variable == "PLACEGATE_REDIS_URL"


def test_a_refused_redis_url_or_secret_is_not_echoed() -> None:
    assert "hunter2" not in str(_refusal({"PLACEGATE_REDIS_URL": "redis+cluster://:hunter2@cache"}))
    assert "hunter2" not in str(_refusal({"PLACEGATE_REDIS_URL": "redis+sentinel://:hunter2@s1:26379"}))
    assert "hunter2" not in str(_refusal({"PLACEGATE_REDIS_URL": "http://:hunter2@cache:6379/0"}))
    assert "c0ffee" not in str(_refusal({"PLACEGATE_SECRET": "c0ffee" * 8}))
    assert "c0ffeg" not in str(_refusal({"PLACEGATE_SECRET": "c0ffeg" * 12}))


@pytest.mark.parametrize("secret_bytes", [32, 64])
def test_secrets_of_32_to_64_bytes_are_accepted(secret_bytes: int) -> None:
    settings = Settings.from_env({"PLACEGATE_SECRET": "Ab" * secret_bytes})
    assert settings.secret == Secret(bytes.fromhex("ab" * secret_bytes))


def test_dispatch_settings_alone_are_validated_too() -> None:
    with pytest.raises(SettingsError) as caught:
        DispatchSettings.from_env({"PLACEGATE_DISPATCH_PAGE_MAX": "0"})
    assert caught.value.variable == "PLACEGATE_DISPATCH_PAGE_MAX"


def test_validate_names_the_variable_of_a_value_set_in_code() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings(port=0).validate()
    assert caught.value.variable == "PLACEGATE_PORT"
    with pytest.raises(SettingsError) as caught:
        Settings(dispatch=DispatchSettings(max_deliveries=0)).validate()
    assert caught.value.variable == "PLACEGATE_DISPATCH_MAX_DELIVERIES"


def test_a_secret_file_that_is_not_hex_is_refused_as_the_secret(tmp_path: Path) -> None:
    created = load_or_create_secret(tmp_path / "new" / "secret")
    assert load_or_create_secret(tmp_path / "new" / "secret") == created
    bad = tmp_path / "secret"
    bad.write_text("not a secret at all\n")
    with pytest.raises(SettingsError) as caught:
        load_or_create_secret(bad)
    assert caught.value.variable == "PLACEGATE_SECRET"


def test_unknown_variables_are_the_placegate_names_nothing_reads() -> None:
    environ = {"PLACEGATE_PROT": "9000", "PLACEGATE_PORT": "9000", "placegate_port": "9000", "PLACEGATE_DISPATCH": "1",
               "PLACEGATE_DISPATCH_WORKER": "1", "PLACEGATE_TEST_REDIS_URL": "redis://h", "PATH": "/bin"}
    assert unknown_variables(environ) == ["PLACEGATE_DISPATCH", "PLACEGATE_PROT", "placegate_port"]
    assert unknown_variables({}) == []


def test_a_typo_is_reported_with_the_closest_name() -> None:
    assert unknown_variable_warnings({"PLACEGATE_PROT": "1", "PLACEGATE_FOO": "1", "placegate_workers": "2"}) == [
        "unknown setting PLACEGATE_FOO (ignored)",
        "unknown setting PLACEGATE_PROT (ignored; did you mean PLACEGATE_PORT?)",
        "unknown setting placegate_workers (ignored; did you mean PLACEGATE_WORKERS?)",
    ]


# A PLACEGATE_* name read by code in the tree: os.environ.get("…"), os.environ["…"], os.getenv("…").
_READER = re.compile(r"""(?:environ\.get|environ\[|getenv)\(?\s*["'](PLACEGATE_[A-Z0-9_]+)["']""")


def test_every_variable_read_in_the_tree_is_known() -> None:
    read = set()
    for directory in ("gateway", "crypto", "policy", "bench", "tests"):
        for path in (ROOT / directory).rglob("*.py"):
            read |= set(_READER.findall(path.read_text("utf-8")))
    assert "PLACEGATE_TEST_REDIS_URL" in read  # the pattern does find readers
    assert read <= known_variables()


def _doc_rows(doc: str) -> dict[str, str]:
    """Table rows of a doc by the variable in their first cell (``| `NAME` | …``)."""
    text = (ROOT / "docs" / doc).read_text("utf-8")
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([A-Z0-9_*]+)` \|.*$", text, re.MULTILINE)}


def test_the_docs_list_every_setting_with_its_range_and_no_other_variable() -> None:
    docs = ((Settings, "operations.md", "PLACEGATE_"), (DispatchSettings, "dispatch-operations.md", ""))
    for cls, doc, prefix in docs:
        rows = _doc_rows(doc)
        for f in fields(cls):
            if f.name == "dispatch":
                continue
            row = rows[prefix + f.name.upper()]
            if f.name in cls.RANGES:
                low, high = cls.RANGES[f.name]
                assert f"| {_text(low)}\N{EN DASH}{_text(high)}" in row, row
    mentioned: set[str] = set()
    ops_files = [p for p in (ROOT / "ops").rglob("*") if p.is_file()]  # ops/ has sub-folders (k8s/, prometheus/)
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *ops_files, ROOT / "bench" / "README.md"]:
        mentioned |= set(re.findall(r"PLACEGATE_[A-Z0-9_]*[A-Z0-9]", path.read_text("utf-8")))
    prose = {"PLACEGATE_DISPATCH", "PLACEGATE_PROT"}  # "PLACEGATE_DISPATCH_*" and the typo in the warning example
    assert mentioned <= known_variables() | prose
