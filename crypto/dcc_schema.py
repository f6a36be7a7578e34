"""The essential rules of the DCC JSON schema (ehn-dcc-schema 1.0.0 to 1.3.x) and the DCC to JSON rendering.

Only rules that hold in every published schema version are enforced, so a certificate issued under any
version is judged alike: ``ver``, ``nam`` (with ``fnt``) and ``dob`` are required; ``dob``'s year lies in
1900-2099; ``fnt``/``gnt`` are ICAO 9303 transliterations; exactly one of ``v``/``t``/``r`` is present (the
schema's ``oneOf``: one DCC carries one kind of event) as a non-empty array of entries carrying the fields
every version marks required, doses in [1, 9], ``is``/``ci`` at most 80 characters, dates real calendar days.
Value-set membership (vaccine codes, countries) is checked apart, against the imported value sets
(``crypto/dcc_valuesets.py``).
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
_MAX_ID = 80  # issuer (is) and certificate_id (ci) maxLength in every schema version
_MAX_DOSE = 9  # dose_posint: integer in [1, 9] in every schema version
_VERSION = re.compile(r"\d+\.\d+\.\d+", re.ASCII)
# Every version restricts the year of birth to 1900-2099 ("(19|20)\d\d"); 1.3.0 allows a partial date or an
# empty string, 1.0.x a date with a time appended (its pattern's "T..." suffix, kept lax here).
_DOB = re.compile(r"((19|20)\d\d(-\d\d(-\d\d)?)?(T[0-9:.+\-Z]*)?)?", re.ASCII)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
# fnt / gnt: ICAO 9303 transliteration ("^[A-Z<]*$" in every version).
_ICAO_NAME = re.compile(r"[A-Z<]*")
_STRING, _INT, _DATE_FIELD, _DATETIME, _ID = "string", "int", "date", "datetime", "id"
_REQUIRED: Mapping[EntryType, Mapping[str, str]] = {
    "v": {
        "tg": _STRING, "vp": _STRING, "mp": _STRING, "ma": _STRING, "dn": _INT, "sd": _INT,
        "dt": _DATE_FIELD, "co": _STRING, "is": _ID, "ci": _ID,
    },
    "t": {
        "tg": _STRING, "tt": _STRING, "sc": _DATETIME, "tr": _STRING, "co": _STRING, "is": _ID,
        "ci": _ID,
    },
    "r": {
        "tg": _STRING, "fr": _DATE_FIELD, "co": _STRING, "is": _ID, "df": _DATE_FIELD, "du": _DATE_FIELD,
        "ci": _ID,
    },
}  # fmt: skip


def dcc_entry_types(dcc: Mapping[CborKey, CborValue]) -> frozenset[EntryType]:
    """The entry-type keys present in a DCC map."""
    return frozenset(kind for kind in ENTRY_TYPES if kind in dcc)


def _full_date(value: str) -> bool:
    # JSON Schema "format": "date" is an RFC 3339 full-date: a real calendar day, not only its shape.
    if _DATE.match(value) is None:
        return False
    try:
        date.fromisoformat(value[:10])
    except ValueError:
        return False
    return True


def _check_field(kind: str, value: CborValue) -> bool:
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= _MAX_DOSE
    if kind == _DATETIME:
        # A sample time is a date-time string, or the same string under CBOR tag 0 (RFC 8949 §3.4.1).
        if isinstance(value, CborTag) and value.tag in (0, 1):
            return True
        return isinstance(value, str) and value != ""
    if kind == _DATE_FIELD:
        return isinstance(value, str) and _full_date(value)
    if kind == _ID:
        return isinstance(value, str) and len(value) <= _MAX_ID
    return isinstance(value, str)


def check_dcc_schema(dcc: CborValue) -> None:
    """Check a decoded DCC (claim -260 / 1) against the essential schema rules.

    :raises DccSchemaError: the first rule broken.
    """
    if not isinstance(dcc, dict) or not all(isinstance(key, str) for key in dcc):
        raise DccSchemaError("DCC is not a map with text keys", field="")
    ver = dcc.get("ver")
    if not isinstance(ver, str) or _VERSION.fullmatch(ver) is None:
        raise DccSchemaError("ver is missing or not a semantic version", field="ver")
    nam = dcc.get("nam")
    if not isinstance(nam, dict) or not isinstance(nam.get("fnt"), str):
        raise DccSchemaError("nam.fnt is required", field="nam.fnt")
    for part in ("fn", "fnt", "gn", "gnt"):
        text = nam.get(part, "")
        if not isinstance(text, str) or len(text) > _MAX_NAME:
            raise DccSchemaError(f"nam.{part} is not a string of at most 80 characters", field=f"nam.{part}")
        if part in ("fnt", "gnt") and _ICAO_NAME.fullmatch(text) is None:
            raise DccSchemaError(f"nam.{part} is not an ICAO 9303 transliteration (A-Z and <)", field=f"nam.{part}")
    dob = dcc.get("dob")
    if not isinstance(dob, str) or _DOB.fullmatch(dob) is None:
        raise DccSchemaError("dob is missing, not an ISO 8601 date, or its year is outside 1900-2099", field="dob")
    kinds = dcc_entry_types(dcc)
    if len(kinds) != 1:
        raise DccSchemaError("a DCC holds exactly one of v, t, r", field="v|t|r")
    (kind,) = kinds
    entries = dcc[kind]
    if not isinstance(entries, list) or not entries:
        raise DccSchemaError("the entry group is not a non-empty array", field=kind)
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DccSchemaError(f"{kind}[{index}] is not a map", field=f"{kind}[{index}]")
        for name, field_kind in _REQUIRED[kind].items():
            if name not in entry or not _check_field(field_kind, entry[name]):
                raise DccSchemaError(f"{kind}[{index}].{name} is missing or breaks its schema rule",
                                     field=f"{kind}[{index}].{name}")


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
