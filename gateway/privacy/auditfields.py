"""What an audit field may hold: every value is checked by its kind before it enters the trail.

The trail never expires (three years at least, PIPL Art. 56), so a value that slips into it stays. A raw holder
reference must never be one: a caller names a data subject by its keyed hash (``crypto/subject.py``), a case by
its case id, an approval by its approval id. Every field name has a kind (``FIELD_KINDS``), and a value that
does not fit its kind is refused: ``STRICT`` (set by the test suite) raises ``AuditFieldError``, a programming
error; in production the value is dropped and its field named in ``dropped_fields`` of the same entry, so the
entry is still written (no unaudited access) and the drop is visible to the privacy officer.

Free text has one kind, ``text``: at most 128 characters, and every token holding a digit or an ``@`` (an id
number, a phone number, an e-mail address, a holder reference) is masked as ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime

from crypto.subject import SubjectHasher

__all__ = ["FIELD_KINDS", "STRICT", "AuditFieldError", "clean_fields", "mask_text"]

STRICT = False  # tests set it: a misfit value is then a programming error, not a silent drop


class AuditFieldError(ValueError):
    """A value that does not fit its audit field's kind, or an unknown field name (raised only when STRICT)."""


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")  # principals, places, devices, jurisdictions, versions
_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # actions, purposes, roles, error codes, enums
_COUNT = re.compile(r"-?\d{1,15}")
_HEX = re.compile(r"[0-9a-f]{2,128}")
_CASE = re.compile(r"c[0-9a-f]{20}")  # gateway.dispatch.store.valid_case_id (tests hold the two together)
_APPROVAL = re.compile(r"apv_[0-9a-f]{32}")
_ACTOR = re.compile(r"cli:[A-Za-z0-9._-]{1,64}|gateway")
_ROUTE = re.compile(r"/[A-Za-z0-9_/{}.-]{0,127}")
_METHOD = re.compile(r"[A-Z]{3,7}")
_MASK = re.compile(r"[^\s,;]*[0-9@][^\s,;]*")
_TEXT_MAX = 128


def _time(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _window(value: str) -> bool:
    lo, sep, hi = value.partition("/")
    return bool(sep) and _time(lo) and _time(hi)


def _match(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda value: pattern.fullmatch(value) is not None


def _who(value: str) -> bool:
    return _ACTOR.fullmatch(value) is not None or _ID.fullmatch(value) is not None


def _ids(value: str) -> bool:
    return all(_ID.fullmatch(part) for part in value.split(","))


def _codes(value: str) -> bool:
    return all(_CODE.fullmatch(part) for part in value.split(","))


_OBJECT_KINDS: dict[str, Callable[[str], bool]] = {
    "case": _match(_CASE),
    "trace": _match(_CASE),
    "approval": _match(_APPROVAL),
    "subject": SubjectHasher.looks_like,
    "principal": _match(_ID),
    "place": _match(_ID),
    "device": _match(_ID),
    "key": _match(_HEX),
    "checkpoint": _match(_COUNT),
    "day": _match(re.compile(r"[0-9]{8}")),  # a shredded scan-log day (privacy/shred.py)
    "attachment": _match(re.compile(r"c[0-9a-f]{20}:[0-9]{1,3}")),  # a case's file (dispatch/attachments.py)
}


def _object(value: str) -> bool:
    """``kind:id`` with the id checked by its kind, or one bare word (``audit``, ``rules``, the stream name)."""
    kind, sep, rest = value.partition(":")
    if sep and kind in _OBJECT_KINDS:
        return _OBJECT_KINDS[kind](rest)
    return _CODE.fullmatch(value) is not None or value == "pg:{audit}:log"


_Check = Callable[[str], bool]
_KINDS: dict[str, _Check] = {
    "id": _match(_ID), "ids": _ids, "code": _match(_CODE), "codes": _codes, "count": _match(_COUNT),
    "time": _time, "window": _window, "subject": SubjectHasher.looks_like, "case": _match(_CASE),
    "approval": _match(_APPROVAL), "who": _who, "object": _object, "route": _match(_ROUTE),
    "method": _match(_METHOD), "hex": _match(_HEX), "text": lambda value: len(value) <= _TEXT_MAX,
}

# Every field an entry may carry and its kind. A new field is a new row here (and a test naming it).
FIELD_KINDS: Mapping[str, str] = {
    # the core of every entry
    "who": "who", "role": "code", "when": "time", "action": "code", "object": "object", "purpose": "code",
    "case_ref": "case", "result_count": "count",
    # tracing, approvals, subject access
    "subject": "subject", "approval": "approval", "approver": "id", "requester": "id", "window": "window",
    "valid_until": "time", "since": "time", "until": "time", "scanned": "count",
    "days": "count", "unlinkable_days": "count", "jurisdiction": "id", "outcome": "code",
    # refusals (roles, purposes, CLI credentials)
    "route": "route", "method": "method", "suppressed": "count", "command": "codes", "via": "who",
    # audit-trail oversight
    "filter_principal": "id", "filter_subject": "subject", "filter_action": "code", "before": "time",
    "dropped": "count", "checkpoint": "count", "checkpoint_seq": "count",
    # registry, trust lists, configuration
    "usage": "code", "alg": "id", "venue_class": "id", "target_role": "code", "scope": "ids", "expires_at": "count",
    "capability": "code",  # issue 18: a device allowed to present identity cards
    "certificates": "count", "digest": "hex", "stored": "count", "mode": "code", "rules_version": "id",
    "retention_days": "count", "status_ttl_s": "count", "place": "id", "device": "id", "case": "case",
    "day": "count", "removed": "count",
    # EU DCC reference data: imported value-set ids and rule-set names, the import's version, rules counted
    "sets": "ids", "version": "count", "rules": "count",
    # free text, masked
    "detail": "text", "note": "text",
    # written by this module itself
    "dropped_fields": "codes",
}


def mask_text(value: str) -> str:
    """Free text fit for the trail: digits and e-mail-like tokens masked, at most 128 characters."""
    return _MASK.sub("***", value)[:_TEXT_MAX]


def clean_fields(fields: Mapping[str, str], *, strict: bool | None = None) -> dict[str, str]:
    """The fields as they may be stored: each value checked by its kind (free text masked).

    :param strict: None follows ``STRICT``; False for values a caller took from a refused request as sent.
    :raises AuditFieldError: only when strict: an unknown name or a value that does not fit its kind.
    """
    strict = STRICT if strict is None else strict
    out: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in fields.items():
        kind = FIELD_KINDS.get(name)
        if kind == "text":
            value = mask_text(value)
        if kind is not None and (value == "" or _KINDS[kind](value)):
            out[name] = value
            continue
        if strict:
            what = "unknown audit field" if kind is None else f"audit field value does not fit kind {kind!r}"
            raise AuditFieldError(f"{what}: {name!r}")
        dropped.append(name if _CODE.fullmatch(name) else "unnamed")
        if name in ("who", "role", "when", "action", "object", "purpose", "case_ref", "result_count"):
            out[name] = ""  # the core keeps its shape; the value is gone
    if dropped:
        out["dropped_fields"] = ",".join(sorted(set(dropped)))
    return out
