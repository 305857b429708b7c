"""Finding parents and records with typed, escaped literals, against the emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from creatio_attach.creatio import Condition, CreatioClient
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import CreatioRejected, ParentAmbiguous, ParentNotFound
from tests.creatio.conftest import request_log, seed

NASTY = [
    "O'Brien's case",
    "SR/2024/0001",
    "100% done",
    "#42 & more",
    "Заявка №7 – ünïcødé",
    "' or 1 eq 1",
    "x' or Number ne 'x",
]


def test_a_parent_value_with_quotes_slashes_percent_hash_and_unicode_finds_exactly_its_record(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    ids = {value: seed(emulator, "Case", Number=value) for value in NASTY}
    seed(emulator, "Case", Number="decoy")
    client = client_for(emulator)
    for value, case_id in ids.items():
        assert client.find_parent("Case", {"Number": value}) == case_id


@pytest.mark.parametrize("value", ["' or 1 eq 1", "nope' or '1' eq '1", "x') or (1 eq 1"])
def test_an_injection_attempt_finds_no_record(
    value: str, emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    seed(emulator, "Case", Number="SR1")
    seed(emulator, "Case", Number="SR2")
    client = client_for(emulator)
    with pytest.raises(ParentNotFound) as caught:
        client.find_parent("Case", {"Number": value})
    assert "Number=" in str(caught.value)


def test_several_matches_list_the_candidates(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    first = seed(emulator, "Case", Number="SR9", Subject="a")
    second = seed(emulator, "Case", Number="SR9", Subject="b")
    client = client_for(emulator)
    with pytest.raises(ParentAmbiguous) as caught:
        client.find_parent("Case", {"Number": "SR9"})
    assert sorted(caught.value.candidates) == sorted([first, second])
    assert first in str(caught.value) and second in str(caught.value)
    assert client.find_parent("Case", {"Number": "SR9", "Subject": "b"}) == second


def test_an_unknown_column_or_a_mistyped_value_is_refused_before_the_query(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    client = client_for(emulator)
    with pytest.raises(CreatioRejected, match="no column 'Numbr'"):
        client.find_parent("Case", {"Numbr": "SR1"})
    with pytest.raises(CreatioRejected, match="must be Guid"):
        client.find_parent("Case", {"Id": "SR1' or 1 eq 1"})
    with pytest.raises(CreatioRejected, match="no object named"):
        client.find_parent("Cases", {"Number": "SR1"})
    assert not [e for e in request_log(emulator) if e["path"].endswith("/Case")]


def test_lookups_numbers_and_date_ranges_are_queried_with_their_types(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    contact = seed(emulator, "Contact", Name="Ann Lee", Phone="+44 20 7946 0000")
    early = seed(
        emulator,
        "Call",
        CallerId="+44 20 7946 0000",
        ContactId=contact,
        StartDate="2024-05-23T08:00:00Z",
    )
    late = seed(
        emulator,
        "Call",
        CallerId="+44 20 7946 0000",
        ContactId=contact,
        StartDate="2024-05-23T18:00:00Z",
    )
    client = client_for(emulator)
    window = {
        "Contact": contact,
        "StartDate": Condition("ge", dt.datetime(2024, 5, 23, 7, tzinfo=dt.UTC)),
        "CallerId": Condition("contains", "7946"),
    }
    rows = client.find_records(
        "Call", window, select=("Id", "StartDate", "Contact"), order_by=("StartDate desc",)
    )
    assert [r["Id"] for r in rows] == [late, early]
    assert rows[0]["ContactId"] == contact
    only_early = client.find_records(
        "Call", {**window, "StartDate": Condition("lt", "2024-05-23T12:00:00Z")}
    )
    assert [r["Id"] for r in only_early] == [early]
    # ordered by Id when no order is given, so `top` takes a stable first row
    assert [r["Id"] for r in client.find_records("Call", {"ContactId": contact}, top=1)] == [
        min(early, late)
    ]


def test_create_record_writes_lookups_flat_and_is_idempotent(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    contact = seed(emulator, "Contact", Name="Bo")
    client = client_for(emulator)
    record_id = "0b0a2f3c-1d2e-4f50-8a9b-0c1d2e3f4a5b"
    values = {"Title": "Call with Bo", "Contact": contact, "StartDate": dt.datetime(2024, 1, 2, 3)}
    created = client.create_record("Activity", values, record_id=record_id)
    assert created["Id"] == record_id and created["ContactId"] == contact
    again = client.create_record("Activity", values, record_id=record_id)
    assert again["Id"] == record_id
    rows = client.find_records("Activity", {"Contact": contact}, select=("Id", "StartDate"))
    assert [r["Id"] for r in rows] == [record_id]
    assert rows[0]["StartDate"].startswith("2024-01-02T03:00:00")


def test_patch_record_updates_typed_columns(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    contact = seed(emulator, "Contact", Name="Cy")
    activity = seed(emulator, "Activity", Title="before")
    client = client_for(emulator)
    client.patch_record("Activity", activity, {"Title": "after", "Contact": contact})
    (row,) = client.find_records("Activity", {"Id": activity}, select=("Title", "ContactId"))
    assert (row["Title"], row["ContactId"]) == ("after", contact)
    with pytest.raises(CreatioRejected, match="no column 'Titel'"):
        client.patch_record("Activity", activity, {"Titel": "x"})
    patches = [e for e in request_log(emulator) if e["method"] == "PATCH"]
    assert [(e["status"], e["csrf_header"]) for e in patches] == [(204, True)]
