"""Typed OData literals: a value taken from a file name can never change a filter's meaning."""

from __future__ import annotations

import datetime as dt

import pytest

from creatio_attach.creatio import Condition, parse_metadata
from creatio_attach.creatio.literals import build_filter, literal, query_string, resolve_path
from creatio_attach.errors import CreatioRejected
from tests.creatio.test_metadata import CSDL

MD = parse_metadata(CSDL)
CASE = MD.require("Case")
GUID = "3FA85F64-5717-4562-B3FC-2C963F66AFA6"


def test_strings_are_quoted_with_quotes_doubled() -> None:
    assert literal("O'Brien", "Edm.String") == "'O''Brien'"
    assert literal("' or 1 eq 1", "Edm.String") == "''' or 1 eq 1'"
    assert literal("", "Edm.String") == "''"


def test_guids_are_bare_lowercase_and_validated() -> None:
    assert literal(GUID, "Edm.Guid") == GUID.lower()
    assert literal("{" + GUID + "}", "Edm.Guid") == GUID.lower()
    with pytest.raises(CreatioRejected, match="Guid"):
        literal("1' or '1' eq '1", "Edm.Guid")


def test_numbers_are_bare_and_must_be_numbers() -> None:
    assert literal("42", "Edm.Int32") == "42"
    assert literal(7, "Edm.Int32") == "7"
    assert literal(3.0, "Edm.Int32") == "3"
    assert literal("1.50", "Edm.Decimal") == "1.50"
    for bad in ("1 or 1 eq 1", "4.5", True):
        with pytest.raises(CreatioRejected):
            literal(bad, "Edm.Int32")
    with pytest.raises(CreatioRejected):
        literal("NaN", "Edm.Decimal")


def test_dates_are_bare_iso_in_utc() -> None:
    assert literal("2024-05-23T10:00:00+02:00", "Edm.DateTimeOffset") == "2024-05-23T08:00:00Z"
    assert literal("2024-05-23", "Edm.DateTimeOffset") == "2024-05-23T00:00:00Z"
    when = dt.datetime(2024, 5, 23, 8, 0, 0, 250000, tzinfo=dt.UTC)
    assert literal(when, "Edm.DateTimeOffset") == "2024-05-23T08:00:00.250Z"
    with pytest.raises(CreatioRejected, match="DateTimeOffset"):
        literal("yesterday", "Edm.DateTimeOffset")


def test_booleans() -> None:
    assert literal(True, "Edm.Boolean") == "true"
    assert literal("false", "Edm.Boolean") == "false"
    with pytest.raises(CreatioRejected):
        literal("maybe", "Edm.Boolean")


def test_lookups_are_filtered_by_navigation_path() -> None:
    # Creatio refuses the flat ``ContactId`` in $filter (contract 5.1)
    assert resolve_path(MD, CASE, "ContactId") == ("Contact/Id", "Edm.Guid")
    assert resolve_path(MD, CASE, "Contact") == ("Contact/Id", "Edm.Guid")
    assert resolve_path(MD, CASE, "Contact/Name") == ("Contact/Name", "Edm.String")
    assert resolve_path(MD, CASE, "Number") == ("Number", "Edm.String")


def test_unknown_columns_are_refused_with_the_known_ones() -> None:
    with pytest.raises(CreatioRejected) as caught:
        resolve_path(MD, CASE, "Numbr")
    assert "Numbr" in caught.value.message
    assert caught.value.hint is not None and "Number" in caught.value.hint
    with pytest.raises(CreatioRejected):
        resolve_path(MD, CASE, "Number eq 'x' or Id")


def test_filters_combine_typed_conditions() -> None:
    where = {
        "Number": "SR'1",
        "ContactId": GUID,
        "Priority": [1, 2],
        "CreatedOn": Condition("ge", "2024-01-01T00:00:00Z"),
        "Subject": Condition("contains", "a'b"),
    }
    assert build_filter(MD, CASE, where) == (
        f"Number eq 'SR''1' and Contact/Id eq {GUID.lower()} and (Priority eq 1 or Priority eq 2)"
        " and CreatedOn ge 2024-01-01T00:00:00Z and contains(Subject,'a''b')"
    )
    with pytest.raises(CreatioRejected, match="text columns"):
        build_filter(MD, CASE, {"Priority": Condition("contains", "1")})
    with pytest.raises(CreatioRejected, match="operator"):
        Condition("like", "x")


def test_query_values_cannot_end_the_parameter_or_the_url() -> None:
    text = query_string({"$filter": "Name eq 'a&b=c#d%e+f ü'", "$top": 2})
    assert text == "$filter=Name%20eq%20'a%26b%3Dc%23d%25e%2Bf%20%C3%BC'&$top=2"
