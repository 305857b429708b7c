"""The `/__emulator__/` admin API (not Creatio): request log, reset, files, records, faults.

Issue 2 rule 8.
"""

from __future__ import annotations

import hashlib

import requests

from creatio_attach.emulator import EmbeddedEmulator

FORCE = {"ForceUseSession": "true"}


def login(emu: EmbeddedEmulator) -> requests.Session:
    s = requests.Session()
    r = s.post(
        emu.url + "/ServiceModel/AuthService.svc/Login",
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
        headers=FORCE,
    )
    assert r.json()["Code"] == 0
    s.headers.update({**FORCE, "BPMCSRF": s.cookies["BPMCSRF"]})
    return s


def admin(emu: EmbeddedEmulator, path: str) -> str:
    return emu.url + "/__emulator__/" + path


def test_health(emulator: EmbeddedEmulator) -> None:
    r = requests.get(admin(emulator, "health"), timeout=30)
    assert r.status_code == 200
    assert r.json() == {"ok": True}


def test_the_request_log_records_each_request(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    s.post(emulator.odata_url + "/Case?x=1", json={"Subject": "logged"})
    requests.get(emulator.odata_url + "/Case?$top=1", headers=FORCE, timeout=30)
    requests.get(admin(emulator, "health"), timeout=30)
    log = requests.get(admin(emulator, "requests"), timeout=30).json()
    assert [e["path"] for e in log] == [
        "/ServiceModel/AuthService.svc/Login",
        "/0/odata/Case",
        "/0/odata/Case",
    ]
    login_entry, post, anonymous = log
    assert login_entry["auth"] == "none"
    assert login_entry["status"] == 200
    assert post["method"] == "POST"
    assert post["query"] == "x=1"
    assert post["status"] == 201
    assert post["content_type"] == "application/json"
    assert post["bytes_in"] == len(b'{"Subject": "logged"}')
    assert post["bytes_out"] > 0
    assert post["auth"] == "cookie"
    assert post["csrf_header"] is True
    assert post["force_use_session"] is True
    assert post["duration_ms"] >= 0
    assert anonymous["status"] == 401
    assert anonymous["auth"] == "none"
    assert anonymous["csrf_header"] is False
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    # no cookie, token or password appears in the log
    text = requests.get(admin(emulator, "requests"), timeout=30).text
    assert s.cookies["BPMCSRF"] not in text
    assert s.cookies[".ASPXAUTH"] not in text
    assert "Supervisor" not in text


def test_the_request_log_says_whether_force_use_session_was_true(
    emulator: EmbeddedEmulator,
) -> None:
    s = login(emulator)
    cookies = s.cookies
    url = emulator.odata_url + "/Case?$top=1"
    sent = [
        {"ForceUseSession": "true"},
        {"forceusesession": "TRUE"},  # header names and the value's case do not matter
        {"ForceUseSession": "false"},
        {},
    ]
    requests.delete(admin(emulator, "requests"), timeout=30)
    for headers in sent:  # the session's cookies; without them: 401 or 302 decided by the header
        assert requests.get(url, headers=headers, cookies=cookies, timeout=30).status_code == 200
        anonymous = requests.get(url, headers=headers, allow_redirects=False, timeout=30)
        assert anonymous.status_code == (401 if "true" in str(headers).lower() else 302)
    log = requests.get(admin(emulator, "requests"), timeout=30).json()
    assert [(e["auth"], e["status"], e["force_use_session"]) for e in log] == [
        ("cookie", 200, True),
        ("none", 401, True),
        ("cookie", 200, True),
        ("none", 401, True),
        ("cookie", 200, False),
        ("none", 302, False),
        ("cookie", 200, False),
        ("none", 302, False),
    ]


def test_the_request_log_since_and_clear(emulator: EmbeddedEmulator) -> None:
    requests.get(emulator.odata_url + "/Case", headers=FORCE, timeout=30)
    first = requests.get(admin(emulator, "requests"), timeout=30).json()
    last_seq = first[-1]["seq"]
    requests.get(emulator.odata_url + "/Contact", headers=FORCE, timeout=30)
    newer = requests.get(admin(emulator, "requests"), params={"since": last_seq}, timeout=30).json()
    assert [e["path"] for e in newer] == ["/0/odata/Contact"]
    assert requests.delete(admin(emulator, "requests"), timeout=30).status_code == 204
    assert requests.get(admin(emulator, "requests"), timeout=30).json() == []
    assert (
        requests.get(admin(emulator, "requests"), params={"since": "x"}, timeout=30).status_code
        == 400
    )


def test_seeding_records_as_an_object_or_a_list(emulator: EmbeddedEmulator) -> None:
    one = requests.post(
        admin(emulator, "records/Contact"), json={"Name": "Ada", "Phone": "+1 555"}, timeout=30
    )
    assert one.status_code == 201
    assert one.json()["Name"] == "Ada"
    ids = ["0c5e8a6e-4b5b-4f47-9d57-0000000000a1", "0c5e8a6e-4b5b-4f47-9d57-0000000000a2"]
    many = requests.post(
        admin(emulator, "records/Case"),
        json=[{"Id": ids[0], "Number": "SR-1"}, {"Id": ids[1], "Number": "SR-2"}],
        timeout=30,
    )
    assert many.status_code == 201
    assert [r["Id"] for r in many.json()] == ids
    s = login(emulator)
    got = s.get(f"{emulator.odata_url}/Case({ids[1]})").json()
    assert got["Number"] == "SR-2"


def test_seeding_errors(emulator: EmbeddedEmulator) -> None:
    assert requests.post(admin(emulator, "records/Nope"), json={}, timeout=30).status_code == 404
    assert requests.post(admin(emulator, "records/Case"), data=b"{", timeout=30).status_code == 400
    assert requests.post(admin(emulator, "records/Case"), json=[1], timeout=30).status_code == 400
    assert (
        requests.post(admin(emulator, "records/Case"), json={"NoSuch": 1}, timeout=30).status_code
        == 400
    )
    case = requests.post(admin(emulator, "records/Case"), json={}, timeout=30).json()
    again = requests.post(admin(emulator, "records/Case"), json={"Id": case["Id"]}, timeout=30)
    assert again.status_code == 409


def test_files_summary_has_the_sha256_of_stored_content(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    case = requests.post(admin(emulator, "records/Case"), json={}, timeout=30).json()
    f = s.post(emulator.odata_url + "/CaseFile", json={"Name": "n.txt", "CaseId": case["Id"]})
    assert f.status_code == 201
    content = b"hello attachments\n" * 100
    put = s.put(
        f"{emulator.odata_url}/CaseFile({f.json()['Id']})/Data",
        data=content,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert put.status_code == 200
    files = requests.get(admin(emulator, "files"), timeout=30).json()
    assert len(files) == 1
    entry = files[0]
    assert entry["entity"] == "CaseFile"
    assert entry["id"] == f.json()["Id"]
    assert entry["name"] == "n.txt"
    assert entry["size"] == len(content)
    assert entry["sha256"] == hashlib.sha256(content).hexdigest()
    assert entry["parent_schema"] == "Case"
    assert entry["parent_id"] == case["Id"]
    download = requests.get(admin(emulator, f"download/CaseFile/{entry['id']}"), timeout=30)
    assert download.content == content
    assert "n.txt" in download.headers["Content-Disposition"]


def test_download_of_a_record_without_content_is_404(emulator: EmbeddedEmulator) -> None:
    case = requests.post(admin(emulator, "records/Case"), json={}, timeout=30).json()
    f = requests.post(
        admin(emulator, "records/CaseFile"), json={"CaseId": case["Id"]}, timeout=30
    ).json()
    assert (
        requests.get(admin(emulator, f"download/CaseFile/{f['Id']}"), timeout=30).status_code == 404
    )
    assert requests.get(admin(emulator, f"download/Nope/{f['Id']}"), timeout=30).status_code == 404


def test_reset_drops_records_sessions_and_the_log(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    case = requests.post(
        admin(emulator, "records/Case"), json={"Subject": "gone"}, timeout=30
    ).json()
    assert s.get(f"{emulator.odata_url}/Case({case['Id']})").status_code == 200
    r = requests.post(admin(emulator, "reset"), timeout=30)
    assert r.status_code == 200
    assert requests.get(admin(emulator, "requests"), timeout=30).json() == []
    assert s.get(f"{emulator.odata_url}/Case({case['Id']})").status_code == 401
    again = login(emulator)
    assert again.get(f"{emulator.odata_url}/Case({case['Id']})").status_code == 404


def test_expire_sessions_ends_cookies_and_tokens(emulator: EmbeddedEmulator) -> None:
    s = login(emulator)
    token = requests.post(
        emulator.url + "/connect/token",
        data={
            "client_id": "attach",
            "client_secret": "attach-secret",
            "grant_type": "client_credentials",
        },
        timeout=30,
    ).json()["access_token"]
    assert requests.get(admin(emulator, "sessions"), timeout=30).json() == {
        "sessions": 1,
        "tokens": 1,
    }
    r = requests.post(admin(emulator, "sessions/expire"), timeout=30)
    assert r.json() == {"expired": 2}
    assert requests.get(admin(emulator, "sessions"), timeout=30).json() == {
        "sessions": 0,
        "tokens": 0,
    }
    url = emulator.odata_url + "/Case?$top=1"
    assert s.get(url).status_code == 401
    assert (
        requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code
        == 401
    )


def test_faults_get_and_put(emulator: EmbeddedEmulator) -> None:
    assert requests.get(admin(emulator, "faults"), timeout=30).json()["spec"] is None
    r = requests.put(admin(emulator, "faults"), json={"spec": "seed=5; 503@p=0.25"}, timeout=30)
    assert r.status_code == 200
    assert r.json()["seed"] == 5
    assert r.json()["rules"][0]["rule"] == "503@p=0.25"
    assert requests.put(admin(emulator, "faults"), json={"spec": 3}, timeout=30).status_code == 400
    assert (
        requests.put(admin(emulator, "faults"), json={"spec": None}, timeout=30).json()["spec"]
        is None
    )


def test_admin_calls_need_no_auth_and_are_not_logged(emulator: EmbeddedEmulator) -> None:
    for path in ("health", "files", "faults", "requests", "sessions"):
        assert requests.get(admin(emulator, path), timeout=30).status_code == 200
    assert requests.get(admin(emulator, "requests"), timeout=30).json() == []
