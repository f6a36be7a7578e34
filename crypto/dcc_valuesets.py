"""EU DCC value sets (ehn-dcc-development/eu-dcc-valuesets) and the membership check of a DCC's coded fields.

A value-set file is ``{"valueSetId": ..., "valueSetDate": ..., "valueSetValues": {code: {...}, ...}}``; a code is
a member when it is a key of ``valueSetValues``, ``active: false`` included (a retired code still names a real
product: certificates issued while it was active stay readable).  Only the sets an operator imported are checked:
a field whose set is absent is not judged (``test-manf-example.json`` is an example, the live list of test
devices is the DCC Gateway's), so importing fewer sets never refuses more.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from crypto.cbor import CborKey, CborValue
from crypto.dcc_errors import DccUnknownValueError
from crypto.errors import TrustListError

__all__ = ["FIELD_VALUE_SETS", "ValueSet", "ValueSets", "check_dcc_values", "parse_value_set"]

# (entry type, field) -> valueSetId (ehn-dcc-schema's "valueset-uri" annotations of each field).
FIELD_VALUE_SETS: Final[Mapping[tuple[str, str], str]] = {
    ("v", "tg"): "disease-agent-targeted",
    ("v", "vp"): "sct-vaccines-covid-19",
    ("v", "mp"): "vaccines-covid-19-names",
    ("v", "ma"): "vaccines-covid-19-auth-holders",
    ("v", "co"): "country-2-codes",
    ("t", "tg"): "disease-agent-targeted",
    ("t", "tt"): "covid-19-lab-test-type",
    ("t", "ma"): "covid-19-lab-test-manufacturer-and-name",
    ("t", "tr"): "covid-19-lab-result",
    ("t", "co"): "country-2-codes",
    ("r", "tg"): "disease-agent-targeted",
    ("r", "co"): "country-2-codes",
}
_ID: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
_MAX_CODES: Final = 100_000  # the largest public set (country codes) has 250


@dataclass(frozen=True, slots=True)
class ValueSet:
    """One value set: its id, its date and every listed code."""

    id: str
    date: str
    codes: frozenset[str]
    digest: str  # SHA-256 of the canonical JSON of id, date and sorted codes: names what was imported

    def to_json(self) -> dict[str, object]:
        """The stored form (only ids and codes: public reference data)."""
        return {"id": self.id, "date": self.date, "codes": sorted(self.codes)}


def _digest(value_set_id: str, date: str, codes: frozenset[str]) -> str:
    canonical = json.dumps([value_set_id, date, sorted(codes)], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_value_set(doc: object) -> ValueSet:
    """A value set from its published JSON (or the stored form of ``ValueSet.to_json``).

    :raises TrustListError: not that shape (no id, no date, no code table, a code that is not a string).
    """
    if not isinstance(doc, dict):
        raise TrustListError("a value set is a JSON object")
    value_set_id = doc.get("valueSetId", doc.get("id"))
    date = doc.get("valueSetDate", doc.get("date"))
    table = doc.get("valueSetValues", doc.get("codes"))
    if not isinstance(value_set_id, str) or _ID.fullmatch(value_set_id) is None:
        raise TrustListError("valueSetId is missing or not a value-set id")
    if not isinstance(date, str) or not date:
        raise TrustListError(f"{value_set_id}: valueSetDate is missing")
    if isinstance(table, dict) and all(isinstance(entry, dict) for entry in table.values()):
        codes = list(table)
    elif isinstance(table, list):
        codes = table
    else:
        raise TrustListError(f"{value_set_id}: valueSetValues is not a table of codes")
    if not all(isinstance(code, str) and code for code in codes) or len(codes) > _MAX_CODES:
        raise TrustListError(f"{value_set_id}: a code is not a non-empty string")
    members = frozenset(codes)
    return ValueSet(value_set_id, date, members, _digest(value_set_id, date, members))


@dataclass(frozen=True, slots=True)
class ValueSets:
    """The imported value sets by id (empty: nothing imported, nothing checked)."""

    sets: Mapping[str, ValueSet]

    def compressed(self) -> dict[str, list[str]]:
        """The business rules' ``external.valueSets``: each id to the list of its codes, active or not (the
        compressed form of dgc-business-rules-testdata's valuesets/valueSets.json)."""
        return {value_set_id: sorted(value_set.codes) for value_set_id, value_set in self.sets.items()}


def check_dcc_values(dcc: Mapping[CborKey, CborValue], value_sets: ValueSets) -> None:
    """Refuse a DCC whose coded field holds a code missing from that field's imported value set.

    Runs after the schema check, so the entry group and its required fields are known to be there; an optional
    field (``t[].ma``) is judged only when present.

    :raises DccUnknownValueError: the first such field, named like ``v[0].mp``.
    """
    for kind in ("v", "t", "r"):
        entries = dcc.get(kind)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                continue
            for (entry_kind, name), value_set_id in FIELD_VALUE_SETS.items():
                value_set = value_sets.sets.get(value_set_id)
                if entry_kind != kind or value_set is None or name not in entry:
                    continue
                value = entry[name]
                if not isinstance(value, str) or value not in value_set.codes:
                    raise DccUnknownValueError(f"{kind}[{index}].{name} is not in value set {value_set_id}",
                                               field=f"{kind}[{index}].{name}")
