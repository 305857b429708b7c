"""The emulator's authentication: forms login and logout, session expiry, OAuth and bearer tokens.

Real HTTP with `requests` against an emulator on loopback (contract sections 1.1-1.5, 7b, 8.2-8.3).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.emulator.auth import Sessions
from creatio_attach.emulator.faults import Faults
from tests.conftest import wait_for

LOGIN = "/ServiceModel/AuthService.svc/Login"
LOGOUT = "/ServiceModel/AuthService.svc/Logout"
FORCE = {"ForceUseSession": "true"}
SESSION_COOKIES = {".ASPXAUTH", "BPMCSRF", "BPMLOADER", "UserName", "BPMSESSIONID", "UserType"}


def login(
    emu: EmbeddedEmulator,
    user: str = "Supervisor",
    password: str = "Supervisor",  # noqa: S107
) -> requests.Session:
    session = requests.Session()
    response = session.post(
        emu.url + LOGIN, json={"UserName": user, "UserPassword": password}, headers=FORCE
    )
    assert response.status_code == 200
    assert response.json()["Code"] == 0
    return session


def wait_until_no_live_session(emu: EmbeddedEmulator, kind: str = "sessions") -> None:
    """Wait for an idle expiry without touching the session (any call with its cookie would)."""

    def none_left() -> bool:
        return requests.get(emu.url + "/__emulator__/sessions", timeout=30).json()[kind] == 0

    wait_for(none_left, what=f"no live {kind}")


def token(emu: EmbeddedEmulator, path: str = "/connect/token", **form: str) -> requests.Response:
    data = {
        "client_id": "attach",
        "client_secret": "attach-secret",
        "grant_type": "client_credentials",
    }
    data.update(form)
    return requests.post(emu.url + path, data=data, timeout=30)


def test_login_answers_code_0_and_sets_every_creatio_cookie(emulator: EmbeddedEmulator) -> None:
    r = requests.post(
        emulator.url + LOGIN,
        data=json.dumps({"UserName": "Supervisor", "UserPassword": "Supervisor"}),
        headers={"Content-Type": "application/json; charset=utf-8", **FORCE},
        timeout=30,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["Code"] == 0
    assert body["Message"] == ""
    assert {"Exception", "PasswordChangeUrl", "RedirectUrl"} <= set(body)
    assert set(r.cookies.keys()) >= SESSION_COOKIES
    by_name = {c.name: c for c in r.cookies}
    assert by_name[".ASPXAUTH"].path == "/"
    assert by_name["BPMCSRF"].path == "/"
    assert by_name[".ASPXAUTH"].has_nonstandard_attr("HttpOnly")
    assert not by_name["BPMCSRF"].has_nonstandard_attr("HttpOnly")  # scripts read it
    assert by_name["UserName"].expires is not None


def test_login_accepts_json_without_charset_and_without_force_use_session(
    emulator: EmbeddedEmulator,
) -> None:
    r = requests.post(
        emulator.url + LOGIN,
        data=b'{"UserName":"Supervisor","UserPassword":"Supervisor"}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json()["Code"] == 0
    assert ".ASPXAUTH" in r.cookies


@pytest.mark.parametrize(
    ("user", "password"), [("Supervisor", "wrong"), ("Nobody", "Supervisor"), ("", "")]
)
def test_bad_credentials_answer_200_code_1_and_no_session_cookie(
    emulator: EmbeddedEmulator, user: str, password: str
) -> None:
    r = requests.post(
        emulator.url + LOGIN, json={"UserName": user, "UserPassword": password}, timeout=30
    )
    assert r.status_code == 200
    body = r.json()
    assert body["Code"] == 1
    assert body["Message"]
    assert not SESSION_COOKIES & set(r.cookies.keys())
    assert "set-cookie" not in r.headers


def test_a_password_never_appears_in_the_login_answer(emulator: EmbeddedEmulator) -> None:
    r = requests.post(
        emulator.url + LOGIN,
        json={"UserName": "Supervisor", "UserPassword": "s3cret-typo"},
        timeout=30,
    )
    assert "s3cret-typo" not in r.text


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_login_body_is_400(emulator: EmbeddedEmulator, body: bytes) -> None:
    r = requests.post(
        emulator.url + LOGIN, data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert r.status_code == 400
    assert ".ASPXAUTH" not in r.cookies


def test_login_under_workspace_is_401_on_netframework(emulator: EmbeddedEmulator) -> None:
    r = requests.post(
        emulator.url + "/0" + LOGIN,
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
        headers=FORCE,
        timeout=30,
    )
    assert r.status_code == 401
    assert ".ASPXAUTH" not in r.cookies


@pytest.mark.parametrize("method", ["Logon", "LogIn2", "GetCurrentUser"])
def test_unknown_auth_service_method_is_403(emulator: EmbeddedEmulator, method: str) -> None:
    r = requests.post(
        emulator.url + "/ServiceModel/AuthService.svc/" + method,
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
        timeout=30,
    )
    assert r.status_code == 403
    assert ".ASPXAUTH" not in r.cookies


def test_a_cookie_session_reads_data(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    r = s.get(emulator.odata_url + "/Case?$top=1", headers=FORCE)
    assert r.status_code == 200
    assert "value" in r.json()


def test_either_session_cookie_identifies_the_session(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    for name in (".ASPXAUTH", "BPMSESSIONID"):
        only = {name: s.cookies[name]}
        r = requests.get(
            emulator.odata_url + "/Case?$top=1", cookies=only, headers=FORCE, timeout=30
        )
        assert r.status_code == 200, name


def test_no_credentials_is_401_with_force_use_session_else_302(emulator: EmbeddedEmulator) -> None:
    url = emulator.odata_url + "/Case?$top=1"
    assert requests.get(url, headers=FORCE, timeout=30).status_code == 401
    r = requests.get(url, allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/Login/NuiLogin.aspx?ReturnUrl=")


def test_expired_session_is_401_with_force_use_session(
    emulator_factory: Callable[..., EmbeddedEmulator],
) -> None:
    emu = emulator_factory(session_idle=0.5)
    s = login(emu)
    url = emu.odata_url + "/Case?$top=1"
    assert s.get(url, headers=FORCE).status_code == 200
    wait_until_no_live_session(emu)
    assert s.get(url, headers=FORCE).status_code == 401
    # .svc endpoints answer with the JSON authentication fault.
    r = s.post(emu.url + LOGOUT, headers={**FORCE, "BPMCSRF": s.cookies["BPMCSRF"]})
    assert r.status_code == 401
    assert r.json() == {
        "Message": "Authentication failed.",
        "StackTrace": None,
        "ExceptionType": "System.Security.Authentication.AuthenticationException",
    }


def test_expired_session_without_force_use_session_redirects_to_the_login_page(
    emulator_factory: Callable[..., EmbeddedEmulator],
) -> None:
    emu = emulator_factory(session_idle=0.5)
    s = login(emu)
    url = emu.odata_url + "/Case?$top=1"
    assert s.get(url).status_code == 200

    wait_until_no_live_session(emu)
    r = s.get(url, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/Login/NuiLogin.aspx")
    followed = s.get(url)  # what a client that follows redirects sees
    assert followed.status_code == 200
    assert "text/html" in followed.headers["Content-Type"]
    assert "/Login/" in followed.text


def test_logout_ends_the_session_for_good(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    old = dict(s.cookies)
    r = s.post(emulator.url + LOGOUT, headers={**FORCE, "BPMCSRF": old["BPMCSRF"]})
    assert r.status_code == 200
    url = emulator.odata_url + "/Case?$top=1"
    assert requests.get(url, cookies=old, headers=FORCE, timeout=30).status_code == 401
    again = login(emulator)
    assert again.get(url, headers=FORCE).status_code == 200
    assert requests.get(url, cookies=old, headers=FORCE, timeout=30).status_code == 401


def test_logout_needs_the_csrf_header(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    assert s.post(emulator.url + LOGOUT, headers=FORCE).status_code == 403
    assert s.get(emulator.odata_url + "/Case?$top=1", headers=FORCE).status_code == 200


@pytest.mark.parametrize("path", ["/connect/token", "/0/connect/token"])
def test_client_credentials_give_an_expiring_bearer_token(
    emulator: EmbeddedEmulator, path: str
) -> None:
    r = token(emulator, path)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"]


def test_bearer_calls_need_no_cookie_and_no_csrf(emulator: EmbeddedEmulator) -> None:
    access = token(emulator).json()["access_token"]
    auth = {"Authorization": f"Bearer {access}"}
    assert (
        requests.get(emulator.odata_url + "/Case?$top=1", headers=auth, timeout=30).status_code
        == 200
    )
    created = requests.post(
        emulator.odata_url + "/Case", json={"Subject": "bearer"}, headers=auth, timeout=30
    )
    assert created.status_code == 201


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "someone-else"}, "invalid_client"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_token_errors_are_oauth_json(
    emulator: EmbeddedEmulator, form: dict[str, str], error: str
) -> None:
    r = token(emulator, **form)
    assert r.status_code in (400, 401)
    assert r.json()["error"] == error
    assert "access_token" not in r.json()


@pytest.mark.parametrize("prefix", ["", "/0"])
def test_openid_discovery_names_a_working_token_endpoint(
    emulator: EmbeddedEmulator, prefix: str
) -> None:
    r = requests.get(emulator.url + prefix + "/.well-known/openid-configuration", timeout=30)
    assert r.status_code == 200
    endpoint = r.json()["token_endpoint"]
    assert endpoint == emulator.url + prefix + "/connect/token"
    form = {"client_id": "attach", "client_secret": "attach-secret"}
    t = requests.post(endpoint, data={**form, "grant_type": "client_credentials"}, timeout=30)
    assert t.json()["token_type"] == "Bearer"


def test_token_accepts_http_basic_client_authentication(emulator: EmbeddedEmulator) -> None:
    r = requests.post(
        emulator.url + "/connect/token",
        data={"grant_type": "client_credentials"},
        auth=("attach", "attach-secret"),
        timeout=30,
    )
    assert r.status_code == 200
    assert r.json()["access_token"]


def test_bad_bearer_token_is_401(emulator: EmbeddedEmulator) -> None:
    r = requests.get(
        emulator.odata_url + "/Case?$top=1",
        headers={"Authorization": "Bearer not-a-token"},
        timeout=30,
    )
    assert r.status_code == 401
    assert "Bearer" in r.headers["WWW-Authenticate"]


def test_expired_bearer_token_is_401(emulator_factory: Callable[..., EmbeddedEmulator]) -> None:
    emu = emulator_factory(token_lifetime=0.5)
    body = token(emu).json()
    assert body["expires_in"] == 1
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    url = emu.odata_url + "/Case?$top=1"
    assert requests.get(url, headers=auth, timeout=30).status_code == 200
    wait_until_no_live_session(emu, "tokens")
    assert requests.get(url, headers=auth, timeout=30).status_code == 401


def test_custom_users_and_clients(emulator_factory: Callable[..., EmbeddedEmulator]) -> None:
    emu = emulator_factory(users={"Integrator": "pw-1"}, oauth_clients={"svc": "sec-2"})
    login(emu, "Integrator", "pw-1")
    r = requests.post(
        emu.url + LOGIN, json={"UserName": "Supervisor", "UserPassword": "Supervisor"}, timeout=30
    )
    assert r.json()["Code"] == 1
    assert token(emu, client_id="svc", client_secret="sec-2").status_code == 200
    assert token(emu).json()["error"] == "invalid_client"


class ManualClock:
    """A monotonic clock moved by hand (the Sessions table takes its clock as a parameter)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sessions_table(clock: ManualClock, faults: str | None = None) -> Sessions:
    return Sessions(
        {"Supervisor": "Supervisor"},
        {"attach": "attach-secret"},
        session_idle=60.0,
        token_lifetime=300.0,
        faults=Faults(faults),
        clock=clock,
    )


def test_activity_keeps_a_session_alive_and_idleness_ends_it() -> None:
    clock = ManualClock()
    table = sessions_table(clock)
    session = table.login("Supervisor", "Supervisor")
    assert session is not None
    for _ in range(5):
        clock.now += 59.0
        assert table.use_session(session.aspxauth, None) is session
    clock.now += 60.5
    assert table.use_session(session.aspxauth, None) is None
    clock.now -= 30.0  # even back in time: an ended session never comes back
    assert table.use_session(None, session.session_id) is None


def test_tokens_expire_after_their_lifetime_whatever_the_activity() -> None:
    clock = ManualClock()
    table = sessions_table(clock)
    token = table.issue_token("attach")
    clock.now += 299.0
    assert table.use_token(token.value) is token
    clock.now += 1.0
    assert table.use_token(token.value) is None


def test_expire_after_n_requests_counts_per_session() -> None:
    table = sessions_table(ManualClock(), faults="expire@after=2")
    first = table.login("Supervisor", "Supervisor")
    second = table.login("Supervisor", "Supervisor")
    assert first is not None and second is not None
    assert table.use_session(first.aspxauth, None) is first
    assert table.use_session(first.aspxauth, None) is first
    assert table.use_session(second.aspxauth, None) is second
    assert table.use_session(first.aspxauth, None) is None
    assert table.use_session(second.aspxauth, None) is second


def test_secrets_stay_out_of_reprs() -> None:
    table = sessions_table(ManualClock())
    session = table.login("Supervisor", "Supervisor")
    token = table.issue_token("attach")
    assert session is not None
    for text in (repr(session), repr(token), repr(table)):
        assert session.aspxauth not in text
        assert session.csrf not in text
        assert token.value not in text
        assert "attach-secret" not in text
