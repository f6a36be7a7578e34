"""Sealing of holder references that a case's follow-up needs (AES-256-GCM), bound to what carries them.

The raw holder reference never reaches Redis in clear (PRIVACY.md "Minimisation"); a case carries
it sealed, and opening it is an audited read of personal data.

A sealed value is bound to its carrier by the AEAD's associated data: ``event_binding(event_id)`` while it
travels in an intake event (at scan time there is no case yet), ``case_binding(case_id)`` once the dispatch
worker has re-sealed it into the case's holder key (``Sealer.reseal``). A blob copied from one case into another
therefore fails to open there (``SealError``, ``unseal_failed``): the copy would hand one case's holder to
whoever may read the other case (issue 14).

Two formats: ``s2.`` (bound, written now) and ``s1.`` (one constant associated data, written before the
binding). ``open`` refuses ``s1.``; only ``reseal`` (the intake worker, turning an event's blob into a case's)
still reads it, so events already in the intake stream during an upgrade still become cases with a holder.
A case holder key written in the ``s1.`` format before the upgrade no longer opens (``unseal_failed``); it
expires with the scan log's retention.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto.kdf import derive_key

__all__ = [
    "ATTACHMENT_LABEL",
    "NOTE_LABEL",
    "SEALED_PREFIX",
    "SealError",
    "Sealer",
    "attachment_binding",
    "case_binding",
    "event_binding",
    "note_binding",
    "reading_binding",
]

_PREFIX = "s2."
_AAD = b"placegate/holder-ref/v2\x00"  # + the binding
SEALED_PREFIX = _PREFIX  # what every value sealed now starts with
_LEGACY_PREFIX = "s1."
_LEGACY_AAD = b"placegate/holder-ref/v1"


class SealError(Exception):
    code = "unseal_failed"


def event_binding(event_id: str) -> str:
    """What a sealed reference is bound to inside an intake event (and its dead letter)."""
    return "event:" + event_id


def note_binding(case_id: str, day: str, field: str) -> str:
    """What a sealed note text is bound to: its case, its day's notes key and its field there."""
    return f"note:{case_id}:{day}:{field}"


# The sub-key label of the note sealer: notes and holder references are separate purposes, so one leaked
# sub-key opens one of them only (crypto/kdf.py).
NOTE_LABEL = b"placegate/note-seal/v1"


# The sub-key label of the attachment sealer: a case's evidence files (a photo of a person is personal data) are
# a third purpose, so neither the note nor the holder sub-key opens them.
ATTACHMENT_LABEL = b"placegate/attachment-seal/v1"
_BYTES_PREFIX = b"b1."
_BYTES_AAD = b"placegate/attachment/v1\x00"  # + the binding


def attachment_binding(case_id: str, n: int) -> str:
    """What a sealed attachment is bound to: its case and its number there."""
    return f"attachment:{case_id}:{n}"


def reading_binding(carrier: str) -> str:
    """What a sealed temperature reading (issue 18) is bound to: its carrier's binding (``event_binding`` or
    ``case_binding``) plus ``:reading``, so it can never be swapped with the holder reference beside it."""
    return carrier + ":reading"


def case_binding(case_id: str) -> str:
    """What a sealed reference is bound to inside a case's holder key."""
    return "case:" + case_id


class Sealer:
    __slots__ = ("_aead",)

    def __init__(self, master: bytes, *, label: bytes = b"placegate/seal/v1") -> None:
        self._aead = AESGCM(derive_key(master, label))

    def __repr__(self) -> str:
        return "Sealer(***)"

    def seal(self, plain: str, *, bound_to: str) -> str:
        """Seal ``plain`` so that it opens only with the same ``bound_to`` (``event_binding``/``case_binding``)."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode(), _AAD + bound_to.encode())
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, bound_to: str) -> str:
        """Recover the holder reference; call only through the audited read path.

        :raises SealError: not a value sealed under this key and bound to ``bound_to`` (an ``s1.`` value too).
        """
        if not sealed.startswith(_PREFIX):
            raise SealError("not a bound sealed value")
        return self._open(sealed[len(_PREFIX) :], _AAD + bound_to.encode())

    def reseal(self, sealed: str, *, bound_to: str, rebind_to: str) -> str:
        """The same reference sealed again, bound to ``rebind_to`` instead (an event's blob into its case).

        The one reader of the ``s1.`` format (constant associated data), for events written before the binding.

        :raises SealError: the value does not open with ``bound_to`` (or as an ``s1.`` value).
        """
        if sealed.startswith(_LEGACY_PREFIX):
            plain = self._open(sealed[len(_LEGACY_PREFIX) :], _LEGACY_AAD)
        else:
            plain = self.open(sealed, bound_to=bound_to)
        return self.seal(plain, bound_to=rebind_to)

    def seal_bytes(self, plain: bytes, *, bound_to: str) -> bytes:
        """Seal a binary value (an attachment) so that it opens only with the same ``bound_to``; raw bytes, not
        base64, so a 2 MB photo costs 2 MB + 31 bytes at rest."""
        nonce = os.urandom(12)
        return _BYTES_PREFIX + nonce + self._aead.encrypt(nonce, plain, _BYTES_AAD + bound_to.encode())

    def open_bytes(self, sealed: bytes, *, bound_to: str) -> bytes:
        """:raises SealError: not a binary value sealed under this key and bound to ``bound_to``."""
        if not sealed.startswith(_BYTES_PREFIX):
            raise SealError("not a sealed binary value")
        body = sealed[len(_BYTES_PREFIX) :]
        try:
            return self._aead.decrypt(body[:12], body[12:], _BYTES_AAD + bound_to.encode())
        except (ValueError, InvalidTag) as exc:
            raise SealError("cannot open sealed value") from exc

    def _open(self, body: str, aad: bytes) -> str:
        try:
            raw = base64.urlsafe_b64decode(body)
            return self._aead.decrypt(raw[:12], raw[12:], aad).decode()
        except (ValueError, InvalidTag) as exc:
            raise SealError("cannot open sealed value") from exc
