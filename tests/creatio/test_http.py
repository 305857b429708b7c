"""The one error boundary: real HTTP answers and failures -> the project's exception tree."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Callable

import pytest

from creatio_attach.creatio import CreatioClient, RetryPolicy
from creatio_attach.creatio.http import error_from_response, parse_retry_after
from creatio_attach.creatio.reply import Reply
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import CreatioRejected, CreatioUnavailable
from tests.creatio.conftest import FAST, fetch, set_faults


class LoggedIn:
    """Plain calls with Creatio's login cookies and headers (not our client)."""

    def __init__(self, emu: EmbeddedEmulator) -> None:
        login = fetch(
            "POST",
            f"{emu.url}/ServiceModel/AuthService.svc/Login",
            json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
        )
        assert login.json()["Code"] == 0
        self.cookies = login.cookies
        self.headers = {"BPMCSRF": self.cookies["BPMCSRF"], "ForceUseSession": "true"}

    def get(self, url: str) -> Reply:
        return fetch("GET", url, headers=self.headers, cookies=self.cookies)


def test_creatios_error_shapes_become_rejections_with_its_message(
    emulator: EmbeddedEmulator,
) -> None:
    s = LoggedIn(emulator)
    miss = s.get(f"{emulator.odata_url}/NoSuchThing")
    error = error_from_response(miss, "GET /0/odata/NoSuchThing")
    assert isinstance(error, CreatioRejected) and error.status == 404
    assert error.creatio_message and "NoSuchThing" in error.creatio_message

    flat = s.get(f"{emulator.odata_url}/CaseFile?$filter=CaseId%20eq%20'x'&$top=1")
    error = error_from_response(flat, "GET /0/odata/CaseFile")
    assert flat.status_code == 500
    assert isinstance(error, CreatioRejected)  # a 500 that names a request error: permanent
    assert error.creatio_message and "CaseId" in error.creatio_message

    no_csrf = fetch("POST", f"{emulator.odata_url}/CaseFile", json={}, cookies=s.cookies)
    error = error_from_response(no_csrf, "POST /0/odata/CaseFile")
    assert isinstance(error, CreatioRejected) and error.status == 403
    assert error.hint and "BPMCSRF" in error.hint


def test_503_and_429_are_retryable_with_retry_after(emulator: EmbeddedEmulator) -> None:
    s = LoggedIn(emulator)
    set_faults(emulator, "503@every=1:retry-after=7:path=/Case$; 429@every=1:path=/Contact$")
    error = error_from_response(s.get(f"{emulator.odata_url}/Case?$top=1"), "GET")
    assert isinstance(error, CreatioUnavailable)
    assert (error.status, error.retry_after) == (503, 7.0)
    error = error_from_response(s.get(f"{emulator.odata_url}/Contact?$top=1"), "GET")
    assert isinstance(error, CreatioUnavailable) and error.status == 429


def test_retry_after_as_seconds_or_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= (parse_retry_after(later) or 0) <= 61
    assert RetryPolicy(backoff_base=0.01).delay(0, 4.0) >= 4.0


def test_a_refused_connection_is_unavailable_after_bounded_attempts(
    client_for: Callable[..., CreatioClient], emulator: EmbeddedEmulator
) -> None:
    with socket.socket() as sock:  # a port that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = CreatioClient(
        client_for(emulator).settings.model_copy(update={"url": f"http://127.0.0.1:{port}"}),
        retry=FAST,
    )
    with pytest.raises(CreatioUnavailable, match="connection to Creatio failed"):
        client.login()
    client.close()


def test_a_slow_answer_times_out_as_unavailable(
    emulator: EmbeddedEmulator, client_for: Callable[..., CreatioClient]
) -> None:
    client = client_for(emulator, timeout=0.3, retry=RetryPolicy(attempts=2, backoff_base=0.01))
    client.login()
    set_faults(emulator, "latency=2s:path=/Case$")
    with pytest.raises(CreatioUnavailable, match="in time"):
        client.find_parent("Case", {"Number": "x"})
