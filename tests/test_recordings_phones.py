"""Phone numbers: every common way of writing a number normalises to the same E.164 form."""

from __future__ import annotations

import pytest

from creatio_attach.recordings.phones import (
    check_country_code,
    digits,
    last_digits,
    likeness,
    normalise,
    search_fragment,
)

SAME_US_NUMBER = [
    "+1 (555) 010-2030",
    "0015550102030",
    "01115550102030",
    "5550102030",
    "555-010-2030",
    "(555) 010 2030",
    "555.010.2030",
    "15550102030",
    "1-555-010-2030",
    "+15550102030",
    "sip:+15550102030@pbx.example.com;user=phone",
    "tel:+1-555-010-2030",
    " +1 555 010 2030 ",
]


@pytest.mark.parametrize("written", SAME_US_NUMBER)
def test_us_number_in_any_format_normalises_to_e164(written: str) -> None:
    assert normalise(written, "1") == "+15550102030"


@pytest.mark.parametrize("written", SAME_US_NUMBER)
def test_us_number_in_any_format_is_exactly_the_stored_one(written: str) -> None:
    assert likeness(written, "+1 (555) 010-2030", country_code="1", last_n=9) == "exact"


def test_without_a_country_code_national_numbers_stay_digits_and_match_by_last_digits() -> None:
    assert normalise("555-010-2030") == "5550102030"
    assert normalise("+1 555 010 2030") == "+15550102030"
    assert likeness("5550102030", "+1 555 010 2030", country_code=None, last_n=9) == ("last_digits")


@pytest.mark.parametrize(
    ("written", "country_code", "expected"),
    [
        ("030 1234567", "49", "+49301234567"),  # German trunk 0
        ("0049 30 1234567", "49", "+49301234567"),
        ("49301234567", "49", "+49301234567"),  # with country code, no plus
        ("020 7946 0958", "44", "+442079460958"),
        ("+44 (0)20 7946 0958", "44", "+442079460958"),  # the "(0)" is not dialled
        ("06 1234 5678", "39", "+390612345678"),  # Italy keeps its leading 0
        ("8 495 123-45-67", "7", "+74951234567"),  # Russia: trunk 8
        ("+49 30 1234567", "1", "+49301234567"),  # international wins over the default
    ],
)
def test_national_numbers_become_e164_with_the_country_code(
    written: str, country_code: str, expected: str
) -> None:
    assert normalise(written, country_code) == expected


@pytest.mark.parametrize("withheld", ["", "   ", "anonymous", "Unknown", "PRIVATE", "restricted"])
def test_withheld_callers_are_no_number(withheld: str) -> None:
    assert normalise(withheld, "1") == ""
    assert likeness(withheld, withheld, country_code="1", last_n=9) is None


def test_extensions_stay_short_digits_and_never_match_by_suffix() -> None:
    assert normalise("201", "1") == "201"
    assert normalise("0201", "44") == "0201"
    assert likeness("201", "201", country_code="1", last_n=9) == "exact"
    assert likeness("201", "+1 555 010 0201", country_code="1", last_n=9) is None


def test_different_numbers_do_not_match() -> None:
    assert likeness("+15550102030", "+15550102031", country_code="1", last_n=9) is None
    # same last 9 digits, different country: alike only by the fallback
    assert likeness("+15550102030", "+7 555 010 2030", country_code="1", last_n=9) == (
        "last_digits"
    )
    assert likeness("+15550102030", "+7 555 010 2030", country_code="1", last_n=11) is None


def test_helpers() -> None:
    assert digits("+1 (555) 010-2030") == "15550102030"
    assert last_digits("+1 (555) 010-2030", 4) == "2030"
    assert last_digits("201", 9) == ""
    assert search_fragment("555-010-2030") == "2030"
    assert check_country_code("1") is None
    assert check_country_code("+49") is None
    assert check_country_code("USA") is not None
