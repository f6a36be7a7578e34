"""EU DCC value sets: parsing the published files (read from ../shared/conformance/dcc-valuesets, never copied
here) and the membership check of a certificate's coded fields, alone and at verification."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crypto.dcc_errors import DccUnknownValueError
from crypto.dcc_trust import DscTrustList
from crypto.dcc_valuesets import FIELD_VALUE_SETS, ValueSets, check_dcc_values, parse_value_set
from crypto.errors import TrustListError
from crypto.formats import TrustAnchors, verify_presented
from crypto.trust import TrustList
from tests.crypto.conftest import TEST_DCC, VACCINATION_DCC

REPO = Path(__file__).resolve().parents[2]
VALUESETS = REPO.parent / "shared" / "conformance" / "dcc-valuesets"
needs_valuesets = pytest.mark.skipif(not VALUESETS.is_dir(), reason="shared/conformance/dcc-valuesets absent")
NOW = datetime(2021, 9, 1, tzinfo=UTC)


def _public() -> ValueSets:
    import json

    sets = {}
    for path in VALUESETS.glob("*.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if "valueSetId" in doc:
            value_set = parse_value_set(doc)
            sets[value_set.id] = value_set
    return ValueSets(sets)


def _vaccination(**changes: Any) -> dict[str, Any]:
    dcc = copy.deepcopy(VACCINATION_DCC)
    dcc["v"][0].update(changes)
    return dcc


def _test(**changes: Any) -> dict[str, Any]:
    dcc = copy.deepcopy(TEST_DCC)
    dcc["t"][0].update(changes)
    return dcc


@needs_valuesets
def test_the_published_value_sets_parse() -> None:
    sets = _public()
    # The Annex A encoding table has the value-set shape too; it maps to no DCC field, so it judges nothing.
    assert sorted(sets.sets) == sorted([
        "disease-agent-targeted", "sct-vaccines-covid-19", "vaccines-covid-19-names", "vaccines-covid-19-auth-holders",
        "covid-19-lab-test-type", "covid-19-lab-test-manufacturer-and-name", "covid-19-lab-result", "country-2-codes",
        "vaccines-covid-19-encoding-instructions",
    ])  # fmt: skip
    assert set(FIELD_VALUE_SETS.values()) < set(sets.sets)
    assert len(sets.sets["country-2-codes"].codes) == 250
    assert sets.compressed()["covid-19-lab-test-type"] == ["LP217198-3", "LP6464-4"]


@needs_valuesets
def test_a_certificate_of_known_codes_passes() -> None:
    check_dcc_values(_vaccination(), _public())
    check_dcc_values(_test(), _public())


@needs_valuesets
@pytest.mark.parametrize(
    ("dcc", "field"),
    [
        (_vaccination(mp="EU/1/99/9999"), "v[0].mp"),
        (_vaccination(vp="123456789"), "v[0].vp"),
        (_vaccination(ma="ORG-000"), "v[0].ma"),
        (_vaccination(co="XX"), "v[0].co"),
        (_vaccination(tg="1234"), "v[0].tg"),
        (_test(tt="LP0000-0"), "t[0].tt"),
        (_test(tr="123"), "t[0].tr"),
        (_test(ma="0"), "t[0].ma"),
        (_test(co="de"), "t[0].co"),
    ],
)
def test_an_unknown_code_is_refused_naming_its_field(dcc: dict[str, Any], field: str) -> None:
    with pytest.raises(DccUnknownValueError) as caught:
        check_dcc_values(dcc, _public())
    assert (caught.value.code, caught.value.field) == ("dcc_unknown_value", field)


@needs_valuesets
def test_a_retired_code_is_still_a_member() -> None:
    sets = _public()
    assert "J07BX03" in sets.sets["sct-vaccines-covid-19"].codes  # active: false in the published file
    check_dcc_values(_vaccination(vp="J07BX03"), sets)


def test_a_field_whose_value_set_was_not_imported_is_not_judged() -> None:
    only_countries = ValueSets({"country-2-codes": parse_value_set(
        {"valueSetId": "country-2-codes", "valueSetDate": "2019-11-01", "valueSetValues": {"DE": {}}})})
    check_dcc_values(_vaccination(mp="anything"), only_countries)
    check_dcc_values(_vaccination(), ValueSets({}))
    with pytest.raises(DccUnknownValueError):
        check_dcc_values(_vaccination(co="AT"), only_countries)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"valueSetDate": "2021-01-01", "valueSetValues": {}},
        {"valueSetId": "Bad Id", "valueSetDate": "2021-01-01", "valueSetValues": {}},
        {"valueSetId": "x", "valueSetValues": {"a": {}}},
        {"valueSetId": "x", "valueSetDate": "2021-01-01", "valueSetValues": {"a": "not an entry"}},
        {"valueSetId": "x", "valueSetDate": "2021-01-01", "valueSetValues": 3},
    ],
)
def test_a_malformed_value_set_is_refused(doc: Any) -> None:
    with pytest.raises(TrustListError):
        parse_value_set(doc)


@needs_valuesets
def test_verification_checks_the_value_sets_of_the_anchors(ec_dsc: Any, hc1_factory: Callable[..., str]) -> None:
    from datetime import timedelta

    times = {"iat": NOW - timedelta(days=1), "exp": NOW + timedelta(days=1)}
    anchors = TrustAnchors(TrustList(), DscTrustList.from_der_list([ec_dsc.der]), _public())
    verify_presented(hc1_factory(ec_dsc, _vaccination(), **times), anchors, now=NOW)
    unknown = hc1_factory(ec_dsc, _vaccination(mp="Sputnik-V-fake"), **times)
    with pytest.raises(DccUnknownValueError) as caught:
        verify_presented(unknown, anchors, now=NOW)
    assert caught.value.field == "v[0].mp"
    # Without imported value sets nothing is judged (the set-up before an operator imports them).
    verify_presented(unknown, TrustAnchors(TrustList(), anchors.dsc), now=NOW)
