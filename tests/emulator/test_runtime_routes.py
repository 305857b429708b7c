"""Runtime routes: .NET Framework serves data under `/0` only; .NET Core at the root and under `/0`.

Contract sections 1.6 and 8.1; login at the site root on both runtimes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from creatio_attach.emulator import EmbeddedEmulator

FORCE = {"ForceUseSession": "true"}


def login(emu: EmbeddedEmulator, prefix: str = "") -> requests.Session:
    s = requests.Session()
    r = s.post(
        emu.url + prefix + "/ServiceModel/AuthService.svc/Login",
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
        headers=FORCE,
    )
    assert r.status_code == 200
    assert r.json()["Code"] == 0
    s.headers.update({**FORCE, "BPMCSRF": s.cookies["BPMCSRF"]})
    return s


@pytest.fixture
def netcore(emulator_factory: Callable[..., EmbeddedEmulator]) -> EmbeddedEmulator:
    return emulator_factory(runtime="netcore")


def test_urls_of_each_runtime(emulator: EmbeddedEmulator, netcore: EmbeddedEmulator) -> None:
    assert emulator.ws_url == emulator.url + "/0"
    assert emulator.odata_url == emulator.url + "/0/odata"
    assert netcore.ws_url == netcore.url
    assert netcore.odata_url == netcore.url + "/odata"


def test_netcore_serves_data_at_the_root_and_under_0(netcore: EmbeddedEmulator) -> None:
    s = login(netcore)
    created = s.post(netcore.url + "/odata/Case", json={"Subject": "root"})
    assert created.status_code == 201
    case_id = created.json()["Id"]
    assert s.get(f"{netcore.url}/odata/Case({case_id})").json()["Subject"] == "root"
    assert s.get(f"{netcore.url}/0/odata/Case({case_id})").json()["Subject"] == "root"
    assert s.post(netcore.url + "/0/odata/Case", json={"Subject": "zero"}).status_code == 201
    assert s.get(netcore.url + "/odata/$metadata").status_code == 200


def test_netframework_serves_data_only_under_0(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    assert s.get(emulator.url + "/0/odata/Case?$top=1").status_code == 200
    root = s.get(emulator.url + "/odata/Case?$top=1")
    assert root.status_code == 404
    assert "No HTTP resource was found" in root.json()["Message"]


def test_login_lives_at_the_root_on_both_runtimes(
    emulator: EmbeddedEmulator, netcore: EmbeddedEmulator
) -> None:
    login(emulator)
    login(netcore)


def test_netframework_login_under_0_is_401_but_logout_there_works(
    emulator: EmbeddedEmulator,
) -> None:
    r = requests.post(
        emulator.url + "/0/ServiceModel/AuthService.svc/Login",
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
        timeout=30,
    )
    assert r.status_code == 401
    s = login(emulator)
    assert s.post(emulator.url + "/0/ServiceModel/AuthService.svc/Logout").status_code == 200
    assert s.get(emulator.odata_url + "/Case?$top=1").status_code == 401


def test_netcore_accepts_login_under_0(netcore: EmbeddedEmulator) -> None:
    login(netcore, "/0")


@pytest.mark.parametrize(
    ("runtime", "page"),
    [
        ("netframework", "/Login/NuiLogin.aspx"),
        ("netframework", "/0/Login/NuiLogin.aspx"),
        ("netcore", "/Login/Login.html"),
    ],
)
def test_login_pages(
    emulator_factory: Callable[..., EmbeddedEmulator], runtime: str, page: str
) -> None:
    emu = emulator_factory(runtime=runtime)
    r = requests.get(emu.url + page, timeout=30)
    assert r.status_code == 200
    assert "text/html" in r.headers["Content-Type"]
    assert "/Login/" in r.text


def test_netcore_redirects_to_its_own_login_page(netcore: EmbeddedEmulator) -> None:
    r = requests.get(netcore.url + "/odata/Case", allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/Login/Login.html?ReturnUrl=")


@pytest.mark.parametrize(
    ("runtime", "probe"),
    [
        ("netframework", "/0/api/HealthCheck/Ping"),
        ("netframework", "/0/ping"),
        ("netcore", "/api/HealthCheck/Ping"),
    ],
)
def test_health_probes_need_no_login(
    emulator_factory: Callable[..., EmbeddedEmulator], runtime: str, probe: str
) -> None:
    emu = emulator_factory(runtime=runtime)
    assert requests.get(emu.url + probe, timeout=30).status_code == 200


def stored_file(emu: EmbeddedEmulator, s: requests.Session) -> str:
    case = s.post(emu.odata_url + "/Case", json={}).json()
    f = s.post(emu.odata_url + "/CaseFile", json={"Name": "r.txt", "CaseId": case["Id"]}).json()
    put = s.put(f"{emu.odata_url}/CaseFile({f['Id']})/Data", data=b"runtime routes")
    assert put.status_code == 200
    return str(f["Id"])


@pytest.mark.parametrize(
    ("runtime", "prefixes"), [("netframework", ["/0"]), ("netcore", ["", "/0"])]
)
def test_rest_services_follow_the_runtime(
    emulator_factory: Callable[..., EmbeddedEmulator], runtime: str, prefixes: list[str]
) -> None:
    emu = emulator_factory(runtime=runtime)
    s = login(emu)
    file_id = stored_file(emu, s)
    for prefix in prefixes:
        r = s.get(f"{emu.url}{prefix}/rest/FileService/Download/CaseFile/{file_id}")
        assert r.status_code == 200, prefix
        assert r.content == b"runtime routes"
    if runtime == "netframework":
        r = s.get(f"{emu.url}/rest/FileService/Download/CaseFile/{file_id}")
        assert r.status_code == 404
        assert "No HTTP resource was found" in r.json()["Message"]
