"""The essential rules of the DCC JSON schema (ehn-dcc-schema 1.0.0 to 1.3.x) and the DCC to JSON rendering.

Only rules that hold in every published schema version are enforced, so a certificate issued under any
version is judged alike: ``ver``, ``nam`` (with ``fnt``) and ``dob`` are required; exactly one of
``v``/``t``/``r`` is present (the schema's ``oneOf``: one DCC carries one kind of event) as a non-empty array
of entries carrying the fields every version marks required.  Value-set membership (vaccine codes, countries)
belongs to business rules, not to the schema.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import TypeAlias

from crypto.cbor import CborKey, CborSimple, CborTag, CborValue
from crypto.dcc_errors import DccSchemaError
from crypto.dcc_trust import EntryType

__all__ = ["ENTRY_TYPES", "JsonValue", "check_dcc_schema", "dcc_entry_types", "dcc_to_json"]

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"

ENTRY_TYPES: tuple[EntryType, ...] = ("v", "t", "r")
_MAX_NAME = 80  # person_name maxLength in every schema version
_VERSION = re.compile(r"\d+\.\d+\.\d+")
# dob: full date, year-month, year only, or empty (1.3.0 allows partial dates); older issuers appended a time.
_DOB = re.compile(r"(\d{4}(-\d{2}(-\d{2})?)?)?(T[0-9:.+\-Z]*)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STRING, _INT, _DATE_FIELD, _DATETIME = "string", "int", "date", "datetime"
_REQUIRED: Mapping[EntryType, Mapping[str, str]] = {
    "v": {
        "tg": _STRING, "vp": _STRING, "mp": _STRING, "ma": _STRING, "dn": _INT, "sd": _INT,
        "dt": _DATE_FIELD, "co": _STRING, "is": _STRING, "ci": _STRING,
    },
    "t": {
        "tg": _STRING, "tt": _STRING, "sc": _DATETIME, "tr": _STRING, "co": _STRING, "is": _STRING,
        "ci": _STRING,
    },
    "r": {
        "tg": _STRING, "fr": _DATE_FIELD, "co": _STRING, "is": _STRING, "df": _DATE_FIELD, "du": _DATE_FIELD,
        "ci": _STRING,
    },
}  # fmt: skip


def dcc_entry_types(dcc: Mapping[CborKey, CborValue]) -> frozenset[EntryType]:
    """The entry-type keys present in a DCC map."""
    return frozenset(kind for kind in ENTRY_TYPES if kind in dcc)


def _check_field(kind: str, value: CborValue) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if kind == _DATETIME:
        # A sample time is a date-time string, or the same string under CBOR tag 0 (RFC 8949 §3.4.1).
        if isinstance(value, CborTag) and value.tag in (0, 1):
            return True
        return isinstance(value, str) and value != ""
    if kind == _DATE_FIELD:
        return isinstance(value, str) and _DATE.match(value) is not None
    return isinstance(value, str)


def check_dcc_schema(dcc: CborValue) -> None:
    """Check a decoded DCC (claim -260 / 1) against the essential schema rules.

    :raises DccSchemaError: the first rule broken.
    """
    if not isinstance(dcc, dict) or not all(isinstance(key, str) for key in dcc):
        raise DccSchemaError("DCC is not a map with text keys")
    ver = dcc.get("ver")
    if not isinstance(ver, str) or _VERSION.fullmatch(ver) is None:
        raise DccSchemaError("ver is missing or not a semantic version")
    nam = dcc.get("nam")
    if not isinstance(nam, dict) or not isinstance(nam.get("fnt"), str):
        raise DccSchemaError("nam.fnt is required")
    for part in ("fn", "fnt", "gn", "gnt"):
        text = nam.get(part, "")
        if not isinstance(text, str) or len(text) > _MAX_NAME:
            raise DccSchemaError("name part is not a string of at most 80 characters")
    dob = dcc.get("dob")
    if not isinstance(dob, str) or _DOB.fullmatch(dob) is None:
        raise DccSchemaError("dob is missing or not an ISO 8601 date")
    kinds = dcc_entry_types(dcc)
    if len(kinds) != 1:
        raise DccSchemaError("a DCC holds exactly one of v, t, r")
    (kind,) = kinds
    entries = dcc[kind]
    if not isinstance(entries, list) or not entries:
        raise DccSchemaError("the entry group is not a non-empty array")
    for entry in entries:
        if not isinstance(entry, dict):
            raise DccSchemaError("an entry is not a map")
        for name, field_kind in _REQUIRED[kind].items():
            if name not in entry or not _check_field(field_kind, entry[name]):
                raise DccSchemaError(f"entry field {kind}.{name} is missing or mistyped")


def _tag_to_json(tag: CborTag) -> JsonValue:
    value = tag.value
    if tag.tag == 0 and isinstance(value, str):
        return value  # already an RFC 3339 date-time (RFC 8949 §3.4.1)
    if tag.tag == 1 and isinstance(value, int | float) and math.isfinite(value):
        try:
            return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError):
            return None
    if tag.tag == 100 and isinstance(value, int):  # RFC 8943: days since 1970-01-01
        try:
            return (date(1970, 1, 1) + timedelta(days=value)).isoformat()
        except OverflowError:
            return None
    return dcc_to_json(value)  # tag 1004 (RFC 8943 full-date string) and unknown tags: the content


def dcc_to_json(value: CborValue) -> JsonValue:
    """Render a decoded DCC as JSON: date/time tags become ISO 8601 strings, bytes become base64."""
    if isinstance(value, dict):
        return {str(key): dcc_to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [dcc_to_json(item) for item in value]
    if isinstance(value, CborTag):
        return _tag_to_json(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, CborSimple):
        return None
    return value
