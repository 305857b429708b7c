"""Uploads against the emulator over real HTTP: the failures users met, each as a test."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from creatio_attach.creatio import CreatioClient, Target
from creatio_attach.creatio.transport import body_headers
from creatio_attach.creatio.upload import BLOCK, RangeReader
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import CreatioRejected, FileGone, FileUnreadable
from tests.conftest import CorpusFile, wait_for
from tests.creatio.conftest import request_log, seed, stored_files

OFFICE = ("filetype-fixture.docx", "filetype-fixture.xlsx", "filetype-fixture.pptx")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("runtime", ["netframework", "netcore"])
def test_office_files_upload_and_download_byte_identical_without_multipart(
    runtime: str,
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
    tmp_path: Path,
) -> None:
    emu = emulator_factory(runtime=runtime)
    case_id = seed(emu, "Case", Number="SR00001234", Subject="Office files")
    client = client_for(emu)
    for name in OFFICE:
        item = corpus_by_name[name]
        result = client.upload(
            item.path, Target.for_file_object("CaseFile", case_id), mime=item.expected_mime
        )
        assert (result.bytes, result.sha256, result.chunked) == (item.size, item.sha256, False)
        back = tmp_path / f"back-{name}"
        assert client.download("CaseFile", result.record_id, back) == item.size
        assert sha256(back) == item.sha256
    assert client.runtime == runtime
    log = request_log(emu)
    assert not [e for e in log if "multipart" in (e["content_type"] or "")]
    puts = [e for e in log if e["method"] == "PUT"]
    assert len(puts) == 3
    assert {e["content_type"] for e in puts} == {"application/octet-stream"}
    assert {f["sha256"] for f in stored_files(emu)} == {corpus_by_name[n].sha256 for n in OFFICE}


def test_every_write_carries_bpmcsrf(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR1")
    client = client_for(emulator, chunk_threshold=8_000, chunk_size=4_000)
    item = corpus_by_name["filetype-fixture.pdf"]  # 7945 bytes: PUT
    client.upload(item.path, Target.for_file_object("CaseFile", case_id))
    big = corpus_by_name["filetype-fixture.docx"]  # chunked through FileApiService
    result = client.upload(big.path, Target.for_file_object("CaseFile", case_id))
    assert result.chunked
    client.delete_record("CaseFile", result.record_id)
    client.close()
    # an entry is written once its answer has gone out, so the last calls may be logged in
    # either order: wait until both the DELETE and the logout show up
    wait_for(
        lambda: (
            {"DELETE", "Logout"}
            <= {e["method"] for e in request_log(emulator)}
            | {e["path"].rsplit("/", 1)[-1] for e in request_log(emulator)}
        ),
        what="the delete and the logout",
    )
    writes = [e for e in request_log(emulator) if e["method"] in ("POST", "PUT", "PATCH", "DELETE")]
    data_writes = [e for e in writes if not e["path"].endswith("/Login")]
    assert {e["method"] for e in data_writes} == {"POST", "PUT", "DELETE"}
    assert any(e["path"].endswith("/Logout") for e in data_writes)
    assert all(e["csrf_header"] for e in data_writes), data_writes
    assert all(e["status"] < 400 for e in writes)


def test_chunked_upload_goes_through_file_api_with_the_mime_type(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR2")
    client = client_for(emulator, chunk_threshold=4_000, chunk_size=2_048, verify="download")
    item = corpus_by_name["filetype-fixture.mp3"]
    sent: list[int] = []
    name = 'Запись звонка; №1 "100%".mp3'  # cannot travel raw in Content-Disposition
    result = client.upload(
        item.path,
        Target.for_file_object("CaseFile", case_id),
        name=name,
        mime="audio/mpeg",
        progress=sent.append,
    )
    assert result.chunked and result.sha256 == item.sha256 and sum(sent) == item.size
    chunks = [e for e in request_log(emulator) if "FileApiService/UploadFile" in e["path"]]
    assert len(chunks) == -(-item.size // 2_048)
    assert {e["content_type"] for e in chunks} == {"audio/mpeg"}
    assert "parentColumnName=Case&" in chunks[0]["query"]
    (stored,) = stored_files(emulator)
    assert (stored["id"], stored["sha256"], stored["size"], stored["name"]) == (
        result.record_id,
        item.sha256,
        item.size,
        name,
    )


@pytest.mark.parametrize("chunked", [False, True])
def test_audio_goes_into_a_custom_sections_file_object_and_into_sysfile(
    chunked: bool,
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    emu = emulator_factory(custom_schemas=("UsrRealty",))
    realty_id = seed(emu, "UsrRealty", Name="Flat 12, Baker St")
    threshold = 1_000 if chunked else 10**9
    client = client_for(emu, chunk_threshold=threshold, chunk_size=16_384)
    audio = corpus_by_name["filetype-fixture.wav"]
    into_file_object = client.upload(
        audio.path, Target.for_file_object("UsrRealtyFile", realty_id), mime="audio/wav"
    )
    into_sys_file = client.upload(
        audio.path,
        Target.for_file_object("SysFile", realty_id, parent_schema="UsrRealty"),
        mime="audio/wav",
    )
    files = {f["id"]: f for f in stored_files(emu)}
    for result, entity in ((into_file_object, "UsrRealtyFile"), (into_sys_file, "SysFile")):
        stored = files[result.record_id]
        assert stored["entity"] == entity and stored["sha256"] == audio.sha256
        assert (stored["parent_schema"], stored["parent_id"]) == ("UsrRealty", realty_id)
        assert result.chunked is chunked
    listed = client.list_attachments("UsrRealty", realty_id)
    assert {(a.object, a.id, a.size) for a in listed} == {
        ("UsrRealtyFile", into_file_object.record_id, audio.size),
        ("SysFile", into_sys_file.record_id, audio.size),
    }


def test_files_of_a_case_are_listed_by_its_id_in_pages(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR3")
    other_id = seed(emulator, "Case", Number="SR4")
    client = client_for(emulator)
    item = corpus_by_name["filetype-fixture.png"]
    mine = [
        client.upload(item.path, Target.for_file_object("CaseFile", case_id), name=f"p{i}.png")
        for i in range(5)
    ]
    client.upload(item.path, Target.for_file_object("CaseFile", other_id))
    sys_file = client.upload(
        item.path, Target.for_file_object("SysFile", case_id, parent_schema="Case")
    )
    listed = client.list_attachments("Case", case_id, page_size=2)
    assert [a.id for a in listed] == [r.record_id for r in mine] + [sys_file.record_id]
    assert [a.name for a in listed[:5]] == [f"p{i}.png" for i in range(5)]
    assert all(a.size == item.size and a.created_on for a in listed)
    queries = [e["query"] for e in request_log(emulator) if e["path"].endswith("/CaseFile")]
    listing = [q for q in queries if "Case/Id" in q]
    assert len(listing) == 3  # pages of 2, 2 and 1
    assert all("$orderby=CreatedOn,Id" in q and "$top=2" in q for q in listing)
    assert not [q for q in queries if "CaseId" in q]


def test_a_download_that_fails_leaves_no_file(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient], tmp_path: Path
) -> None:
    client = client_for(emulator)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with pytest.raises(CreatioRejected) as caught:
        client.download("CaseFile", str(uuid.uuid4()), downloads / "out.bin")
    assert caught.value.status == 404
    assert list(downloads.iterdir()) == []


def test_the_same_record_id_never_makes_a_second_record(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR5")
    client = client_for(emulator)
    item = corpus_by_name["filetype-fixture.jpg"]
    record_id = str(uuid.uuid4())
    target = Target.for_file_object("CaseFile", case_id)
    assert client.record_exists("CaseFile", record_id) is None
    first = client.upload(item.path, target, record_id=record_id)
    again = client.upload(item.path, target, record_id=record_id.upper())
    assert first.record_id == again.record_id == record_id
    existing = client.record_exists("CaseFile", record_id)
    assert existing is not None and existing["Size"] == item.size
    (stored,) = stored_files(emulator)
    assert stored["sha256"] == item.sha256


def test_a_refused_content_upload_leaves_no_record(
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    emu = emulator_factory(max_request_bytes=10_000)
    case_id = seed(emu, "Case", Number="SR6")
    client = client_for(emu)  # threshold 8 MiB: one PUT, larger than the server allows
    item = corpus_by_name["filetype-fixture.docx"]
    with pytest.raises(CreatioRejected) as caught:
        client.upload(item.path, Target.for_file_object("CaseFile", case_id))
    assert caught.value.status == 413 and "chunk_threshold" in str(caught.value)
    assert stored_files(emu) == []
    wait_for(lambda: request_log(emu)[-1]["method"] == "DELETE", what="the record's deletion")


def test_a_missing_file_is_reported_before_anything_is_created(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient], tmp_path: Path
) -> None:
    case_id = seed(emulator, "Case", Number="SR7")
    client = client_for(emulator)
    with pytest.raises(FileGone):
        client.upload(tmp_path / "gone.pdf", Target.for_file_object("CaseFile", case_id))
    assert not [e for e in request_log(emulator) if e["method"] == "POST" and "odata" in e["path"]]


def test_unknown_file_object_or_parent_column_is_refused_before_any_write(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR8")
    client = client_for(emulator)
    item = corpus_by_name["filetype-fixture.gif"]
    with pytest.raises(CreatioRejected, match="no object named 'CasesFile'"):
        client.upload(item.path, Target.for_file_object("CasesFile", case_id))
    bad_column = Target("CaseFile", "Case", case_id, parent_column="TicketId")
    with pytest.raises(CreatioRejected, match="no parent column TicketId"):
        client.upload(item.path, bad_column)
    assert not [e for e in request_log(emulator) if e["method"] != "GET" and "odata" in e["path"]]


def test_a_file_that_shrinks_while_uploading_fails_and_leaves_no_record(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
    tmp_path: Path,
) -> None:
    case_id = seed(emulator, "Case", Number="SR9")
    client = client_for(emulator)
    source = corpus_by_name["wavefile-16bit-8kHz-stereo.wav"]  # 448104 bytes: several blocks
    growing = tmp_path / "being-written.wav"
    growing.write_bytes(source.path.read_bytes())

    def truncate(_: int) -> None:  # another program rewrites the file mid-upload
        with growing.open("r+b") as f:
            f.truncate(1000)

    with pytest.raises(FileUnreadable, match="got shorter"):
        client.upload(growing, Target.for_file_object("CaseFile", case_id), progress=truncate)
    assert stored_files(emulator) == []


class _Proxy(http.server.ThreadingHTTPServer):
    """A forwarding HTTP proxy on 127.0.0.1 that remembers what passed through it."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[tuple[str, str]] = []
        self.thread = threading.Thread(target=self.serve_forever, name="proxy", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Proxy

    def log_message(self, *args: object) -> None:
        pass

    def _forward(self) -> None:
        target = urlsplit(self.path)  # a proxy is sent the absolute URL
        self.server.seen.append((self.command, target.path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hop = {"proxy-connection", "connection", "keep-alive", "transfer-encoding"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
        upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path, body=body or None, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in hop | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward


@pytest.fixture
def proxy() -> Iterator[_Proxy]:
    server = _Proxy()
    yield server
    server.stop()


def test_a_proxy_from_the_environment_is_read_once_when_the_client_starts(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
    proxy: _Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    item = corpus_by_name["filetype-fixture.docx"]
    case_id = seed(emulator, "Case", Number="SR00000077")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    client = client_for(emulator)
    # changed after the start: not read again (the session took its proxies when it was made)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    result = client.upload(item.path, Target.for_file_object("CaseFile", case_id))
    assert result.sha256 == item.sha256
    methods = [method for method, _ in proxy.seen]
    assert methods.count("PUT") == 1 and "POST" in methods and "GET" in methods
    assert any(path.endswith("/Data") for _, path in proxy.seen)

    # NO_PROXY naming the site: the proxy is not used at all
    before = len(proxy.seen)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    direct = client_for(emulator)
    assert direct.upload(item.path, Target.for_file_object("CaseFile", case_id)).bytes == item.size
    assert len(proxy.seen) == before


def test_the_identity_service_follows_its_own_proxy_rules(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    proxy: _Proxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OAuth: the site goes through the proxy while NO_PROXY names the identity service's
    host (here `localhost`, the same emulator under another name), which is asked directly."""
    case_id = seed(emulator, "Case", Number="SR00000078")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "localhost")
    port = urlsplit(emulator.url).port
    client = client_for(
        emulator,
        auth="oauth2",
        username=None,
        password=None,
        client_id="attach",
        client_secret=SecretStr("attach-secret"),
        token_url=f"http://localhost:{port}/connect/token",
    )
    assert client.find_parent("Case", {"Number": "SR00000078"}) == case_id
    assert [e for e in request_log(emulator) if e["path"] == "/connect/token"]
    assert not [path for _, path in proxy.seen if path == "/connect/token"]
    assert any(path.endswith("/odata/Case") for _, path in proxy.seen)


def test_a_body_is_read_in_big_blocks_whatever_the_http_library_asks_for(
    tmp_path: Path,
) -> None:
    """urllib3 asks for 16 KiB at a time: the body hands out BLOCK bytes per read (one Python
    round per 256 KiB, not per 16 KiB), stays within its range and keeps the Content-Length."""
    data = bytes(range(256)) * (3 * BLOCK // 256 + 7)
    path = tmp_path / "three-blocks.bin"
    path.write_bytes(data)
    start, length = 100, 2 * BLOCK + 5000
    digest = hashlib.sha256()
    moved: list[int] = []
    with path.open("rb") as fh:
        body = RangeReader(fh, start, length, digest, moved.append, path)
        assert body_headers(body) == {"Content-Length": str(length)}  # never chunked
        blocks = list(iter(lambda: body.read(16384), b""))
    assert [len(b) for b in blocks] == [BLOCK, BLOCK, 5000] == moved
    assert b"".join(blocks) == data[start : start + length]
    assert digest.hexdigest() == hashlib.sha256(data[start : start + length]).hexdigest()


def test_a_file_that_shrinks_between_chunks_fails_and_leaves_no_record(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
    tmp_path: Path,
) -> None:
    case_id = seed(emulator, "Case", Number="SR10")
    client = client_for(emulator, chunk_threshold=8_000, chunk_size=65_536)
    source = corpus_by_name["wavefile-16bit-8kHz-stereo.wav"]  # 448104 bytes: 7 chunks
    growing = tmp_path / "being-written.wav"
    growing.write_bytes(source.path.read_bytes())
    seen: list[int] = []

    def truncate(n: int) -> None:  # after the first chunk, another program cuts the file
        seen.append(n)
        with growing.open("r+b") as f:
            f.truncate(100_000)

    with pytest.raises(FileUnreadable, match="got shorter"):
        client.upload(growing, Target.for_file_object("CaseFile", case_id), progress=truncate)
    assert seen[0] == 65_536  # one progress call per chunk, of its whole length
    assert stored_files(emulator) == []


def test_a_site_that_ignores_the_id_reports_its_own_before_the_content_and_is_completed_later(
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    """The emulator picks its own Ids (``ignore_client_ids``): ``on_record`` hears the Id it
    chose before any content goes; ``may_exist`` then completes that very record instead of
    creating a second one (what a daemon restarted after a crash does)."""
    emu = emulator_factory(ignore_client_ids=True)
    case_id = seed(emu, "Case", Number="SR5")
    client = client_for(emu)
    item = corpus_by_name["filetype-fixture.pdf"]
    target = Target.for_file_object("CaseFile", case_id)
    sent = str(uuid.uuid4())
    heard: list[tuple[str, int]] = []

    def on_record(rid: str) -> None:
        heard.append((rid, len([e for e in request_log(emu) if e["method"] == "PUT"])))

    first = client.upload(item.path, target, record_id=sent, on_record=on_record)
    assert first.adopted_server_id and first.record_id != sent
    assert heard == [(first.record_id, 0)]  # told before the content was sent
    # the record exists; its Id comes from the site: completed, not made again
    again = client.upload(item.path, target, record_id=first.record_id, may_exist=True)
    assert again.record_id == first.record_id and not again.adopted_server_id
    assert [f["id"] for f in stored_files(emu)] == [first.record_id]
