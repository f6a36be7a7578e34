"""Property tests for the digital sentry's inputs (issue 18), beside tests/crypto/test_dcc_fuzz.py: no identity
card number, temperature reading or paper code, however hostile, escapes its typed refusal, and the check digit
catches every single-character error."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.base45 import b45encode
from crypto.errors import CodeError
from crypto.keys import Alg, SigningKey
from crypto.paper import PAPER_PREFIX, verify_paper_code
from crypto.trust import TrustedKey, TrustList, Usage
from gateway.status.feed import RecordError, parse_status_record
from policy.idcard import InvalidIdCardError, normalise_id_card
from policy.masking import id_check_char, valid_id18
from policy.temperature import MAX_TEMPERATURE_C, MIN_TEMPERATURE_C, InvalidTemperatureError, check_temperature

FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
KEY = SigningKey.generate(Alg.ES256)
TRUST = TrustList([TrustedKey.create(KEY.public_key(), usage=Usage.HEALTH, not_before=NOW - timedelta(days=1),
                                     not_after=NOW + timedelta(days=30))])

_digits = st.text("0123456789", min_size=0, max_size=20)
_id_like = st.one_of(st.text(max_size=24), _digits, st.text("0123456789Xx", min_size=15, max_size=18))
_births = st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31))


@st.composite
def valid_numbers(draw: st.DrawFn) -> str:
    region = draw(st.text("0123456789", min_size=6, max_size=6))
    serial = draw(st.text("0123456789", min_size=3, max_size=3))
    first17 = region + draw(_births).strftime("%Y%m%d") + serial
    return first17 + id_check_char(first17)


@FUZZ
@given(_id_like)
def test_any_text_is_a_normalised_number_or_invalid_id_card(text: str) -> None:
    try:
        number = normalise_id_card(text)
    except InvalidIdCardError as exc:
        assert exc.code == "invalid_id_card"
        return
    assert len(number) == 18 and valid_id18(number) and normalise_id_card(number) == number


@FUZZ
@given(valid_numbers(), st.integers(0, 17), st.sampled_from("0123456789X"))
def test_every_single_character_error_is_caught(number: str, at: int, replacement: str) -> None:
    assert normalise_id_card(number) == number
    if replacement == number[at] or (at < 17 and replacement == "X"):
        return
    typo = number[:at] + replacement + number[at + 1:]
    # ISO 7064 MOD 11-2 detects every single substitution: a typo never names another resident.
    with contextlib.suppress(InvalidIdCardError):
        normalise_id_card(typo)
        raise AssertionError(f"{typo} accepted")


@FUZZ
@given(st.text("0123456789", min_size=6, max_size=6), st.dates(date(1900, 1, 1), date(1999, 12, 31)),
       st.text("0123456789", min_size=3, max_size=3))
def test_the_old_form_normalises_to_the_new_form_of_the_same_number(region: str, born: date, serial: str) -> None:
    old = region + born.strftime("%y%m%d") + serial
    new = normalise_id_card(old)
    assert new[:6] == region and new[6:14] == born.strftime("%Y%m%d") and new[14:17] == serial
    assert normalise_id_card(new) == new


@FUZZ
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.text(max_size=8), st.booleans(),
                 st.none(), st.lists(st.floats(), max_size=2)))
def test_any_reading_is_a_temperature_in_range_or_invalid_temperature(value: object) -> None:
    try:
        reading = check_temperature(value)
    except InvalidTemperatureError as exc:
        assert exc.code == "invalid_temperature"
        return
    assert isinstance(reading, float) and MIN_TEMPERATURE_C <= reading <= MAX_TEMPERATURE_C
    assert not isinstance(value, bool)


@FUZZ
@given(st.one_of(_id_like, st.integers(), st.none(), st.booleans(), st.floats()))
def test_a_feed_record_with_any_id_card_is_applied_or_rejected_as_invalid_id_card(value: object) -> None:
    record = {"holder": "h-1", "colour": "green", "updated_at": int(NOW.timestamp()), "id_card": value}
    try:
        parsed = parse_status_record(record, now=NOW)
    except RecordError as exc:
        assert exc.code == "invalid_id_card"
        return
    assert parsed.id_card is None if value is None else parsed.id_card == normalise_id_card(str(value))


@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200).map(b45encode)))
def test_any_paper_code_text_only_raises_typed_errors(text: str) -> None:
    with contextlib.suppress(CodeError):
        verify_paper_code(PAPER_PREFIX + text, TRUST, now=NOW)
