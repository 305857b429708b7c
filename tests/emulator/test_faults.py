"""Fault injection: the spec language, seeded replayable decisions, and each fault kind over HTTP.

Issue 2 rule 7: 500/502/503 (503 and 429 with Retry-After), a dropped connection after part of
the request body, added latency, sessions expiring after N requests, all driven by a seed.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.emulator.faults import FaultPlan, FaultSpecError

FORCE = {"ForceUseSession": "true"}


def bearer(emu: EmbeddedEmulator) -> dict[str, str]:
    r = requests.post(
        emu.url + "/connect/token",
        data={
            "client_id": "attach",
            "client_secret": "attach-secret",
            "grant_type": "client_credentials",
        },
        timeout=30,
    )
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def set_faults(emu: EmbeddedEmulator, spec: str | None) -> dict[str, object]:
    r = requests.put(emu.url + "/__emulator__/faults", json={"spec": spec}, timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json())


def statuses(emu: EmbeddedEmulator, auth: dict[str, str], n: int) -> list[int]:
    with requests.Session() as s:
        return [s.get(emu.odata_url + "/Case?$top=1", headers=auth).status_code for _ in range(n)]


# --- the spec language -----------------------------------------------------------------------


def test_a_full_spec_parses_into_rules() -> None:
    plan = FaultPlan.parse(
        "seed=7; 503@p=0.1; 500@every=5; 429@p=0.05:retry-after=3; drop@every=7:after=64k; "
        "latency=10ms-50ms; 502@every=2:path=/Data$:method=put,post; expire@after=100"
    )
    assert plan.seed == 7
    assert plan.expire_after == 100
    kinds = [(r.kind, r.status) for r in plan.rules]
    assert kinds == [
        ("status", 503),
        ("status", 500),
        ("status", 429),
        ("drop", 0),
        ("latency", 0),
        ("status", 502),
        ("expire", 0),
    ]
    assert plan.rules[2].retry_after == 3
    assert plan.rules[3].after == 65536
    assert plan.rules[4].latency == (0.01, 0.05)
    assert plan.rules[5].methods == frozenset({"PUT", "POST"})


@pytest.mark.parametrize(
    "spec",
    [
        "404@p=0.1",  # not a fault status
        "503@p=1.5",
        "503@p=0.1:every=3",
        "500@every=0",
        "500@retry-after=3",  # Retry-After only on 503/429
        "drop@after=lots",
        "latency=fast",
        "latency=50ms-10ms",
        "expire",
        "503@p=0.1:path=(",
        "seed=x",
        "503@p=0.1:colour=red",
    ],
)
def test_a_bad_spec_is_refused_with_the_rule_named(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        FaultPlan.parse(spec)


def test_the_same_seed_replays_the_same_decisions() -> None:
    def run(spec: str) -> list[int]:
        plan = FaultPlan.parse(spec)
        out = []
        for _ in range(200):
            action = plan.decide("GET", "/0/odata/Case", exempt=False).action
            out.append(action.status if action else 200)
        return out

    first = run("seed=42; 503@p=0.3; 500@p=0.2")
    assert first == run("seed=42; 503@p=0.3; 500@p=0.2")
    assert first != run("seed=43; 503@p=0.3; 500@p=0.2")
    assert {200, 500, 503} == set(first)


def test_without_a_seed_one_is_chosen_and_reported() -> None:
    plan = FaultPlan.parse("503@p=0.5")
    assert isinstance(plan.seed, int)
    assert plan.describe()["seed"] == plan.seed


# --- over HTTP --------------------------------------------------------------------------------


def test_every_nth_request_gets_500_with_the_aspnet_body(
    emulator_factory: Callable[..., EmbeddedEmulator],
) -> None:
    emu = emulator_factory(faults="500@every=3")
    auth = bearer(emu)
    assert statuses(emu, auth, 9) == [200, 200, 500] * 3
    assert statuses(emu, auth, 2) == [200, 200]
    r = requests.get(emu.odata_url + "/Case?$top=1", headers=auth, timeout=30)
    assert r.status_code == 500
    assert r.json()["Message"] == "An error has occurred."
    assert r.headers["X-Emulator-Fault"] == "500@every=3"


@pytest.mark.parametrize(
    ("spec", "status", "retry_after"),
    [
        ("503@every=1", 503, "1"),
        ("429@every=1:retry-after=7", 429, "7"),
        ("502@every=1", 502, None),
    ],
)
def test_status_faults_and_retry_after(
    emulator: EmbeddedEmulator, spec: str, status: int, retry_after: str | None
) -> None:
    auth = bearer(emulator)
    set_faults(emulator, spec)
    r = requests.get(emulator.odata_url + "/Case?$top=1", headers=auth, timeout=30)
    assert r.status_code == status
    assert r.headers.get("Retry-After") == retry_after
    set_faults(emulator, None)
    assert (
        requests.get(emulator.odata_url + "/Case?$top=1", headers=auth, timeout=30).status_code
        == 200
    )


def test_a_seeded_spec_replays_the_same_statuses_over_http(emulator: EmbeddedEmulator) -> None:
    auth = bearer(emulator)
    spec = "seed=7; 503@p=0.4; 429@p=0.2"
    set_faults(emulator, spec)
    first = statuses(emulator, auth, 40)
    set_faults(emulator, spec)  # installing it again restarts the RNG and the counters
    assert statuses(emulator, auth, 40) == first
    assert {200, 503, 429} == set(first)
    set_faults(emulator, "seed=8; 503@p=0.4; 429@p=0.2")
    assert statuses(emulator, auth, 40) != first


def test_path_and_method_scope_a_rule(emulator: EmbeddedEmulator) -> None:
    auth = bearer(emulator)
    case_id = requests.post(emulator.odata_url + "/Case", json={}, headers=auth, timeout=30).json()[
        "Id"
    ]
    file_id = requests.post(
        emulator.odata_url + "/CaseFile",
        json={"Name": "a.bin", "CaseId": case_id},
        headers=auth,
        timeout=30,
    ).json()["Id"]
    set_faults(emulator, "503@every=1:path=/Data$:method=PUT")
    data_url = f"{emulator.odata_url}/CaseFile({file_id})/Data"
    assert requests.put(data_url, data=b"abc", headers=auth, timeout=30).status_code == 503
    assert (
        requests.get(emulator.odata_url + "/Case?$top=1", headers=auth, timeout=30).status_code
        == 200
    )
    assert requests.delete(data_url, headers=auth, timeout=30).status_code == 204


def test_login_is_spared_unless_a_rule_names_it(emulator: EmbeddedEmulator) -> None:
    login = emulator.url + "/ServiceModel/AuthService.svc/Login"
    creds = {"UserName": "Supervisor", "UserPassword": "Supervisor"}
    set_faults(emulator, "503@every=1")
    assert requests.post(login, json=creds, timeout=30).status_code == 200
    assert requests.post(emulator.url + "/connect/token", data={}, timeout=30).status_code == 400
    set_faults(emulator, "503@every=1:path=AuthService.svc/Login$")
    assert requests.post(login, json=creds, timeout=30).status_code == 503


def test_faults_never_touch_the_admin_api(emulator: EmbeddedEmulator) -> None:
    set_faults(emulator, "500@every=1; drop@every=1")
    assert requests.get(emulator.url + "/__emulator__/health", timeout=30).json() == {"ok": True}
    assert requests.get(emulator.url + "/__emulator__/faults", timeout=30).status_code == 200


def test_drop_cuts_the_connection_after_part_of_the_body(emulator: EmbeddedEmulator) -> None:
    auth = bearer(emulator)
    case_id = requests.post(emulator.odata_url + "/Case", json={}, headers=auth, timeout=30).json()[
        "Id"
    ]
    file_id = requests.post(
        emulator.odata_url + "/CaseFile",
        json={"Name": "big.bin", "CaseId": case_id},
        headers=auth,
        timeout=30,
    ).json()["Id"]
    set_faults(emulator, "drop@every=1:after=64k:path=/Data$")
    data_url = f"{emulator.odata_url}/CaseFile({file_id})/Data"
    with pytest.raises(requests.ConnectionError):
        requests.put(data_url, data=b"x" * (4 * 1024 * 1024), headers=auth, timeout=30)
    log = requests.get(emulator.url + "/__emulator__/requests", timeout=30).json()
    dropped = [e for e in log if e["path"].endswith("/Data")]
    assert dropped[-1]["status"] == 0
    assert dropped[-1]["bytes_in"] >= 65536
    # nothing was stored and the server goes on serving
    set_faults(emulator, None)
    assert requests.get(data_url, headers=auth, timeout=30).content == b""
    assert (
        requests.get(emulator.odata_url + "/Case?$top=1", headers=auth, timeout=30).status_code
        == 200
    )


def test_drop_before_any_body_on_a_small_request(emulator: EmbeddedEmulator) -> None:
    auth = bearer(emulator)
    set_faults(emulator, "drop@every=2")
    with requests.Session() as s:
        assert s.get(emulator.odata_url + "/Case?$top=1", headers=auth).status_code == 200
        with pytest.raises(requests.ConnectionError):
            s.post(emulator.odata_url + "/Case", json={"Subject": "lost"}, headers=auth)


def test_latency_delays_matching_requests(emulator: EmbeddedEmulator) -> None:
    auth = bearer(emulator)
    set_faults(emulator, "latency=300ms:path=/Case$")
    requests.delete(emulator.url + "/__emulator__/requests", timeout=30)
    assert (
        requests.get(emulator.odata_url + "/Case?$top=1", headers=auth, timeout=30).status_code
        == 200
    )
    assert (
        requests.get(emulator.odata_url + "/$metadata", headers=auth, timeout=30).status_code == 200
    )
    log = {
        e["path"]: e
        for e in requests.get(emulator.url + "/__emulator__/requests", timeout=30).json()
    }
    assert log["/0/odata/Case"]["duration_ms"] >= 300
    assert (
        requests.get(emulator.url + "/__emulator__/faults", timeout=30).json()["rules"][0]["fired"]
        == 1
    )


def test_sessions_expire_after_n_requests(
    emulator_factory: Callable[..., EmbeddedEmulator],
) -> None:
    emu = emulator_factory(faults="expire@after=3")
    s = requests.Session()
    r = s.post(
        emu.url + "/ServiceModel/AuthService.svc/Login",
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
    )
    assert r.json()["Code"] == 0
    url = emu.odata_url + "/Case?$top=1"
    assert [s.get(url, headers=FORCE).status_code for _ in range(4)] == [200, 200, 200, 401]
    auth = bearer(emu)
    assert statuses(emu, auth, 4) == [200, 200, 200, 401]


def test_put_of_a_bad_spec_is_400_and_keeps_the_old_plan(emulator: EmbeddedEmulator) -> None:
    set_faults(emulator, "seed=1; 503@p=0.5")
    r = requests.put(emulator.url + "/__emulator__/faults", json={"spec": "503@p=2"}, timeout=30)
    assert r.status_code == 400
    assert "503@p=2" in r.json()["error"]
    current = requests.get(emulator.url + "/__emulator__/faults", timeout=30).json()
    assert current["spec"] == "seed=1; 503@p=0.5"
    assert current["seed"] == 1
