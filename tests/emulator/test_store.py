"""The emulator's store: typed SQLite records and content blobs under data_dir."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from creatio_attach.emulator.schemas import FILE_TYPE_FILE, build_schemas
from creatio_attach.emulator.store import BadValue, DuplicateId, Store, UnknownColumn

CASE_ID = "5b3bd1a6-43b5-4fa8-8d2f-1b0b6b0c2f11"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "data", build_schemas(["UsrRealty"]))
    yield s  # type: ignore[misc]
    s.close()


def test_insert_generates_id_timestamps_and_defaults(store: Store) -> None:
    row = store.insert("CaseFile", {"Name": "a.pdf"})
    assert len(row["Id"]) == 36 and row["Id"] == row["Id"].lower()
    assert row["CreatedOn"].endswith("Z") and row["ModifiedOn"] == row["CreatedOn"]
    assert row["TypeId"] == FILE_TYPE_FILE
    assert row["FileGroupId"] == "efbf3a0d-d780-465a-8e4b-8c0765197cfb"
    assert row["CaseId"] == "00000000-0000-0000-0000-000000000000"
    assert row["Notes"] == "" and row["Version"] == 1


def test_client_id_is_honoured_lowercased_and_never_overwritten(store: Store) -> None:
    store.insert("Case", {"Id": CASE_ID.upper(), "Number": "SR1"})
    assert store.get("Case", CASE_ID)["Number"] == "SR1"  # type: ignore[index]
    with pytest.raises(DuplicateId):
        store.insert("Case", {"Id": CASE_ID, "Number": "SR2"})
    assert store.get("Case", CASE_ID)["Number"] == "SR1"  # type: ignore[index]


def test_unknown_column_and_bad_values_are_refused(store: Store) -> None:
    with pytest.raises(UnknownColumn):
        store.insert("Case", {"Nope": 1})
    with pytest.raises(UnknownColumn):
        store.insert("CaseFile", {"Case": CASE_ID})  # navigation name, not the flat CaseId
    with pytest.raises(BadValue):
        store.insert("CaseFile", {"CaseId": "not-a-guid"})
    with pytest.raises(BadValue):
        store.insert("CaseFile", {"Size": "many"})
    with pytest.raises(BadValue):
        store.insert("ContactCommunication", {"Primary": "yes"})


def test_records_and_content_survive_reopening_the_data_dir(tmp_path: Path) -> None:
    schemas = build_schemas(["UsrRealty"])
    first = Store(tmp_path / "d", schemas)
    realty = first.insert("UsrRealty", {"Name": "Flat 3"})
    f = first.insert("UsrRealtyFile", {"Name": "plan.pdf", "UsrRealtyId": realty["Id"]})
    temp = first.new_temp_path()
    temp.write_bytes(b"%PDF-1.4 plan")
    assert first.commit_content("UsrRealtyFile", f["Id"], temp, 13, None)
    first.close()
    again = Store(tmp_path / "d", schemas)
    row = again.get("UsrRealtyFile", f["Id"])
    assert row is not None and row["UsrRealtyId"] == realty["Id"] and row["Size"] == 13
    path = again.content_path("UsrRealtyFile", f["Id"])
    assert path is not None and path.read_bytes() == b"%PDF-1.4 plan"
    again.close()


def test_tables_are_typed_with_indexed_lookups(store: Store) -> None:
    db = sqlite3.connect(store.data_dir / "emulator.sqlite3")
    cols = {r[1]: r[2] for r in db.execute('PRAGMA table_info("CallFile")')}
    assert cols["Size"] == "INTEGER" and cols["CallId"] == "TEXT" and cols["Name"] == "TEXT"
    indexes = [r[1] for r in db.execute('PRAGMA index_list("CallFile")')]
    assert "ix_CallFile_CallId" in indexes
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_commit_content_sets_size_from_bytes_and_keeps_total_size(store: Store) -> None:
    f = store.insert("CaseFile", {"Name": "a.bin", "Size": 999, "TotalSize": 999})
    temp = store.new_temp_path()
    temp.write_bytes(b"12345")
    store.commit_content("CaseFile", f["Id"], temp, 5, hashlib.sha256(b"12345").hexdigest())
    row = store.get("CaseFile", f["Id"])
    assert row is not None and row["Size"] == 5 and row["TotalSize"] == 999
    assert not temp.exists()


def test_commit_content_for_a_vanished_record_removes_the_temp_file(store: Store) -> None:
    temp = store.new_temp_path()
    temp.write_bytes(b"x")
    assert not store.commit_content("CaseFile", CASE_ID, temp, 1, None)
    assert not temp.exists()


def test_delete_removes_blob_and_linked_sysfile_rows(store: Store) -> None:
    case = store.insert("Case", {"Number": "SR9"})
    sys_file = store.insert(
        "SysFile", {"Name": "x.txt", "RecordSchemaName": "Case", "RecordId": case["Id"]}
    )
    temp = store.new_temp_path()
    temp.write_bytes(b"abc")
    store.commit_content("SysFile", sys_file["Id"], temp, 3, None)
    blob = store.content_path("SysFile", sys_file["Id"])
    assert blob is not None and blob.exists()
    assert store.delete("Case", case["Id"])
    assert store.get("SysFile", sys_file["Id"]) is None
    assert not blob.exists()
    assert not store.delete("Case", case["Id"])


def test_chunked_upload_state_completes_when_last_byte_arrives(store: Store) -> None:
    f = store.insert("CaseFile", {"Name": "c.bin"})
    part = store.start_upload("CaseFile", f["Id"], 6)
    part.write_bytes(b"abc")
    assert not store.record_progress("CaseFile", f["Id"], 3)
    assert store.upload_state("CaseFile", f["Id"]) == (3, 6, False)
    assert store.content_path("CaseFile", f["Id"]) is None
    with part.open("ab") as fh:
        fh.write(b"def")
    assert store.record_progress("CaseFile", f["Id"], 6)
    path = store.content_path("CaseFile", f["Id"])
    assert path is not None and path.read_bytes() == b"abcdef"
    assert store.get("CaseFile", f["Id"])["Size"] == 6  # type: ignore[index]


def test_files_summary_reports_sha256_and_parent(store: Store) -> None:
    case = store.insert("Case", {"Number": "SR1"})
    f = store.insert("CaseFile", {"Name": "a.txt", "CaseId": case["Id"]})
    empty = store.insert(
        "SysFile", {"Name": "b.txt", "RecordSchemaName": "Case", "RecordId": case["Id"]}
    )
    temp = store.new_temp_path()
    temp.write_bytes(b"hello")
    store.commit_content("CaseFile", f["Id"], temp, 5, None)
    summary = {s["id"]: s for s in store.files_summary()}
    assert summary[f["Id"]]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert summary[f["Id"]]["size"] == 5
    assert (summary[f["Id"]]["parent_schema"], summary[f["Id"]]["parent_id"]) == (
        "Case",
        case["Id"],
    )
    assert (
        summary[empty["Id"]]["sha256"] is None and summary[empty["Id"]]["parent_schema"] == "Case"
    )


def test_reset_deletes_records_and_blobs_but_reseeds_lookups(store: Store) -> None:
    f = store.insert("CaseFile", {"Name": "a.txt"})
    temp = store.new_temp_path()
    temp.write_bytes(b"x")
    store.commit_content("CaseFile", f["Id"], temp, 1, None)
    store.reset()
    assert store.get("CaseFile", f["Id"]) is None
    assert store.files_summary() == []
    assert store.get("FileType", FILE_TYPE_FILE) is not None


def test_list_rows_is_newest_first(store: Store) -> None:
    for n in range(3):
        store.insert("Case", {"Number": f"SR{n}", "CreatedOn": f"2024-01-0{n + 1}T00:00:00Z"})
    assert [r["Number"] for r in store.list_rows("Case")] == ["SR2", "SR1", "SR0"]
