"""FileApiService/UploadFile chunks and FileService downloads over HTTP (contract 4, 8.6)."""

from __future__ import annotations

import hashlib
import json
import socket
import uuid
from typing import Any
from urllib.parse import quote, urlencode

import requests

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import CorpusFile, wait_for
from tests.emulator.helpers import Api, logged, seed

ACTIVITY_FILE_UID = "080C9917-7EC9-42E5-86FF-75A683D4F124"
CALL_FILE_UID = "5956808f-648a-428e-be89-f2dd71f98166"


def params(fid: str, total: int, **extra: Any) -> dict[str, Any]:
    base = {
        "fileId": fid,
        "totalFileLength": total,
        "mimeType": "application/octet-stream",
        "fileName": "f.bin",
        "columnName": "Data",
        "entitySchemaName": "ActivityFile",
    }
    base.update(extra)
    return base


def chunk(
    api: Api, data: bytes, start: int, total: int, fid: str, **extra: Any
) -> requests.Response:
    end = start + len(data) - 1
    return api.upload_chunk(
        data,
        headers={"Content-Range": f"bytes {start}-{end}/{total}"},
        **params(fid, total, **extra),
    )


def failure(r: requests.Response) -> str:
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is False
    assert set(body["errorInfo"]) == {"errorCode", "message", "stackTrace"}
    assert body["errorInfo"]["message"]
    code: str = body["errorInfo"]["errorCode"]
    return code


def activity(emu: EmbeddedEmulator) -> str:
    return str(seed(emu, "Activity", [{"Title": "Call"}])[0]["Id"])


def test_chunks_create_the_record_and_complete_on_the_last_byte(
    emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile]
) -> None:
    api = Api(emulator)
    item = corpus_by_name["filetype-fixture.mp3"]
    data = item.path.read_bytes()
    act = activity(emulator)
    fid = str(uuid.uuid4())
    extra = {"fileName": item.name, "parentColumnName": "Activity", "parentColumnValue": act}
    step = 64 * 1024
    for start in range(0, len(data), step):
        r = chunk(api, data[start : start + step], start, len(data), fid, **extra)
        assert r.status_code == 200 and r.json() == {"success": True}
        done = start + step >= len(data)
        assert (emulator.store.content_path("ActivityFile", fid) is not None) == done
    row = api.get(f"ActivityFile({fid})").json()
    assert (row["Name"], row["ActivityId"], row["Size"]) == (item.name, act, item.size)
    assert row["TypeId"] == "529bc2f8-0ee0-df11-971b-001d60e938c6"
    r = api.session.get(f"{api.ws}/rest/FileService/Download/ActivityFile/{fid}", timeout=10)
    assert hashlib.sha256(r.content).hexdigest() == item.sha256
    assert r.headers["Content-Disposition"] == f"attachment; filename={quote(item.name)}"


def test_single_chunk_for_a_record_created_by_odata_without_mime_type(
    emulator: EmbeddedEmulator,
) -> None:
    api = Api(emulator)
    act = activity(emulator)
    row = api.create(
        "ActivityFile", {"Name": "доклад 1.txt", "ActivityId": act, "Size": 5, "TotalSize": 5}
    )
    p = params(
        row["Id"], 5, fileName="доклад 1.txt", parentColumnName="Activity", parentColumnValue=act
    )
    del p["mimeType"]
    r = api.upload_chunk(
        b"hello", headers={"Content-Range": "bytes 0-4/5", "Content-Type": "text/plain"}, **p
    )
    assert r.json() == {"success": True}
    r = api.session.get(f"{api.ws}/rest/FileService/Download/ActivityFile/{row['Id']}", timeout=10)
    assert r.content == b"hello"
    assert r.headers["Content-Disposition"] == "attachment; filename=" + quote("доклад 1.txt")


def test_gap_overlap_and_length_mismatch_are_rejected(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = str(uuid.uuid4())
    assert chunk(api, b"abcd", 0, 10, fid).json() == {"success": True}
    assert failure(chunk(api, b"ghij", 6, 10, fid)) == "ChunkGap"
    assert failure(chunk(api, b"cdef", 2, 10, fid)) == "ChunkOverlap"
    r = api.upload_chunk(b"efg", headers={"Content-Range": "bytes 4-7/10"}, **params(fid, 10))
    assert failure(r) == "ChunkLengthMismatch"
    r = api.upload_chunk(b"efghi", headers={"Content-Range": "bytes 4-7/10"}, **params(fid, 10))
    assert failure(r) == "ChunkLengthMismatch"
    assert failure(chunk(api, b"efgh", 4, 11, fid)) == "TotalLengthMismatch"
    r = api.upload_chunk(b"efgh", headers={"Content-Range": "bytes 4-7/12"}, **params(fid, 10))
    assert failure(r) == "TotalLengthMismatch"
    # after the rejections the upload continues exactly where it was
    assert chunk(api, b"efghij", 4, 10, fid).json() == {"success": True}
    assert api.get(f"ActivityFile({fid})/Data").content == b"abcdefghij"
    assert failure(chunk(api, b"k", 9, 10, fid)) == "ChunkOverlap"


def test_chunk_at_zero_restarts_the_content(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = str(uuid.uuid4())
    chunk(api, b"old-content", 0, 11, fid)
    assert api.get(f"ActivityFile({fid})/Data").content == b"old-content"
    assert chunk(api, b"new", 0, 6, fid).json() == {"success": True}
    assert emulator.store.content_path("ActivityFile", fid) is None
    assert chunk(api, b"-v2", 3, 6, fid).json() == {"success": True}
    assert api.get(f"ActivityFile({fid})/Data").content == b"new-v2"
    assert api.get(f"ActivityFile({fid})").json()["Size"] == 6


def test_bad_parameters_are_rejected(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = str(uuid.uuid4())
    assert failure(chunk(api, b"x", 0, 1, fid, entitySchemaName="Nope")) == "EntitySchemaNotFound"
    assert failure(chunk(api, b"x", 0, 1, fid, entitySchemaName="Case")) == "EntitySchemaNotFound"
    assert failure(chunk(api, b"x", 0, 1, "nope")) == "InvalidFileId"
    assert failure(api.upload_chunk(b"x", **params(fid, 1))) == "InvalidContentRange"
    r = chunk(
        api, b"x", 0, 1, fid, parentColumnName="ActivityId", parentColumnValue=str(uuid.uuid4())
    )
    assert failure(r) == "ColumnNotFound"
    r = chunk(
        api, b"x", 0, 1, fid, parentColumnName="Activity", parentColumnValue=str(uuid.uuid4())
    )
    assert failure(r) == "ParentRecordNotFound"
    assert failure(chunk(api, b"x", 5, 10, fid)) == "ChunkGap"
    assert emulator.store.get("ActivityFile", fid) is None


def test_max_file_bytes_is_enforced(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory(max_file_bytes=100)
    api = Api(emu)
    assert failure(chunk(api, b"x" * 10, 0, 101, str(uuid.uuid4()))) == "FileSizeLimitExceeded"
    assert chunk(api, b"x" * 100, 0, 100, str(uuid.uuid4())).json() == {"success": True}


def test_sysfile_upload_with_additional_params_and_record_id(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    case = seed(emulator, "Case", [{"Number": "SR1"}])[0]
    fid1, fid2 = str(uuid.uuid4()), str(uuid.uuid4())
    extra = {
        "entitySchemaName": "SysFile",
        "AdditionalParams": json.dumps({"RecordSchemaName": "Case", "RecordId": case["Id"]}),
    }
    assert chunk(api, b"one", 0, 3, fid1, **extra).json() == {"success": True}
    extra = {
        "entitySchemaName": "SysFile",
        "parentColumnName": "RecordId",
        "parentColumnValue": case["Id"],
        "AdditionalParams": json.dumps({"RecordSchemaName": "Case"}),
    }
    assert chunk(api, b"two", 0, 3, fid2, **extra).json() == {"success": True}
    r = api.query(
        "SysFile",
        filter=f"RecordSchemaName eq 'Case' and RecordId eq {case['Id']}",
        orderby="Name",
        select="Id",
    )
    assert sorted(v["Id"] for v in r.json()["value"]) == sorted([fid1, fid2])


def test_empty_file_completes_at_once(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = str(uuid.uuid4())
    r = api.upload_chunk(b"", **params(fid, 0, fileName="empty.txt"))
    assert r.json() == {"success": True}
    assert emulator.store.content_path("ActivityFile", fid) is not None
    assert api.get(f"ActivityFile({fid})").json()["Size"] == 0


def test_getfile_by_schema_uid(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    fid = str(uuid.uuid4())
    chunk(api, b"ring ring", 0, 9, fid, fileName="call.wav")
    r = api.session.get(f"{api.ws}/rest/FileService/GetFile/{ACTIVITY_FILE_UID}/{fid}", timeout=10)
    assert r.status_code == 200 and r.content == b"ring ring"
    assert r.headers["Content-Disposition"] == "attachment; filename=call.wav"
    call_fid = str(uuid.uuid4())
    chunk(api, b"rec", 0, 3, call_fid, entitySchemaName="CallFile", fileName="rec.mp3")
    r = api.session.get(f"{api.ws}/rest/FileService/GetFile/{CALL_FILE_UID}/{call_fid}", timeout=10)
    assert r.content == b"rec"


def test_download_errors(emulator: EmbeddedEmulator) -> None:
    api = Api(emulator)
    r = api.session.get(
        f"{api.ws}/rest/FileService/Download/ActivityFile/{uuid.uuid4()}", timeout=10
    )
    assert r.status_code == 404 and r.json()["Message"] == "An error has occurred."
    r = api.session.get(
        f"{api.ws}/rest/FileService/GetFile/{uuid.uuid4()}/{uuid.uuid4()}", timeout=10
    )
    assert r.status_code == 404


def test_a_chunk_cut_off_midway_is_dropped_and_the_upload_resumes(
    emulator: EmbeddedEmulator,
) -> None:
    api = Api(emulator)
    fid = str(uuid.uuid4())
    assert chunk(api, b"a" * 1000, 0, 3000, fid).json() == {"success": True}
    cookies = "; ".join(f"{k}={v}" for k, v in api.session.cookies.items())
    host, port = emulator.url.removeprefix("http://").split(":")
    query = urlencode(params(fid, 3000))
    head = (
        f"POST /0/rest/FileApiService/UploadFile?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Cookie: {cookies}\r\nBPMCSRF: {api.session.cookies['BPMCSRF']}\r\n"
        "ForceUseSession: true\r\nContent-Range: bytes 1000-1999/3000\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"b" * 400)
    wait_for(lambda: len(logged(emulator, "POST", "UploadFile")) == 2, what="cut-off chunk done")
    assert emulator.store.partial_path("ActivityFile", fid).stat().st_size == 1000
    assert failure(chunk(api, b"c" * 1000, 2000, 3000, fid)) == "ChunkGap"
    assert chunk(api, b"b" * 1000, 1000, 3000, fid).json() == {"success": True}
    assert chunk(api, b"c" * 1000, 2000, 3000, fid).json() == {"success": True}
    assert api.get(f"ActivityFile({fid})/Data").content == b"a" * 1000 + b"b" * 1000 + b"c" * 1000


def test_netcore_serves_fileapi_at_root_and_under_0(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    emu = emulator_factory(runtime="netcore")
    api = Api(emu)
    assert api.ws == emu.url
    fid = str(uuid.uuid4())
    assert chunk(api, b"core", 0, 4, fid).json() == {"success": True}
    for base in (emu.url, f"{emu.url}/0"):
        r = api.session.get(f"{base}/rest/FileService/Download/ActivityFile/{fid}", timeout=10)
        assert r.status_code == 200 and r.content == b"core"
