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
from crypto.dcc_errors import CborError, DccDecodeError
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
