"""CSRF: cookie-authenticated writes need a `BPMCSRF` header equal to the session's cookie.

Contract sections 1.2 and 8.4: missing or wrong header on POST/PUT/PATCH/DELETE (including
`$batch`) -> 403 with an empty body and nothing written; GETs and bearer calls need no header.
"""

from __future__ import annotations

import pytest
import requests

from creatio_attach.emulator import EmbeddedEmulator

FORCE = {"ForceUseSession": "true"}


def login(emu: EmbeddedEmulator) -> requests.Session:
    s = requests.Session()
    r = s.post(
        emu.url + "/ServiceModel/AuthService.svc/Login",
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
    )
    assert r.json()["Code"] == 0
    return s


def seed_case(emu: EmbeddedEmulator) -> str:
    r = requests.post(
        emu.url + "/__emulator__/records/Case", json={"Subject": "csrf target"}, timeout=30
    )
    assert r.status_code == 201
    return str(r.json()["Id"])


def seed_case_file(emu: EmbeddedEmulator, case_id: str) -> str:
    r = requests.post(
        emu.url + "/__emulator__/records/CaseFile",
        json={"Name": "a.txt", "CaseId": case_id},
        timeout=30,
    )
    assert r.status_code == 201
    return str(r.json()["Id"])


def write_requests(emu: EmbeddedEmulator) -> dict[str, tuple[str, str, dict[str, object]]]:
    """One write of each kind: name -> (method, url, requests kwargs)."""
    case_id = seed_case(emu)
    file_id = seed_case_file(emu, case_id)
    odata = emu.odata_url
    batch = {"requests": [{"method": "POST", "url": "Case", "id": "1", "body": {"Subject": "b"}}]}
    return {
        "POST": ("POST", f"{odata}/Case", {"json": {"Subject": "new"}}),
        "PATCH": ("PATCH", f"{odata}/Case({case_id})", {"json": {"Subject": "changed"}}),
        "DELETE": ("DELETE", f"{odata}/Case({case_id})", {}),
        "PUT": (
            "PUT",
            f"{odata}/CaseFile({file_id})/Data",
            {"data": b"content", "headers": {"Content-Type": "application/octet-stream"}},
        ),
        "$batch": ("POST", f"{odata}/$batch", {"json": batch}),
    }


KINDS = ["POST", "PATCH", "DELETE", "PUT", "$batch"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("header", [None, "wrong-value", ""])
def test_cookie_write_without_the_right_csrf_header_is_403(
    emulator: EmbeddedEmulator, kind: str, header: str | None
) -> None:
    s = login(emulator)
    method, url, kwargs = write_requests(emulator)[kind]
    before = requests.get(emulator.url + "/__emulator__/files", timeout=30).json()
    cases_before = s.get(emulator.odata_url + "/Case?$count=true&$top=0").json()["@odata.count"]
    headers = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
    headers.update(FORCE)
    if header is not None:
        headers["BPMCSRF"] = header
    r = s.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 403
    assert r.content == b""
    # nothing was written
    assert requests.get(emulator.url + "/__emulator__/files", timeout=30).json() == before
    cases = s.get(emulator.odata_url + "/Case?$count=true&$top=0").json()["@odata.count"]
    assert cases == cases_before


@pytest.mark.parametrize("kind", KINDS)
def test_cookie_write_with_the_csrf_header_goes_through(
    emulator: EmbeddedEmulator, kind: str
) -> None:
    s = login(emulator)
    method, url, kwargs = write_requests(emulator)[kind]
    headers = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
    headers.update({**FORCE, "BPMCSRF": s.cookies["BPMCSRF"]})
    r = s.request(method, url, headers=headers, **kwargs)  # type: ignore[arg-type]
    assert 200 <= r.status_code < 300, r.text


def test_a_csrf_value_of_another_session_is_refused(emulator: EmbeddedEmulator) -> None:
    first = login(emulator)
    second = login(emulator)
    assert first.cookies["BPMCSRF"] != second.cookies["BPMCSRF"]
    r = first.post(
        emulator.odata_url + "/Case",
        json={"Subject": "x"},
        headers={**FORCE, "BPMCSRF": second.cookies["BPMCSRF"]},
    )
    assert r.status_code == 403


def test_get_without_csrf_header_is_accepted(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    case_id = seed_case(emulator)
    assert s.get(emulator.odata_url + "/Case?$top=1", headers=FORCE).status_code == 200
    assert s.get(f"{emulator.odata_url}/Case({case_id})", headers=FORCE).status_code == 200


@pytest.mark.parametrize("kind", KINDS)
def test_bearer_writes_need_no_csrf_header(emulator: EmbeddedEmulator, kind: str) -> None:
    access = requests.post(
        emulator.url + "/connect/token",
        data={
            "client_id": "attach",
            "client_secret": "attach-secret",
            "grant_type": "client_credentials",
        },
        timeout=30,
    ).json()["access_token"]
    method, url, kwargs = write_requests(emulator)[kind]
    headers = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
    headers["Authorization"] = f"Bearer {access}"
    r = requests.request(method, url, headers=headers, **kwargs, timeout=30)  # type: ignore[arg-type]
    assert 200 <= r.status_code < 300, r.text


def test_login_and_token_calls_need_no_csrf_header(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)  # a second login with the session's cookies and no BPMCSRF header
    r = s.post(
        emulator.url + "/ServiceModel/AuthService.svc/Login",
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
    )
    assert r.status_code == 200
    assert r.json()["Code"] == 0
    t = s.post(
        emulator.url + "/connect/token",
        data={
            "client_id": "attach",
            "client_secret": "attach-secret",
            "grant_type": "client_credentials",
        },
    )
    assert t.status_code == 200
