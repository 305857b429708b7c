"""Behaviour the emulator never shows, against a tiny fake Creatio on loopback.

The emulator honours client Ids, answers 200 to ``PUT .../Data`` and always sees
``ForceUseSession``; a real site may instead ignore the Id, answer 204, or redirect an
ended session to its login page. This fake does exactly those things, over real HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from pydantic import SecretStr

from creatio_attach.config import CreatioSettings
from creatio_attach.creatio import CreatioClient, Target
from creatio_attach.errors import CreatioUnavailable, VerificationFailed
from tests.conftest import CorpusFile
from tests.creatio.conftest import FAST
from tests.creatio.test_metadata import CSDL

SERVER_ID = "99999999-8888-4777-8666-555555555555"
DOWNLOAD = bytes(range(256)) * 1024  # what GET .../Data answers: 256 KiB
CASE_ID = "11111111-2222-4333-8444-555555555555"


class FakeCreatio(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.logins = 0
        self.valid_token: str | None = None
        self.seen: list[tuple[str, str, int]] = []  # method, path, status
        self.stored: dict[str, int] = {}
        self.size_lie = 0  # added to the Size read back (a store that lost bytes)
        self.refuse_next_continuation = False  # refuse one chunk that does not start at 0
        self.chunk_starts: list[int] = []
        self.renew_on_next_read = False  # renew the session on a data answer (sliding expiry)
        self.framing: list[tuple[str, str | None, str | None]] = []  # path, length, encoding
        self.cut_downloads = 0  # how many downloads end half-way (the connection drops)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def end_session(self) -> None:
        with self.lock:
            self.valid_token = None


class Handler(BaseHTTPRequestHandler):
    server: FakeCreatio
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _reply(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        cookies: tuple[str, ...] = (),
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        # recorded before answering: the client may look at `seen` as soon as it has the reply
        self.server.seen.append((self.command, urlsplit(self.path).path, status))
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        for cookie in cookies:  # one Set-Cookie header each
            self.send_header("Set-Cookie", cookie)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        self.server.framing.append(
            (urlsplit(self.path).path, length, self.headers.get("Transfer-Encoding"))
        )
        return self.rfile.read(int(length or "0"))

    def _authenticated(self) -> bool:
        cookies = dict(
            part.strip().split("=", 1)
            for part in self.headers.get("Cookie", "").split(";")
            if "=" in part
        )
        token = cookies.get(".ASPXAUTH")
        ok = token is not None and token == self.server.valid_token
        if ok and self.command != "GET":
            ok = self.headers.get("BPMCSRF") == f"csrf-{token}"
        if not ok:  # an ended session: a redirect to the login page, as without ForceUseSession
            self._reply(302, headers={"Location": "/Login/NuiLogin.aspx?ReturnUrl=%2f0"})
        return ok

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/ServiceModel/AuthService.svc/Login":
            self._body()
            with self.server.lock:
                self.server.logins += 1
                token = f"t{self.server.logins}"
                self.server.valid_token = token
            self.server.seen.append(("POST", path, 200))
            self.send_response(200)
            self.send_header("Set-Cookie", f".ASPXAUTH={token}; path=/; HttpOnly")
            self.send_header("Set-Cookie", f"BPMCSRF=csrf-{token}; path=/")
            self.send_header("Set-Cookie", "UserType=General; path=/")
            data = json.dumps({"Code": 0, "Message": ""}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if path == "/ServiceModel/AuthService.svc/Logout":
            self._body()
            self._reply(200)
            return
        body = self._body()
        if not self._authenticated():
            return
        if path == "/0/rest/FileApiService/UploadFile":
            first, _, rest = self.headers["Content-Range"].removeprefix("bytes ").partition("-")
            start, total = int(first), int(rest.split("/")[1])
            self.server.chunk_starts.append(start)
            received = 0 if start == 0 else self.server.stored.get(SERVER_ID, 0)
            if start != received or (start and self.server.refuse_next_continuation):
                self.server.refuse_next_continuation = False
                failure = {"message": f"expected a chunk at {received}", "errorCode": "Gap"}
                self._reply(200, {"success": False, "errorInfo": failure})
                return
            self.server.stored[SERVER_ID] = received + len(body)
            assert self.server.stored[SERVER_ID] <= total
            self._reply(200, {"success": True})
            return
        if path == "/0/odata/CaseFile":
            row = json.loads(body)
            assert row["Id"] != SERVER_ID
            self._reply(201, {**row, "Id": SERVER_ID})  # ignores the client's Id
            return
        self._reply(404, {"Message": "No HTTP resource was found"})

    def do_PUT(self) -> None:
        body = self._body()
        if not self._authenticated():
            return
        path = urlsplit(self.path).path
        if path == f"/0/odata/CaseFile({SERVER_ID})/Data":
            self.server.stored[SERVER_ID] = len(body)
            self._reply(204)  # OData's norm; Creatio's docs say 200
            return
        self._reply(404, {"Message": "No HTTP resource was found"})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/odata/$metadata":
            self._reply(404, {"Message": "No HTTP resource was found"})
            return
        if not self._authenticated():
            return
        if parts.path == "/0/odata/$metadata":
            data = CSDL.encode()
            self.server.seen.append(("GET", parts.path, 200))
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        query = unquote(parts.query)
        if parts.path == "/0/odata/Case":
            renewed: tuple[str, ...] = ()
            if self.server.renew_on_next_read:  # a new .ASPXAUTH and BPMCSRF; the old ones end
                self.server.renew_on_next_read = False
                token = f"{self.server.valid_token}-renewed"
                self.server.valid_token = token
                renewed = (f".ASPXAUTH={token}; path=/; HttpOnly", f"BPMCSRF=csrf-{token}; path=/")
            rows = [{"Id": CASE_ID}] if "'SR1'" in query else []
            self._reply(200, {"value": rows}, cookies=renewed)
            return
        if parts.path == f"/0/odata/CaseFile({SERVER_ID})/Data":
            cut = self.server.cut_downloads > 0
            self.server.cut_downloads -= 1
            self.server.seen.append(("GET", parts.path, 200))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(DOWNLOAD)))
            self.end_headers()
            self.wfile.write(DOWNLOAD[: len(DOWNLOAD) // 2] if cut else DOWNLOAD)
            self.close_connection = cut  # half the promised bytes, then the socket closes
            return
        if parts.path == "/0/odata/CaseFile" and SERVER_ID in query:
            size = self.server.stored.get(SERVER_ID)
            rows = [{"Id": SERVER_ID, "Size": size + self.server.size_lie}] if size else []
            self._reply(200, {"value": rows})
            return
        self._reply(404, {"Message": "No HTTP resource was found"})

    def do_DELETE(self) -> None:
        if not self._authenticated():
            return
        if urlsplit(self.path).path == f"/0/odata/CaseFile({SERVER_ID})":
            self.server.stored.pop(SERVER_ID, None)
            self._reply(204)
            return
        self._reply(404, {"Message": "No HTTP resource was found"})


@pytest.fixture
def fake() -> Iterator[FakeCreatio]:
    server = FakeCreatio()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def fake_client(fake: FakeCreatio) -> Iterator[CreatioClient]:
    settings = CreatioSettings(url=fake.url, username="Supervisor", password=SecretStr("x"))
    with CreatioClient(settings, retry=FAST) as client:
        yield client


def test_a_redirect_to_the_login_page_renews_the_session_once_and_is_not_followed(
    fake: FakeCreatio, fake_client: CreatioClient
) -> None:
    assert fake_client.find_parent("Case", {"Number": "SR1"}) == CASE_ID
    fake.end_session()
    assert fake_client.find_parent("Case", {"Number": "SR1"}) == CASE_ID
    assert fake.logins == 2
    assert [s for _, p, s in fake.seen if p == "/0/odata/Case"] == [200, 302, 200]
    assert not [p for _, p, _ in fake.seen if p.startswith("/Login/")]  # never followed


def test_a_server_that_ignores_the_id_is_adopted_and_204_is_accepted(
    fake: FakeCreatio, fake_client: CreatioClient, corpus_by_name: dict[str, CorpusFile]
) -> None:
    item = corpus_by_name["filetype-fixture.pdf"]
    result = fake_client.upload(item.path, Target.for_file_object("CaseFile", CASE_ID))
    assert result.adopted_server_id and result.record_id == SERVER_ID
    assert fake.stored == {SERVER_ID: item.size}
    assert ("PUT", f"/0/odata/CaseFile({SERVER_ID})/Data", 204) in fake.seen


def test_a_size_that_differs_after_upload_fails_verification_and_deletes_the_record(
    fake: FakeCreatio, fake_client: CreatioClient, corpus_by_name: dict[str, CorpusFile]
) -> None:
    fake.size_lie = -1
    item = corpus_by_name["filetype-fixture.pdf"]
    with pytest.raises(VerificationFailed, match=f"holds {item.size - 1} bytes"):
        fake_client.upload(item.path, Target.for_file_object("CaseFile", CASE_ID))
    assert fake.stored == {}
    assert ("DELETE", f"/0/odata/CaseFile({SERVER_ID})", 204) in fake.seen


def test_a_refused_chunk_restarts_the_content_at_byte_0(
    fake: FakeCreatio, corpus_by_name: dict[str, CorpusFile]
) -> None:
    fake.refuse_next_continuation = True
    item = corpus_by_name["filetype-fixture.pdf"]  # 7945 bytes: chunks at 0, 4000
    settings = CreatioSettings(
        url=fake.url,
        username="Supervisor",
        password=SecretStr("x"),
        chunk_threshold=4_000,
        chunk_size=4_000,
    )
    with CreatioClient(settings, retry=FAST) as client:
        result = client.upload(item.path, Target.for_file_object("CaseFile", CASE_ID))
    assert result.chunked and result.sha256 == item.sha256
    assert fake.chunk_starts == [0, 4000, 0, 4000]
    assert fake.stored == {SERVER_ID: item.size}


def test_cookies_renewed_on_a_data_answer_are_used_from_then_on_without_a_new_login(
    fake: FakeCreatio, fake_client: CreatioClient, corpus_by_name: dict[str, CorpusFile]
) -> None:
    """Creatio may renew the session on any answer (sliding expiry), with several Set-Cookie
    headers at once; once renewed, only the new cookie and CSRF token work."""
    assert fake_client.find_parent("Case", {"Number": "SR1"}) == CASE_ID
    fake.renew_on_next_read = True
    assert fake_client.find_parent("Case", {"Number": "SR1"}) == CASE_ID  # answer renews
    assert fake.valid_token == "t1-renewed"
    item = corpus_by_name["filetype-fixture.pdf"]
    result = fake_client.upload(item.path, Target.for_file_object("CaseFile", CASE_ID))
    assert result.bytes == item.size  # the writes carried the renewed BPMCSRF
    assert fake.logins == 1
    assert [s for _, _, s in fake.seen if s == 302] == []


def test_content_goes_up_with_a_content_length_never_chunked(
    fake: FakeCreatio, corpus_by_name: dict[str, CorpusFile]
) -> None:
    item = corpus_by_name["filetype-fixture.pdf"]  # 7945 bytes: one PUT, then 2 chunks
    for threshold in (10**6, 4_000):
        settings = CreatioSettings(
            url=fake.url,
            username="Supervisor",
            password=SecretStr("x"),
            chunk_threshold=threshold,
            chunk_size=4_000,
        )
        with CreatioClient(settings, retry=FAST) as client:
            result = client.upload(item.path, Target.for_file_object("CaseFile", CASE_ID))
        assert result.sha256 == item.sha256
    content = [(p, n, te) for p, n, te in fake.framing if p.endswith(("/Data", "/UploadFile"))]
    assert content == [
        (f"/0/odata/CaseFile({SERVER_ID})/Data", str(item.size), None),
        ("/0/rest/FileApiService/UploadFile", "4000", None),
        ("/0/rest/FileApiService/UploadFile", str(item.size - 4000), None),
    ]
    assert all(n is not None and te is None for _, n, te in fake.framing)


def test_a_download_cut_mid_body_is_retried_and_never_leaves_a_partial_file(
    fake: FakeCreatio, fake_client: CreatioClient, tmp_path: Path
) -> None:
    fake.cut_downloads = 1
    dest = tmp_path / "back.bin"
    assert fake_client.download("CaseFile", SERVER_ID, dest) == len(DOWNLOAD)
    assert dest.read_bytes() == DOWNLOAD
    assert [p for m, p, _ in fake.seen if m == "GET" and p.endswith("/Data")] == [
        f"/0/odata/CaseFile({SERVER_ID})/Data"
    ] * 2

    fake.cut_downloads = 100  # every attempt cut: unavailable, and nothing under any name
    again = tmp_path / "again.bin"
    with pytest.raises(CreatioUnavailable, match="connection to Creatio failed on GET"):
        fake_client.download("CaseFile", SERVER_ID, again)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.bin"]
