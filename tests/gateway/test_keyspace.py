"""Every key name the code builds falls in the retention class it belongs to (gateway/keyspace.py:DATA_CLASSES),
and the classes that must expire are exactly those holding personal or event data with a retention."""

from __future__ import annotations

import pytest

from gateway import keyspace

KEYS_AND_CLASSES = [
    (keyspace.scan_log_key("20261202"), "scan_log"),
    (keyspace.day_key("20261202"), "day_keys"),
    (keyspace.status_bucket_key(4097), "status_cache"),
    (keyspace.nonce_key("00aa:11bb"), "replay_memory"),
    (keyspace.static_replay_key("ab" * 16), "replay_memory"),
    (keyspace.approval_key("ap-1"), "approvals"),
    (keyspace.case_key("c1"), "cases"),
    (keyspace.case_history_key("c1"), "cases"),
    (keyspace.case_holder_key("c1"), "cases"),
    (keyspace.case_extension_key("c1"), "cases"),
    (keyspace.DISPATCH_INTAKE, "dispatch_intake"),
    (keyspace.DISPATCH_DEADLETTER, "dead_letters"),
    (keyspace.DISPATCH_OPEN, "case_indexes"),
    (keyspace.dispatch_day_key("20261202"), "case_indexes"),
    (keyspace.DISPATCH_DUE, "case_indexes"),
    (keyspace.DISPATCH_DUE_STAMPS, "case_indexes"),
    (keyspace.DISPATCH_DUE_CHECKED, "case_indexes"),
    (keyspace.SWEEP_LEASE, "case_indexes"),
    (keyspace.AUDIT_STREAM, "audit"),
    (keyspace.AUDIT_HEAD, "audit"),
    (keyspace.TRUST, "registry"),
    (keyspace.DSC_TRUST_VERSION, "registry"),
    (keyspace.place_key("p1"), "registry"),
    (keyspace.principal_key("ab" * 32), "registry"),
    (keyspace.PRINCIPAL_IDS, "registry"),
]


@pytest.mark.parametrize(("key", "data_class"), KEYS_AND_CLASSES)
def test_a_key_falls_in_its_retention_class(key: str, data_class: str) -> None:
    assert keyspace.data_class_of(key).name == data_class


def test_only_configuration_the_intake_queue_and_the_audit_trail_may_live_without_a_ttl() -> None:
    assert {c.name for c in keyspace.DATA_CLASSES if not c.expires} == {"dispatch_intake", "audit", "registry"}
    # The keys the privacy tests let go without a TTL are exactly those classes' keys.
    for key, _ in KEYS_AND_CLASSES:
        exempt = key.startswith(keyspace.REGISTRY_PREFIXES)
        assert exempt == (not keyspace.data_class_of(key).expires), key
