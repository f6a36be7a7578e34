"""Identity card numbers (GB 11643-1999) as a sentry sends them: validated, the old form normalised."""

from __future__ import annotations

import pytest

from policy.idcard import InvalidIdCardError, normalise_id_card
from policy.masking import id_check_char


def test_the_check_character_of_the_standard_example_is_right() -> None:
    # GB 11643-1999's worked example: 11010519491231002 -> X.
    assert id_check_char("11010519491231002") == "X"
    assert normalise_id_card("11010519491231002X") == "11010519491231002X"
    assert normalise_id_card("11010519491231002x") == "11010519491231002X"


def test_the_15_digit_form_is_normalised_to_18_characters() -> None:
    # 110105491231002: the first-generation form of the example (19 inserted, check character appended).
    assert normalise_id_card("110105491231002") == "11010519491231002X"


@pytest.mark.parametrize("bad", [
    "110105194912310021",  # wrong check character
    "11010519491231002",  # 17 characters
    "1101051949123100211",  # 19 characters
    "110105194902300028",  # 30 February
    "110105189912310021",  # born before 1900
    "110105490231002",  # 15 digits, 31 February
    "11010549123100A",  # 15 characters, not digits
    "11010519491231002Y",
    " 11010519491231002X",
    "",
])
def test_anything_else_is_refused_with_a_stable_code(bad: str) -> None:
    with pytest.raises(InvalidIdCardError) as caught:
        normalise_id_card(bad)
    assert caught.value.code == "invalid_id_card"


def test_a_right_check_character_on_an_impossible_date_is_refused() -> None:
    first17 = "11010519490230002"
    with pytest.raises(InvalidIdCardError):
        normalise_id_card(first17 + id_check_char(first17))
