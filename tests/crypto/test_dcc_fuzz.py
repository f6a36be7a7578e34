"""Property tests: no input, however hostile, escapes the typed error tree of the HC1 chain."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.base45 import b45decode, b45encode
from crypto.cbor import decode_cbor
from crypto.dcc import decode_hc1, inspect_hc1, verify_hc1
from crypto.dcc_errors import CborError, DccDecodeError, DccSchemaError
from crypto.dcc_trust import DscTrustList
from crypto.errors import CodeError

NOW = datetime(2021, 9, 1, tzinfo=UTC)
FUZZ = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def _check_all_paths(text: str, trust: DscTrustList) -> None:
    with contextlib.suppress(DccDecodeError):
        decode_hc1(text)
    with contextlib.suppress(CodeError):
        verify_hc1(text, trust, now=NOW)
    report = inspect_hc1(text, trust, now=NOW)
    assert report.decoded == (report.failed_stage is None)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_cbor_errors(data: bytes) -> None:
    with contextlib.suppress(CborError):
        decode_cbor(data)


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_only_raises_typed_errors(ec_dsc: Any, text: str) -> None:
    _check_all_paths(text, DscTrustList.from_der_list([ec_dsc.der]))
    _check_all_paths("HC1:" + text, DscTrustList.from_der_list([ec_dsc.der]))


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_arbitrary_payloads_only_raise_typed_errors(ec_dsc: Any, data: bytes, compress: bool) -> None:
    body = zlib.compress(data) if compress else data
    _check_all_paths("HC1:" + b45encode(body), DscTrustList.from_der_list([ec_dsc.der]))


@FUZZ
@given(st.data())
def test_mutated_valid_codes_only_raise_typed_errors(
    ec_dsc: Any, hc1_factory: Callable[..., str], data: st.DataObject
) -> None:
    code = hc1_factory(ec_dsc)
    inner = bytearray(zlib.decompress(b45decode(code[4:])))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(inner) - 1))
        inner[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(inner)))
    mutated = "HC1:" + b45encode(zlib.compress(bytes(inner[:cut])))
    trust = DscTrustList.from_der_list([ec_dsc.der])
    _check_all_paths(mutated, trust)


# --- CertLogic expressions, value sets, rule sets and signed trust lists (issue 18 part 2) -------------------

_SCALARS = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=30,
)
_OPERATORS = ["var", "if", "===", "and", ">", "<", ">=", "<=", "in", "+", "after", "before", "not-after",
              "not-before", "!", "plusTime", "reduce", "extractFromUVCI", "dccDateOfBirth", "unknown"]
_DATES = st.sampled_from(["2021-06-01", "2021-06-01T10:00:00Z", "2020-02-29T23:59:59.999+01:00", "1990", "1990-02",
                          "2021-13-01", "", "x", "2021-06-01T10:00:00+25:00"])
_PATHS = st.sampled_from(["", "payload.v.0.dt", "external.validationClock", "x", "x.0", "0", "x.", ".", "a.b.c"])


def _operations(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    operand = inner | _DATES | st.builds(lambda p: {"var": p}, _PATHS)
    return st.one_of(
        st.builds(lambda op, args: {op: args}, st.sampled_from(_OPERATORS), st.lists(operand, max_size=4)),
        st.builds(lambda d, n, u: {"plusTime": [d, n, u]}, operand, st.integers(-10**6, 10**6),
                  st.sampled_from(["year", "month", "day", "hour", "week"])),
        st.builds(lambda p: {"var": p}, _PATHS | st.integers() | st.none()),
        st.builds(lambda a, lam, i: {"reduce": [a, lam, i]}, operand, operand, operand),
    )


_EXPRESSIONS = st.recursive(_SCALARS | _DATES, _operations, max_leaves=25)


def _evaluate_typed(expr: Any, data: Any) -> None:
    from policy.certlogic import CertLogicError, evaluate, to_json

    with contextlib.suppress(CertLogicError):
        to_json(evaluate(expr, data))


@FUZZ
@given(_JSON, _JSON)
def test_arbitrary_json_as_certlogic_only_raises_certlogic_errors(expr: Any, data: Any) -> None:
    _evaluate_typed(expr, data)


@FUZZ
@given(_EXPRESSIONS, _JSON | st.builds(lambda d: {"payload": {"v": [{"dt": d}]}, "external": {
    "validationClock": d}, "x": [d, 1]}, _DATES))
def test_built_certlogic_expressions_only_raise_certlogic_errors(expr: Any, data: Any) -> None:
    import pytest

    from policy.certlogic import CertLogicError, evaluate, validate

    try:
        issues = validate(expr)
    except CertLogicError:
        return  # over a bound: refused before any walk
    if issues:
        # The evaluator checks the expression before evaluating anything: an invalid one never gives a value.
        with pytest.raises(CertLogicError):
            evaluate(expr, data)
    else:
        _evaluate_typed(expr, data)


@FUZZ
@given(st.integers(0, 400))
def test_certlogic_nesting_of_any_depth_is_refused_or_evaluated(depth: int) -> None:
    from policy.certlogic import MAX_DEPTH, CertLogicError, CertLogicTooDeepError, evaluate

    expr: Any = True
    for _ in range(depth):
        expr = {"!": [expr]}
    try:
        evaluate(expr, {})
    except CertLogicTooDeepError:
        assert depth * 2 > MAX_DEPTH
    except CertLogicError:
        raise AssertionError("a valid expression within the bounds must evaluate") from None


@FUZZ
@given(st.dictionaries(st.sampled_from(["tg", "vp", "mp", "ma", "co", "dn", "tt", "tr"]), _SCALARS, max_size=8),
       st.sampled_from(["v", "t", "r"]))
def test_value_set_checks_of_arbitrary_entries_only_raise_unknown_value(entry: dict[str, Any], kind: str) -> None:
    from crypto.dcc_errors import DccUnknownValueError
    from crypto.dcc_valuesets import ValueSets, check_dcc_values, parse_value_set

    sets = ValueSets({name: parse_value_set({"valueSetId": name, "valueSetDate": "2021-01-01",
                                             "valueSetValues": {"840539006": {}, "DE": {}}})
                      for name in ("disease-agent-targeted", "country-2-codes", "vaccines-covid-19-names")})
    with contextlib.suppress(DccUnknownValueError):
        check_dcc_values({kind: [entry]}, sets)


@FUZZ
@given(_EXPRESSIONS, _JSON)
def test_a_rule_set_of_any_valid_logic_gives_a_verdict_on_any_payload(logic: Any, payload: Any) -> None:
    from policy.dcc_rules import DccRuleError, apply_rule_set, parse_rule_set

    rule = {"Identifier": "VR-XX-0001", "Type": "Acceptance", "Country": "XX", "Version": "1.0.0",
            "Engine": "CERTLOGIC", "ValidFrom": "2021-01-01T00:00:00Z", "ValidTo": "2030-01-01T00:00:00Z",
            "Logic": logic}  # fmt: skip
    try:
        rule_set = parse_rule_set("FUZZ", [rule])
    except DccRuleError:
        return
    verdict = apply_rule_set(rule_set, payload, at=NOW, value_sets={})
    assert verdict.passed == (verdict.failed_rule is None)


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_arbitrary_signed_list_bodies_only_raise_trust_list_errors(ec_dsc: Any, body: bytes, with_line: bool) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from crypto.dcc_trustlist import load_anchor, verify_signed_list
    from crypto.errors import TrustListError

    anchor = load_anchor(x509.load_der_x509_certificate(ec_dsc.der).public_bytes(Encoding.PEM))
    with contextlib.suppress(TrustListError):
        verify_signed_list((b"MEUCIQ==\n" if with_line else b"") + body, anchor)


@FUZZ
@given(st.text(alphabet="0123456789-T:Z", max_size=16))
def test_a_birth_date_is_schema_valid_only_with_a_year_from_1900_to_2099(dob: str) -> None:
    from crypto.dcc_schema import check_dcc_schema

    dcc = {"ver": "1.3.0", "nam": {"fnt": "DOE"}, "dob": dob,
           "t": [{"tg": "840539006", "tt": "LP6464-4", "sc": "2021-05-30T10:12:22Z", "tr": "260415000",
                  "co": "DE", "is": "RKI", "ci": "URN:UVCI:01DE/T1#1"}]}  # fmt: skip
    try:
        check_dcc_schema(dcc)
    except DccSchemaError:
        return
    assert dob == "" or 1900 <= int(dob[:4]) <= 2099


@FUZZ
@given(_JSON | st.fixed_dictionaries({"valueSetId": _SCALARS, "valueSetDate": _SCALARS, "valueSetValues": _JSON}))
def test_arbitrary_value_set_documents_only_raise_trust_list_errors(doc: Any) -> None:
    from crypto.dcc_valuesets import parse_value_set
    from crypto.errors import TrustListError

    with contextlib.suppress(TrustListError):
        parse_value_set(doc)


@FUZZ
@given(st.fixed_dictionaries({
    "Identifier": st.sampled_from(["VR-XX-0001", "bad"]) | _SCALARS, "Type": st.sampled_from(["Acceptance"]) | _SCALARS,
    "Country": _SCALARS, "Version": st.sampled_from(["1.0.0"]) | _SCALARS,
    "Engine": st.sampled_from(["CERTLOGIC"]) | _SCALARS,
    "ValidFrom": st.sampled_from(["2021-01-01T00:00:00Z", "2021-01-01"]) | _SCALARS,
    "ValidTo": st.sampled_from(["2030-01-01T00:00:00+00:00"]) | _SCALARS, "Logic": _EXPRESSIONS,
}) | _JSON)
def test_arbitrary_rule_documents_only_raise_rule_errors(doc: Any) -> None:
    from policy.dcc_rules import DccRuleError, parse_rule

    with contextlib.suppress(DccRuleError):
        parse_rule(doc)
