"""The OData ``/Data`` stream over HTTP with real files (contract 0 G, 2.3, 2.5)."""

from __future__ import annotations

import hashlib
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import CorpusFile, wait_for
from tests.emulator.helpers import Api, logged, odata_error_message, seed


def new_file(api: Api, emu: EmbeddedEmulator, name: str, **extra: object) -> str:
    case = seed(emu, "Case", [{"Number": "SR1"}])[0]
    row = api.create("CaseFile", {"Name": name, "CaseId": case["Id"], **extra})
    return str(row["Id"])


@pytest.mark.parametrize(
    "name", ["filetype-fixture.docx", "filetype-fixture.pdf", "filetype-fixture.mp3", "empty.txt"]
)
def test_real_file_round_trips_byte_identical(
    emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile], name: str
) -> None:
    api = Api(emulator)
    item = corpus_by_name[name]
    fid = new_file(api, emulator, name, Size=item.size, TotalSize=item.size)
    with item.path.open("rb") as fh:
        r = api.put_data("CaseFile", fid, fh)
    assert r.status_code == 200
    r = api.get(f"CaseFile({fid})/Data")
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == item.sha256
    row = api.get(f"CaseFile({fid})").json()
    assert row["Size"] == item.size and row["TotalSize"] == item.size
    files = requests.get(f"{emulator.url}/__emulator__/files", timeout=10).json()
    assert [(f["id"], f["sha256"], f["size"]) for f in files] == [(fid, item.sha256, item.size)]


def test_size_comes_from_bytes_received_total_size_kept(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = new_file(api, emulator, "a.bin", Size=999, TotalSize=999)
    assert api.put_data("CaseFile", fid, b"12345").status_code == 200
    row = api.get(f"CaseFile({fid})").json()
    assert (row["Size"], row["TotalSize"]) == (5, 999)
    fid2 = new_file(api, emulator, "b.bin")
    api.put_data("CaseFile", fid2, b"1234")
    row = api.get(f"CaseFile({fid2})").json()
    assert (row["Size"], row["TotalSize"]) == (4, 4)


def test_chunked_transfer_encoding_body_is_stored(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = new_file(api, emulator, "gen.bin")
    parts = [bytes([n]) * 70_000 for n in range(5)]
    assert api.put_data("CaseFile", fid, iter(parts)).status_code == 200
    assert api.get(f"CaseFile({fid})/Data").content == b"".join(parts)


def test_second_put_replaces_content(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = new_file(api, emulator, "a.txt")
    api.put_data("CaseFile", fid, b"first version")
    api.put_data("CaseFile", fid, b"v2")
    assert api.get(f"CaseFile({fid})/Data").content == b"v2"


def test_delete_data_clears_content_delete_record_removes_blob(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = new_file(api, emulator, "a.txt")
    api.put_data("CaseFile", fid, b"hello")
    r = api.delete(f"CaseFile({fid})/Data")
    assert r.status_code == 204
    assert api.get(f"CaseFile({fid})/Data").content == b""
    assert api.get(f"CaseFile({fid})").json()["Size"] == 0
    api.put_data("CaseFile", fid, b"again")
    assert emulator.store.content_path("CaseFile", fid) is not None
    blob = emulator.store.content_path("CaseFile", fid)
    assert api.delete(f"CaseFile({fid})").status_code == 204
    assert blob is not None and not blob.exists()


def test_put_to_a_missing_record_is_404(emulator: EmbeddedEmulator) -> None:
    r = Api(emulator).put_data("CaseFile", str(uuid.uuid4()), b"x")
    assert r.status_code == 404 and odata_error_message(r)


@pytest.mark.parametrize(
    "name", ["filetype-fixture.docx", "filetype-fixture.xlsx", "filetype-fixture.pptx"]
)
def test_multipart_put_of_office_files_is_400_incorrect_request(
    emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile], name: str
) -> None:
    api = Api(emulator)
    fid = new_file(api, emulator, name)
    with corpus_by_name[name].path.open("rb") as fh:
        r = api.session.put(
            f"{api.odata}/CaseFile({fid})/Data", files={"file": (name, fh)}, timeout=30
        )
    assert r.status_code == 400
    assert odata_error_message(r) == "Incorrect Request"
    assert emulator.store.content_path("CaseFile", fid) is None


def test_multipart_put_of_other_files_stores_the_raw_multipart_body(
    emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile]
) -> None:
    api = Api(emulator)
    item = corpus_by_name["filetype-fixture.pdf"]
    fid = new_file(api, emulator, item.name)
    with item.path.open("rb") as fh:
        r = api.session.put(
            f"{api.odata}/CaseFile({fid})/Data", files={"file": (item.name, fh)}, timeout=30
        )
    assert r.status_code == 200
    stored = api.get(f"CaseFile({fid})/Data").content
    assert hashlib.sha256(stored).hexdigest() != item.sha256  # the corrupted-attachment case
    assert item.path.read_bytes() in stored and stored.startswith(b"--")
    assert api.get(f"CaseFile({fid})").json()["Size"] == len(stored)


def test_parallel_uploads_from_threads_all_arrive_intact(
    emulator: EmbeddedEmulator, corpus: list[CorpusFile]
) -> None:
    api = Api(emulator)
    items = [c for c in corpus if 0 < c.size < 3_000_000][:12]
    ids = {c.name: new_file(api, emulator, c.name) for c in items}

    def upload(item: CorpusFile) -> int:
        worker = Api(emulator)  # one session per thread, like separate clients
        with item.path.open("rb") as fh:
            return worker.put_data("CaseFile", ids[item.name], fh).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(upload, items)) == [200] * len(items)
    stored = {
        f["name"]: f["sha256"]
        for f in requests.get(f"{emulator.url}/__emulator__/files", timeout=10).json()
    }
    assert stored == {c.name: c.sha256 for c in items}


def test_records_and_content_survive_a_restart_on_the_same_data_dir(
    emulator_factory,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    data_dir = tmp_path / "kept"
    first = emulator_factory(data_dir=data_dir)
    api = Api(first)
    fid = new_file(api, first, "keep.txt")
    api.put_data("CaseFile", fid.upper(), b"kept bytes")
    first.stop()
    second = emulator_factory(data_dir=data_dir)
    api2 = Api(second)
    assert api2.get(f"CaseFile({fid})").json()["Name"] == "keep.txt"
    assert api2.get(f"CaseFile({fid})/Data").content == b"kept bytes"


def test_put_above_max_file_bytes_is_413(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory(max_file_bytes=100)
    api = Api(emu)
    fid = new_file(api, emu, "a.bin")
    r = api.put_data("CaseFile", fid, b"x" * 101)
    assert r.status_code == 413 and odata_error_message(r)
    assert emu.store.content_path("CaseFile", fid) is None
    assert api.put_data("CaseFile", fid, b"x" * 100).status_code == 200


def test_a_body_cut_off_midway_leaves_no_content_and_no_temp_file(
    emulator: EmbeddedEmulator,
) -> None:
    api = Api(emulator)
    fid = new_file(api, emulator, "cut.bin")
    cookies = "; ".join(f"{k}={v}" for k, v in api.session.cookies.items())
    host, port = emulator.url.removeprefix("http://").split(":")
    head = (
        f"PUT /0/odata/CaseFile({fid})/Data HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Cookie: {cookies}\r\nBPMCSRF: {api.session.cookies['BPMCSRF']}\r\n"
        "ForceUseSession: true\r\nContent-Type: application/octet-stream\r\n"
        "Content-Length: 1000000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"x" * 300_000)
    wait_for(lambda: logged(emulator, "PUT", fid), what="the cut-off PUT has finished")
    assert not any(emulator.store.tmp_dir.iterdir())
    assert emulator.store.content_path("CaseFile", fid) is None
    assert api.put_data("CaseFile", fid, b"whole").status_code == 200
    assert api.get(f"CaseFile({fid})/Data").content == b"whole"
