"""Every key name gateway/keyspace.py can build falls in exactly one retention class (keyspace.DATA_CLASSES), no
catch-all: the module's key builders and key constants are walked, so a new builder without a class fails here.
Key names carry no personal data: a name, an e-mail address, a phone number or a document number put where a key
builder takes an id makes a key that no class accepts (the retention report lists it as ``unclassified``)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator

import pytest

from gateway import keyspace

# A realistic value for every parameter name a key builder takes. A new builder with a new parameter name: add
# the shape the code really passes (an id, a digest, a day), never a personal value.
SAMPLES: dict[str, object] = {
    "place_id": "place-a",
    "token_hash_hex": "ab" * 32,
    "bucket": 4097,
    "replay_id": "00aa11bb22cc33dd:" + "0f" * 12,
    "digest_hex": "ab" * 16,
    "day": "20261202",
    "case_id": "c" + "0123456789" * 2,
    "approval_id": "apv_" + "cd" * 16,
    "principal_id": "handler-d1.health",
    "event_class": "replayed",
    "who": "ab" * 16,  # a holder's keyed subject hash, or "report"
    "n": 3,
    "session_hash_hex": "ef" * 32,
}
# (A place id is the registry's venue id, lower-case letters, digits and ``._-``: a venue's name, never a person's.)
PERSONAL = ["jane.doe@example.org", "+41 79 123 45 67", "Jane Doe", "C01X00T47", "URN:UVCI:01:AT:10807843F94AEE0E"]


def _builders() -> Iterator[tuple[str, Callable[..., object]]]:
    for name, obj in vars(keyspace).items():
        ours = inspect.isfunction(obj) and obj.__module__ == keyspace.__name__ and not name.startswith("_")
        if ours and inspect.signature(obj).return_annotation in ("str", str):
            yield name, obj


def _sample(name: str, builder: Callable[..., object]) -> str:
    params = inspect.signature(builder).parameters
    missing = [p for p in params if p not in SAMPLES]
    assert not missing, f"{name}: add a realistic sample for {missing} to SAMPLES"
    return str(builder(**{p: SAMPLES[p] for p in params}))


def _every_key() -> list[tuple[str, str]]:
    """(where it comes from, key name) for every key constant and every key builder of the module."""
    keys = [
        (name, value) for name, value in vars(keyspace).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
        and value.startswith(keyspace.KEY_PREFIX) and name != "KEY_PREFIX"
    ]  # fmt: skip
    keys += [(name, key) for name, b in _builders() if (key := _sample(name, b)).startswith(keyspace.KEY_PREFIX)]
    return keys


EVERY_KEY = _every_key()


def test_the_walk_finds_the_builders_and_constants() -> None:
    found = {name for name, _ in EVERY_KEY}
    assert {"case_holder_key", "status_bucket_key", "scan_log_key", "DISPATCH_INTAKE", "AUDIT_STREAM"} <= found
    assert "day_tag" not in found and "sweep_lease_ttl_ms" not in found  # a tag and a TTL, not keys


@pytest.mark.parametrize(("source", "key"), EVERY_KEY, ids=[n for n, _ in EVERY_KEY])
def test_every_key_builder_and_constant_has_exactly_one_class(source: str, key: str) -> None:
    matching = [c.name for c in keyspace.DATA_CLASSES if re.fullmatch(c.pattern, key)]
    assert len(matching) == 1, f"{source} -> {key}: classes {matching} (add one line to keyspace.DATA_CLASSES)"
    data_class = keyspace.data_class_of(key)
    assert data_class is not None and data_class.name == matching[0]


def test_every_class_names_keys_the_module_builds_and_no_class_is_a_catch_all() -> None:
    used = {c.name for _, key in EVERY_KEY if (c := keyspace.data_class_of(key))}
    assert used == {c.name for c in keyspace.DATA_CLASSES}
    assert len({c.name for c in keyspace.DATA_CLASSES}) == len(keyspace.DATA_CLASSES)
    for key in ("pg:", "pg:anything", "pg:case:notes", "pg:dispatch:whatever", "pg:trust:other"):
        assert keyspace.data_class_of(key) is None, key


@pytest.mark.parametrize(("name", "builder"), list(_builders()))
def test_a_key_name_never_carries_personal_data(name: str, builder: Callable[..., object]) -> None:
    params = inspect.signature(builder).parameters
    for param, sample in SAMPLES.items():
        if param not in params or not isinstance(sample, str):
            continue
        for value in PERSONAL:
            key = str(builder(**{p: (value if p == param else SAMPLES[p]) for p in params}))
            # Either the builder never puts the value in the name (it hashes it) or no class accepts the key.
            assert value not in key or keyspace.data_class_of(key) is None, (name, param, value)


def test_only_configuration_the_intake_queue_and_the_audit_trail_may_live_without_a_ttl() -> None:
    assert {c.name for c in keyspace.DATA_CLASSES if not c.expires} == {
        "trust_keys", "dsc_trust", "places", "principals", "secret_fingerprint", "dispatch_intake", "audit",
        "audit_high_water", "dcc_valuesets", "dcc_rules",
    }  # fmt: skip
    assert all(c.limit == "none" for c in keyspace.DATA_CLASSES if not c.expires)
    assert all(c.limit != "none" for c in keyspace.DATA_CLASSES if c.expires)
    # The keys the privacy tests let go without a TTL are exactly those classes' keys.
    for _, key in EVERY_KEY:
        exempt = key.startswith(keyspace.REGISTRY_PREFIXES)
        data_class = keyspace.data_class_of(key)
        assert data_class is not None and exempt == (not data_class.expires), key


def test_personal_classes_are_bounded_by_the_configured_retention() -> None:
    limits = {c.name: c.limit for c in keyspace.DATA_CLASSES}
    assert (limits["scan_log"], limits["day_keys"]) == ("day_end", "day_end")
    assert (limits["case_holder"], limits["dead_letters"]) == ("retention", "retention")
    assert (limits["status_cache"], limits["approvals"]) == ("status_ttl", "approval")
    assert (limits["replay_memory"], limits["static_replay_memory"]) == ("code_lifetime", "dcc_replay_window")
    assert limits["cases"] == limits["case_history"] == keyspace.CASE_RETENTION_S
