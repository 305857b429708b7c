"""Running the emulator: `creatio-attach emulator` as a real subprocess, and `EmbeddedEmulator`.

Issue 2 rule 1: one `listening on http://HOST:PORT` line once it accepts connections, a clean
stop (exit 0) on SIGTERM and SIGINT, data that survives a restart with the same `--data`.
"""

from __future__ import annotations

import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from creatio_attach.emulator import EmbeddedEmulator, EmulatorOptions

LISTENING = re.compile(r"^listening on (https?://127\.0\.0\.1:(\d+))$")
FORCE = {"ForceUseSession": "true"}


class Cli:
    """One `python -m creatio_attach emulator ...` subprocess."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "creatio_attach", "emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.url = ""

    def wait_listening(self, timeout: float = 30.0) -> str:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                pytest.fail("the emulator printed nothing")
        line = self.proc.stdout.readline().rstrip("\n")
        m = LISTENING.match(line)
        assert m, f"unexpected first line {line!r}; stderr: {self.stderr_now()}"
        self.url = m.group(1)
        return self.url

    def stderr_now(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> tuple[int, str, str]:
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def cli() -> Iterator[list[Cli]]:
    started: list[Cli] = []
    yield started
    for c in started:
        c.kill()


def run(started: list[Cli], *args: str) -> Cli:
    c = Cli(*args)
    started.append(c)
    return c


def login(
    url: str,
    user: str = "Supervisor",
    password: str = "Supervisor",  # noqa: S107
) -> requests.Session:
    s = requests.Session()
    r = s.post(
        url + "/ServiceModel/AuthService.svc/Login",
        json={"UserName": user, "UserPassword": password},
        headers=FORCE,
    )
    assert r.json()["Code"] == 0
    s.headers.update({**FORCE, "BPMCSRF": s.cookies["BPMCSRF"]})
    return s


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_the_command_says_where_it_listens_and_stops_cleanly(
    cli: list[Cli], tmp_path: Path, signum: int
) -> None:
    c = run(cli, "--data", str(tmp_path / "data"))
    url = c.wait_listening()
    assert url.startswith("http://")  # https only with --tls-cert/--tls-key (test_tls.py)
    s = login(url)
    assert s.get(url + "/0/odata/Case?$top=1").status_code == 200
    code, out, err = c.stop(signum)
    assert code == 0, err
    assert out == ""  # the listening line was the only output
    assert "Traceback" not in err


def test_data_survives_a_restart_with_the_same_data_dir(cli: list[Cli], tmp_path: Path) -> None:
    data = tmp_path / "data"
    case_id = str(uuid.uuid4())
    first = run(cli, "--data", str(data))
    url = first.wait_listening()
    s = login(url)
    assert s.post(url + "/0/odata/Case", json={"Id": case_id, "Number": "SR-7"}).status_code == 201
    f = s.post(url + "/0/odata/CaseFile", json={"Name": "kept.txt", "CaseId": case_id}).json()
    assert s.put(f"{url}/0/odata/CaseFile({f['Id']})/Data", data=b"kept bytes").status_code == 200
    assert first.stop()[0] == 0

    second = run(cli, "--data", str(data))
    url = second.wait_listening()
    s = login(url)
    assert s.get(f"{url}/0/odata/Case({case_id})").json()["Number"] == "SR-7"
    assert s.get(f"{url}/0/odata/CaseFile({f['Id']})/Data").content == b"kept bytes"
    assert second.stop()[0] == 0


def test_options_reach_the_server(cli: list[Cli], tmp_path: Path) -> None:
    c = run(
        cli,
        "--runtime", "netcore",
        "--user", "Integrator:pw:with:colons",
        "--oauth-client", "svc:sec",
        "--schema", "UsrRealty",
        "--max-request-bytes", "1000",
        "--faults", "seed=3; 503@every=2:path=/UsrRealty",
    )  # fmt: skip
    url = c.wait_listening()
    s = login(url, "Integrator", "pw:with:colons")
    assert s.get(url + "/odata/UsrRealty?$top=1").status_code == 200
    assert s.get(url + "/odata/UsrRealty?$top=1").status_code == 503
    assert s.post(url + "/odata/Case", data=b"x" * 1001).status_code == 413
    token = requests.post(
        url + "/connect/token",
        data={"client_id": "svc", "client_secret": "sec", "grant_type": "client_credentials"},
        timeout=30,
    )
    assert token.status_code == 200
    code, _, err = c.stop()
    assert code == 0
    assert "seed=3" in err  # printed so that a failing run can be replayed


def test_max_file_bytes_reaches_both_upload_routes(cli: list[Cli]) -> None:
    c = run(cli, "--max-file-bytes", "100")
    url = c.wait_listening()
    s = login(url)
    case_id = str(uuid.uuid4())
    assert s.post(url + "/0/odata/Case", json={"Id": case_id}).status_code == 201
    f = s.post(url + "/0/odata/CaseFile", json={"Name": "a.bin", "CaseId": case_id}).json()
    data = f"{url}/0/odata/CaseFile({f['Id']})/Data"
    octets = {"Content-Type": "application/octet-stream"}
    assert s.put(data, data=b"x" * 101, headers=octets).status_code == 413
    assert s.put(data, data=b"x" * 100, headers=octets).status_code == 200
    chunk = s.post(
        url + "/0/rest/FileApiService/UploadFile",
        params={
            "fileId": str(uuid.uuid4()),
            "totalFileLength": "101",
            "mimeType": "application/octet-stream",
            "fileName": "b.bin",
            "columnName": "Data",
            "entitySchemaName": "CaseFile",
        },
        data=b"y" * 101,
        headers={**octets, "Content-Range": "bytes 0-100/101"},
    )
    assert chunk.status_code == 200
    assert chunk.json()["errorInfo"]["errorCode"] == "FileSizeLimitExceeded", chunk.text
    assert c.stop()[0] == 0


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["--faults", "503@p=7"], "--faults"),
        (["--user", "no-colon-secret"], "--user"),
        (["--oauth-client", "justanid"], "--oauth-client"),
        (["--schema", "Realty"], "--schema"),
        (["--runtime", "mono"], "--runtime"),
        (["--max-file-bytes", "0"], "--max-file-bytes"),
        (["--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"], "--tls-"),
    ],
)
def test_bad_options_exit_2_without_echoing_secrets(args: list[str], hint: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "creatio_attach", "emulator", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert hint in r.stderr
    assert "listening on" not in r.stdout
    assert "no-colon-secret" not in r.stderr


def test_a_taken_port_is_one_readable_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        r = subprocess.run(
            [sys.executable, "-m", "creatio_attach", "emulator", "--port", port],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 1
    assert "cannot listen" in r.stderr
    assert "Traceback" not in r.stderr


def test_help_shows_no_secret() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "creatio_attach", "emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0
    assert "--faults" in r.stdout
    assert "--tls-cert FILE" in r.stdout and "--tls-key FILE" in r.stdout
    # contract 8.6: the file size limit defaults to 2 GB - 1
    assert re.search(r"--max-file-bytes.*\[default:\s+2147483647", r.stdout, re.DOTALL)
    assert "attach-secret" not in r.stdout
    assert "Supervisor:Supervisor" not in r.stdout


def test_embedded_emulator_on_a_free_port_with_a_temporary_data_dir() -> None:
    emu = EmbeddedEmulator(EmulatorOptions()).start()
    data_dir = emu.data_dir
    assert data_dir is not None
    assert data_dir.is_dir()
    assert emu.port > 0
    assert emu.url == f"http://127.0.0.1:{emu.port}"
    with EmbeddedEmulator(EmulatorOptions()) as other:
        assert other.port != emu.port
        assert requests.get(other.url + "/__emulator__/health", timeout=30).json() == {"ok": True}
    assert requests.get(emu.url + "/__emulator__/health", timeout=30).json() == {"ok": True}
    emu.stop()
    emu.stop()  # idempotent
    assert not data_dir.exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.url + "/__emulator__/health", timeout=5)


def test_embedded_emulator_keeps_a_given_data_dir(tmp_path: Path) -> None:
    with EmbeddedEmulator(EmulatorOptions(data_dir=tmp_path / "d")) as emu:
        case = requests.post(
            emu.url + "/__emulator__/records/Case", json={"Number": "SR-1"}, timeout=30
        ).json()
        assert emu.store.get("Case", case["Id"]) is not None
    assert (tmp_path / "d" / "emulator.sqlite3").exists()
    with EmbeddedEmulator(EmulatorOptions(data_dir=tmp_path / "d")) as emu:
        assert emu.store.get("Case", case["Id"])["Number"] == "SR-1"  # type: ignore[index]


def test_keep_alive_connection_serves_many_requests_and_stop_closes_it() -> None:
    emu = EmbeddedEmulator(EmulatorOptions()).start()
    try:
        with requests.Session() as s:
            for _ in range(20):
                assert s.get(emu.url + "/0/ping").status_code == 200
            started = time.monotonic()
            emu.stop()  # an idle keep-alive connection must not hold the stop up
            assert time.monotonic() - started < 15
    finally:
        emu.stop()


def test_options_repr_hides_passwords() -> None:
    options = EmulatorOptions(users={"U": "hunter2"}, oauth_clients={"c": "s3cr3t"})
    assert "hunter2" not in repr(options)
    assert "s3cr3t" not in repr(options)
