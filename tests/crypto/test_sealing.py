"""Sealed holder references are bound to their carrier (AES-GCM associated data): an event's blob opens only
for that event, a case's only for that case; the pre-binding ``s1.`` format is read only by ``reseal``."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.kdf import derive_key
from crypto.sealing import Sealer, SealError, case_binding, event_binding

MASTER = bytes(range(32))


def _legacy(plain: str) -> str:
    aead = AESGCM(derive_key(MASTER, b"placegate/seal/v1"))
    nonce = os.urandom(12)
    return "s1." + base64.urlsafe_b64encode(nonce + aead.encrypt(nonce, plain.encode(),
                                                                 b"placegate/holder-ref/v1")).decode()


def test_a_sealed_reference_opens_only_with_its_own_binding() -> None:
    sealer = Sealer(MASTER)
    blob = sealer.seal("holder-1", bound_to=case_binding("c1"))
    assert blob.startswith("s2.") and "holder-1" not in blob
    assert sealer.open(blob, bound_to=case_binding("c1")) == "holder-1"
    for other in (case_binding("c2"), event_binding("c1"), ""):
        with pytest.raises(SealError) as caught:
            sealer.open(blob, bound_to=other)
        assert caught.value.code == "unseal_failed"
    with pytest.raises(SealError):
        Sealer(bytes(32)).open(blob, bound_to=case_binding("c1"))


def test_reseal_moves_an_events_reference_to_its_case() -> None:
    sealer = Sealer(MASTER)
    event_blob = sealer.seal("holder-2", bound_to=event_binding("e1"))
    case_blob = sealer.reseal(event_blob, bound_to=event_binding("e1"), rebind_to=case_binding("c1"))
    assert sealer.open(case_blob, bound_to=case_binding("c1")) == "holder-2"
    with pytest.raises(SealError):
        sealer.reseal(event_blob, bound_to=event_binding("e2"), rebind_to=case_binding("c1"))


def test_the_unbound_format_is_read_by_reseal_only() -> None:
    sealer = Sealer(MASTER)
    old = _legacy("holder-3")
    with pytest.raises(SealError):
        sealer.open(old, bound_to=case_binding("c1"))
    case_blob = sealer.reseal(old, bound_to=event_binding("e1"), rebind_to=case_binding("c1"))
    assert sealer.open(case_blob, bound_to=case_binding("c1")) == "holder-3"
    for broken in ("s1.!!", "s2.AAAA", "plain"):
        with pytest.raises(SealError):
            sealer.reseal(broken, bound_to=event_binding("e1"), rebind_to=case_binding("c1"))


def test_the_sealer_never_shows_its_key() -> None:
    assert repr(Sealer(MASTER)) == "Sealer(***)"


def test_a_sealed_file_opens_only_with_its_binding_and_the_attachment_sub_key() -> None:
    from crypto.sealing import ATTACHMENT_LABEL, NOTE_LABEL, attachment_binding

    sealer = Sealer(MASTER, label=ATTACHMENT_LABEL)
    photo = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    blob = sealer.seal_bytes(photo, bound_to=attachment_binding("c1", 1))
    assert blob.startswith(b"b1.") and len(blob) == len(photo) + 31 and photo not in blob
    assert sealer.open_bytes(blob, bound_to=attachment_binding("c1", 1)) == photo
    for other in (attachment_binding("c1", 2), attachment_binding("c2", 1)):
        with pytest.raises(SealError):
            sealer.open_bytes(blob, bound_to=other)
    for other_key in (Sealer(MASTER), Sealer(MASTER, label=NOTE_LABEL)):
        with pytest.raises(SealError):
            other_key.open_bytes(blob, bound_to=attachment_binding("c1", 1))
    with pytest.raises(SealError):
        sealer.open_bytes(b"s2." + blob[3:], bound_to=attachment_binding("c1", 1))
