"""Sessions: forms and OAuth logins, one shared re-login, runtime detection, logout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from creatio_attach.creatio import CreatioClient, Target
from creatio_attach.creatio.http import looks_like_login_page
from creatio_attach.creatio.session import default_token_url
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import CreatioAuthFailed
from tests.conftest import CorpusFile, wait_for
from tests.creatio.conftest import (
    expire_sessions,
    fetch,
    logins,
    request_log,
    seed,
    stored_files,
)

SECRET = "s3cr3t-Pa55w0rd!"


def test_a_bad_password_is_refused_with_creatios_message_and_no_secret(
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
) -> None:
    emu = emulator_factory(users={"ApiUser": "right-password"})
    client = client_for(emu, username="ApiUser", password=SecretStr(SECRET))
    with pytest.raises(CreatioAuthFailed) as caught:
        client.login()
    error = caught.value
    assert error.creatio_message and error.creatio_message in str(error)
    assert "ApiUser" in str(error)
    for text in (str(error), repr(error), error.message, repr(client), repr(client.settings)):
        assert SECRET not in text
    assert error.exit_code == 78
    assert logins(request_log(emu)) == 1  # a refused login is not retried


def test_forms_login_keeps_all_cookies_and_logs_out_on_close(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    client = client_for(emulator)
    client.login()
    client.close()

    def settled() -> list[dict[str, Any]] | None:  # entries are logged as answers go out
        entries = request_log(emulator)
        return entries if len(entries) == 4 else None

    log = wait_for(settled, what="login, two probes and logout in the log")
    assert [e["path"] for e in log] == [
        "/ServiceModel/AuthService.svc/Login",
        "/odata/$metadata",  # the runtime probe (netcore first) ...
        "/0/odata/$metadata",  # ... then .NET Framework, which answers
        "/ServiceModel/AuthService.svc/Logout",
    ]
    assert log[-1]["status"] == 200 and log[-1]["auth"] == "cookie" and log[-1]["csrf_header"]


@pytest.mark.parametrize("runtime", ["netframework", "netcore"])
def test_runtime_auto_detects_and_remembers_the_runtime(
    runtime: str,
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
) -> None:
    emu = emulator_factory(runtime=runtime)
    case_id = seed(emu, "Case", Number="SR-RT")
    client = client_for(emu)
    assert client.runtime == runtime
    assert client.find_parent("Case", {"Number": "SR-RT"}) == case_id
    assert client.list_attachments("Case", case_id) == []
    probes = [e for e in request_log(emu) if e["path"].endswith("$metadata")]
    assert len(probes) == (1 if runtime == "netcore" else 2)  # probed once, doc reused
    prefix = "/0/odata/" if runtime == "netframework" else "/odata/"
    queries = [
        e for e in request_log(emu) if "/odata/" in e["path"] and "$metadata" not in e["path"]
    ]
    assert queries and all(e["path"].startswith(prefix) for e in queries)


def test_an_explicit_runtime_is_not_probed(
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
) -> None:
    emu = emulator_factory(runtime="netcore")
    client = client_for(emu, runtime="netcore")
    client.login()
    assert client.runtime == "netcore"
    assert not [e for e in request_log(emu) if "$metadata" in e["path"]]


def test_a_session_that_expires_mid_run_is_renewed_once_for_32_parallel_uploads(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR-32")
    client = client_for(emulator, concurrency=32)
    client.login()
    item = corpus_by_name["filetype-fixture.pdf"]
    target = Target.for_file_object("CaseFile", case_id)
    blocked = threading.Semaphore(0)
    go = threading.Event()

    def hold(_: int) -> None:  # every upload waits inside its PUT until the session is gone
        if not go.is_set():
            blocked.release()
            go.wait(30)

    with ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(client.upload, item.path, target, progress=hold) for _ in range(32)]
        for _ in range(32):
            assert blocked.acquire(timeout=30)
        expire_sessions(emulator)
        go.set()
        results = [f.result(timeout=60) for f in futures]
    assert len({r.record_id for r in results}) == 32
    log = request_log(emulator)
    assert logins(log) == 2  # the first login and exactly one renewal
    assert client.logins == 2
    assert sum(1 for e in log if e["status"] == 401) >= 1
    files = stored_files(emulator)
    assert len(files) == 32 and {f["sha256"] for f in files} == {item.sha256}


def oauth_settings(emu: EmbeddedEmulator) -> dict[str, object]:
    return {
        "auth": "oauth2",
        "username": None,
        "password": None,
        "client_id": "attach",
        "client_secret": SecretStr("attach-secret"),
        "token_url": f"{emu.url}/connect/token",
    }


def token_calls(emu: EmbeddedEmulator) -> int:
    return sum(1 for e in request_log(emu) if e["path"].endswith("/connect/token"))


def test_an_expired_oauth_token_is_refreshed(
    emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    case_id = seed(emulator, "Case", Number="SR-OAUTH")
    client = client_for(emulator, **oauth_settings(emulator))
    item = corpus_by_name["filetype-fixture.webp"]
    client.upload(item.path, Target.for_file_object("CaseFile", case_id))
    expire_sessions(emulator)
    client.upload(item.path, Target.for_file_object("CaseFile", case_id))
    log = request_log(emulator)
    assert token_calls(emulator) == 2
    data = [e for e in log if "/odata/" in e["path"]]
    assert {e["auth"] for e in data} == {"bearer"} and not any(e["csrf_header"] for e in data)
    assert sum(1 for e in log if e["status"] == 401) == 1
    assert len(stored_files(emulator)) == 2


def test_an_oauth_token_is_refreshed_before_it_expires(
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
) -> None:
    emu = emulator_factory(token_lifetime=2.0)
    case_id = seed(emu, "Case", Number="SR-EARLY")
    client = client_for(emu, **oauth_settings(emu))
    client.login()
    logged_in = time.monotonic()
    wait_for(lambda: time.monotonic() - logged_in > 1.9, timeout=5, what="token near expiry")
    assert client.find_parent("Case", {"Number": "SR-EARLY"}) == case_id
    assert token_calls(emu) == 2
    assert not [e for e in request_log(emu) if e["status"] == 401]


def test_a_wrong_client_secret_is_refused_without_the_secret(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    settings = {**oauth_settings(emulator), "client_secret": SecretStr(SECRET)}
    client = client_for(emulator, **settings)
    with pytest.raises(CreatioAuthFailed) as caught:
        client.login()
    assert "invalid_client" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_the_cloud_token_url_rule() -> None:
    assert (
        default_token_url("https://acme.creatio.com") == "https://acme-is.creatio.com/connect/token"
    )
    assert (
        default_token_url("https://acme.creatio.com/")
        == "https://acme-is.creatio.com/connect/token"
    )
    assert default_token_url("https://crm.example.org/Creatio") == (
        "https://crm.example.org/Creatio/connect/token"
    )


def test_a_redirect_to_the_login_page_is_recognised_as_an_ended_session(
    emulator: EmbeddedEmulator, tmp_path: Path
) -> None:
    """Without ``ForceUseSession`` an ended session is a 302 to the login page; the client
    always sends the header, but it must still recognise the redirect (real response here)."""
    expired = {".ASPXAUTH": "expired", "BPMCSRF": "x"}
    gone = fetch("GET", f"{emulator.url}/0/odata/Case?$top=1", cookies=expired)
    assert gone.status_code == 302 and gone.is_redirect and looks_like_login_page(gone)
    page = fetch("GET", emulator.url + gone.headers["Location"])
    assert page.status_code == 200 and not page.is_redirect and looks_like_login_page(page)
    data = fetch("GET", f"{emulator.url}/__emulator__/health")
    assert not looks_like_login_page(data)
