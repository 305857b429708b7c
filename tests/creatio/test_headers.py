"""What the client sends on every call, read from the emulator's request log, and what it logs.

A forms session sends `ForceUseSession: true` on every call (else an ended session comes back as
a 302 to the login page instead of a 401) and `BPMCSRF` on every write; content never goes up as
multipart. A site that ignores the supplied Id is adopted, and the log says so (against the
fake site of test_fake_site.py, since the emulator honours Ids).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from creatio_attach.config import CreatioSettings
from creatio_attach.creatio import CreatioClient, Target
from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import CorpusFile, wait_for
from tests.creatio.conftest import FAST, expire_sessions, logins, request_log, seed
from tests.creatio.test_fake_site import CASE_ID, SERVER_ID, FakeCreatio

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def kinds(entries: list[dict[str, Any]]) -> set[str]:
    """Which calls the log holds, by what they are (so a vacuous log cannot pass)."""
    out = set()
    for e in entries:
        path = e["path"]
        if path.endswith("AuthService.svc/Login"):
            out.add("login")
        elif path.endswith("AuthService.svc/Logout"):
            out.add("logout")
        elif path.endswith("/$metadata"):
            out.add("metadata")
        elif path.endswith("/Data"):
            out.add(f"{e['method']} data")
        elif path.endswith("/UploadFile"):
            out.add("chunk")
        elif "/odata/" in path:
            out.add(f"{e['method']} odata")
    return out


@pytest.mark.parametrize("runtime", ["netframework", "netcore"])
def test_every_cookie_call_forces_the_session_and_every_write_carries_bpmcsrf(
    runtime: str,
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
    tmp_path: Path,
) -> None:
    emu = emulator_factory(runtime=runtime)
    case_id = seed(emu, "Case", Number="SR-HEADERS")
    client = client_for(emu, chunk_threshold=8_000, chunk_size=4_000)
    client.login()
    client.metadata()
    assert client.find_parent("Case", {"Number": "SR-HEADERS"}) == case_id
    target = Target.for_file_object("CaseFile", case_id)
    whole = client.upload(corpus_by_name["filetype-fixture.pdf"].path, target)  # PUT .../Data
    docx = corpus_by_name["filetype-fixture.docx"]
    chunked = client.upload(docx.path, target, mime=docx.expected_mime)  # FileApiService
    assert not whole.chunked and chunked.chunked
    expire_sessions(emu)  # the next call meets an ended session: 401 (not 302), one re-login
    assert {a.id for a in client.list_attachments("Case", case_id)} == {
        whole.record_id,
        chunked.record_id,
    }
    back = tmp_path / "back.docx"
    client.download("CaseFile", chunked.record_id, back)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == docx.sha256
    client.close()
    # the server logs a request once its answer is sent, so the download may be logged after
    # the logout that followed it: wait for the logout anywhere in the log
    wait_for(
        lambda: any(e["path"].endswith("/Logout") for e in request_log(emu)), what="the logout"
    )

    log = request_log(emu)
    assert {
        "login",
        "metadata",
        "GET odata",
        "POST odata",
        "PUT data",
        "chunk",
        "GET data",
        "logout",
    } <= kinds(log)
    assert logins(log) == 2
    assert [e["status"] for e in log if e["status"] in (302, 401)] == [401]
    without = [e for e in log if not e["force_use_session"]]
    assert without == []  # the logins included
    cookie_calls = [e for e in log if e["auth"] == "cookie"]
    assert len(cookie_calls) == len(log) - logins(log)
    writes = [e for e in cookie_calls if e["method"] in WRITES]
    assert {e["method"] for e in writes} == {"POST", "PUT"}
    assert [e for e in writes if not e["csrf_header"]] == []
    to_data = [e for e in log if e["path"].endswith("/Data")]
    assert {e["method"] for e in to_data} == {"PUT", "GET"}
    assert [e for e in to_data if "multipart" in (e["content_type"] or "").lower()] == []


@pytest.fixture
def fake() -> Iterator[FakeCreatio]:
    server = FakeCreatio()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_an_ignored_id_is_adopted_and_the_log_says_so(
    fake: FakeCreatio, corpus_by_name: dict[str, CorpusFile]
) -> None:
    settings = CreatioSettings(url=fake.url, username="Supervisor", password=SecretStr("x"))
    item = corpus_by_name["filetype-fixture.pdf"]
    sent_id = str(uuid.uuid4())
    with (
        structlog.testing.capture_logs() as logs,
        CreatioClient(settings, retry=FAST) as client,
    ):
        result = client.upload(
            item.path, Target.for_file_object("CaseFile", CASE_ID), record_id=sent_id
        )
    assert result.adopted_server_id and result.record_id == SERVER_ID
    adopted = [e for e in logs if e["event"] == "creatio.upload.adopted_server_id"]
    assert adopted == [
        {
            "event": "creatio.upload.adopted_server_id",
            "log_level": "warning",
            "file_object": "CaseFile",
            "sent_id": sent_id,
            "server_id": SERVER_ID,
        }
    ]
    done = [e for e in logs if e["event"] == "creatio.upload.done"]
    assert [e["id"] for e in done] == [SERVER_ID]  # later lines name the adopted Id


def test_an_honoured_id_logs_no_adoption(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR-HONOURED")
    sent_id = str(uuid.uuid4())
    client = client_for(emulator)
    with structlog.testing.capture_logs() as logs:
        result = client.upload(
            corpus_by_name["filetype-fixture.pdf"].path,
            Target.for_file_object("CaseFile", case_id),
            record_id=sent_id,
        )
    assert result.record_id == sent_id and not result.adopted_server_id
    assert [e for e in logs if e["event"] == "creatio.upload.adopted_server_id"] == []
