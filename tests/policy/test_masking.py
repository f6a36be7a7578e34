# ruff: noqa: RUF001  # Chinese notes use full-width punctuation: that is what is tested
"""Masking of ID-card numbers, mobile numbers and e-mail addresses in free text (policy/masking.py): tables with
ID numbers made with their GB 11643-1999 check digit, and properties over generated text."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from policy.masking import LABELS, id_check_char, mask_personal, valid_id18


def _id18(first17: str) -> str:
    return first17 + id_check_char(first17)


def _wrong(first17: str) -> str:
    right = id_check_char(first17)
    return first17 + next(c for c in "0123456789X" if c != right)


ID_X = "11010519491231002X"  # the standard's own example: check character X
ID_D = _id18("44030419900307211")
FULL = str.maketrans("0123456789", "０１２３４５６７８９")


def test_the_check_digit_follows_gb_11643_1999() -> None:
    assert id_check_char("11010519491231002") == "X"
    assert valid_id18(ID_X) and valid_id18(ID_X.lower())
    assert valid_id18(ID_D) and not valid_id18(_wrong("44030419900307211"))
    assert not valid_id18("1101051949123100X2") and not valid_id18(ID_X[:17])


@pytest.mark.parametrize(
    ("text", "masked", "kind"),
    [
        (f"身份证{ID_X}，请核实", "身份证[ID]，请核实", "id"),
        (f"id {ID_X.lower()}.", "id [ID].", "id"),
        (f"ID{ID_D}", "ID[ID]", "id"),
        (ID_D.translate(FULL), "[ID]", "id"),  # full-width digits
        ("旧证110105491231002号", "旧证[ID]号", "id"),  # 15-digit first-generation form, 1949-12-31
        ("110105491331002", "[NUMBER]", "number"),  # 15 digits, month 13: not an ID, still a long number
        (_wrong("44030419900307211"), "[NUMBER]", "number"),  # wrong check digit: not an ID, masked as a number
        ("card 6222020200112233445", "card [NUMBER]", "number"),
        ("电话13812345678", "电话[PHONE]", "phone"),
        ("tel 138 1234 5678 ok", "tel [PHONE] ok", "phone"),
        ("tel 138-1234-5678", "tel [PHONE]", "phone"),
        ("+8613812345678", "[PHONE]", "phone"),
        ("+86 138-1234-5678", "[PHONE]", "phone"),
        ("0086 13912345678", "[PHONE]", "phone"),
        ("86-19912345678", "[PHONE]", "phone"),
        ("１３８１２３４５６７８", "[PHONE]", "phone"),
        ("＋８６ １３８ １２３４ ５６７８", "[PHONE]", "phone"),
        ("邮箱zhang.san+ops@mail.example.com。", "邮箱[EMAIL]。", "email"),
        ("mail 13812345678@qq.com now", "mail [EMAIL] now", "email"),  # the address, not a phone inside it
        ("ｌｉ＠ｅｘａｍｐｌｅ．ｃｎ", "[EMAIL]", "email"),
    ],
)
def test_personal_identifiers_are_masked(text: str, masked: str, kind: str) -> None:
    result = mask_personal(text)
    assert result.text == masked
    assert result.counts[kind] == 1 and result.masked == 1


@pytest.mark.parametrize(
    "text",
    [
        "12812345678",  # 1[3-9] only
        "1381234567",  # 10 digits
        "138123456789",  # 12 digits: part of a longer run, never partly masked
        "4413812345678",  # a phone's digits inside a longer run
        "138-1234-56789",  # the last group runs on
        "1234567890123",  # 13 digits
        "case c0123456789abcdef0123 at 2026-03-02 08:00, place-a, 3 people",
        "not an address: user@localhost, @handle, a@b",
        "体温37.5度，隔离14天，联系人张三",
    ],
)
def test_text_without_identifiers_is_kept_as_written(text: str) -> None:
    result = mask_personal(text)
    assert (result.text, result.masked) == (text, 0)


def test_a_mixed_chinese_note_masks_each_identifier_and_keeps_the_rest() -> None:
    note = f"张三（身份证{ID_X}）手机+86 138-1234-5678，备用13912345678，邮箱zs@example.org，住3栋2单元"
    result = mask_personal(note)
    assert result.text == "张三（身份证[ID]）手机[PHONE]，备用[PHONE]，邮箱[EMAIL]，住3栋2单元"
    assert result.counts == {"id": 1, "number": 0, "phone": 2, "email": 1}


_first17 = st.text(alphabet="0123456789", min_size=17, max_size=17)
_plain = st.text(alphabet=st.sampled_from([*"张三李四的住在 ,.;:()-abcXYZ", "\n", "。", "，"]), max_size=20)


@settings(max_examples=300, deadline=None)
@given(_first17, _plain, _plain)
def test_any_valid_id_in_any_text_is_masked(first17: str, before: str, after: str) -> None:
    number = _id18(first17)
    result = mask_personal(before + number + after)
    assert number not in result.text and "[ID]" in result.text
    assert result.counts["id"] >= 1


@settings(max_examples=300, deadline=None)
@given(_first17)
def test_a_wrong_check_digit_is_never_an_id_but_never_kept_either(first17: str) -> None:
    result = mask_personal(f"no. {_wrong(first17)} end")
    assert result.counts["id"] == 0 and result.text == "no. [NUMBER] end"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from("3456789"), st.text(alphabet="0123456789", min_size=9, max_size=9),
       st.sampled_from(["", "+86", "+86 ", "86", "0086 ", "86-"]), st.sampled_from(["", " ", "-"]))  # fmt: skip
def test_any_mobile_number_in_any_written_form_is_masked(second: str, rest: str, prefix: str, sep: str) -> None:
    digits = "1" + second + rest
    written = prefix + sep.join((digits[:3], digits[3:7], digits[7:]))
    result = mask_personal(f"电话{written}。")
    assert result.text == "电话[PHONE]。" and result.counts["phone"] == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=8), st.sampled_from("3456789"),
       st.text(alphabet="0123456789", min_size=9, max_size=9))  # fmt: skip
def test_digits_inside_a_longer_run_are_not_partly_masked(lead: str, second: str, rest: str) -> None:
    assume(lead not in ("86", "0086"))  # those are the country-code forms of a whole number
    run = lead + "1" + second + rest  # a mobile number's digits after other digits: 12 to 19 digits long
    result = mask_personal(f"x {run} y")
    assert result.counts["phone"] == 0
    # Only the whole run is ever masked (15+ digits), never a part of it.
    assert result.text in (f"x {run} y", "x [NUMBER] y", "x [ID] y")


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_masking_is_idempotent_and_leaves_no_valid_id(text: str) -> None:
    once = mask_personal(text)
    assert mask_personal(once.text).text == once.text
    norm = once.text.translate({cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)})
    assert not any(valid_id18(norm[i : i + 18]) for i in range(len(norm) - 17)), once.text
    if not any(c.isdigit() or c in "@＠" for c in text):
        assert once.text == text and once.masked == 0


def test_the_labels_are_documented_ones() -> None:
    assert LABELS == {"id": "[ID]", "number": "[NUMBER]", "phone": "[PHONE]", "email": "[EMAIL]"}
