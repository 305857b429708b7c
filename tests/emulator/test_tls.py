"""The emulator over HTTPS: `--tls-cert`/`--tls-key` and `EmulatorOptions(tls_cert, tls_key)`.

Certificates are made at test time with the `openssl` command in the test's own folder: a
private CA (never trusted by the system) and a server certificate it signs for 127.0.0.1 and
localhost. `make_private_ca` is also used by the client's TLS tests (tests/creatio/test_tls.py).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from creatio_attach.emulator import EmbeddedEmulator, EmulatorOptions
from creatio_attach.emulator.server import EmulatorStartError
from tests.emulator.test_server import Cli

FORCE = {"ForceUseSession": "true"}
LOCAL_NAMES = ("IP:127.0.0.1", "DNS:localhost")


@dataclass(frozen=True)
class PrivateCA:
    """A CA certificate and one server certificate (with its key) that the CA signed."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make test certificates (apt install openssl)")
    done = subprocess.run(
        [openssl, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"openssl {args[0]} failed: {done.stderr}"


def make_private_ca(folder: Path, names: Sequence[str] = LOCAL_NAMES) -> PrivateCA:
    """A new CA under `folder` and a server certificate for `names` (subjectAltName entries).

    EC P-256 keys (fast to make); the extensions satisfy strict X.509 checks (a critical CA
    basicConstraints, key usages, subject and authority key identifiers).
    """
    folder.mkdir(parents=True, exist_ok=True)
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", f"/CN=creatio-attach test CA {folder.name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", *curve, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=emulator",
        cwd=folder,
    )  # fmt: skip
    (folder / "server.ext").write_text(
        f"subjectAltName={','.join(names)}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n",
        encoding="ascii",
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "1", "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
        cwd=folder,
    )  # fmt: skip
    return PrivateCA(folder / "ca.pem", folder / "server.pem", folder / "server.key")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_private_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def commands() -> Iterator[list[Cli]]:
    started: list[Cli] = []
    yield started
    for c in started:
        c.kill()


def run_emulator(*args: str) -> subprocess.CompletedProcess[str]:
    """`creatio-attach emulator --port 0 ARGS` for options refused before serving."""
    return subprocess.run(
        [sys.executable, "-m", "creatio_attach", "emulator", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def login(url: str, ca_cert: Path) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # else $REQUESTS_CA_BUNDLE would win over s.verify (requests' rule)
    s.verify = str(ca_cert)
    r = s.post(
        url + "/ServiceModel/AuthService.svc/Login",
        json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
        headers=FORCE,
        timeout=30,
    )
    assert r.json()["Code"] == 0
    s.headers.update({**FORCE, "BPMCSRF": s.cookies["BPMCSRF"]})
    return s


def test_embedded_emulator_serves_https_with_the_given_certificate(
    ca: PrivateCA, tmp_path: Path
) -> None:
    options = EmulatorOptions(
        data_dir=tmp_path / "data", tls_cert=ca.server_cert, tls_key=ca.server_key
    )
    with EmbeddedEmulator(options) as emu:
        assert emu.url == f"https://127.0.0.1:{emu.port}"
        assert emu.odata_url == f"https://127.0.0.1:{emu.port}/0/odata"
        s = login(emu.url, ca.ca_cert)
        case = s.post(emu.odata_url + "/Case", json={"Number": "SR-TLS"}, timeout=30)
        assert case.status_code == 201
        assert s.get(emu.odata_url + "/Case?$top=1", timeout=30).json()["value"]
        # the certificate names localhost too
        health = requests.get(
            f"https://localhost:{emu.port}/__emulator__/health", verify=str(ca.ca_cert), timeout=30
        )
        assert health.json() == {"ok": True}
        # the system's CAs do not know the private CA
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            requests.get(emu.url + "/__emulator__/health", timeout=30)
        # plain HTTP on the TLS port gets no HTTP answer
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{emu.port}/__emulator__/health", timeout=30)


def test_the_command_serves_https_and_says_so(
    ca: PrivateCA, commands: list[Cli], tmp_path: Path
) -> None:
    c = Cli("--tls-cert", str(ca.server_cert), "--tls-key", str(ca.server_key))
    commands.append(c)
    url = c.wait_listening()
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", url)
    s = login(url, ca.ca_cert)
    assert s.get(url + "/0/odata/Case?$top=1", timeout=30).status_code == 200
    # stopped while the session's keep-alive connection is idle: an idle TLS client never
    # answers a polite close, so the emulator must cut it rather than wait and complain
    code, out, err = c.stop(signal.SIGTERM)
    assert code == 0, err
    assert out == ""
    assert "Traceback" not in err
    assert "graceful shutdown exceeded" not in err and "ERROR" not in err, err
    s.close()


@pytest.mark.parametrize("given", ["--tls-cert", "--tls-key"])
def test_a_certificate_without_its_key_is_a_usage_error(ca: PrivateCA, given: str) -> None:
    missing = "--tls-key" if given == "--tls-cert" else "--tls-cert"
    r = run_emulator(given, str(ca.server_cert if given == "--tls-cert" else ca.server_key))
    assert r.returncode == 2
    assert missing in r.stderr
    assert "listening on" not in r.stdout


def test_a_key_of_another_certificate_is_one_readable_line(ca: PrivateCA, tmp_path: Path) -> None:
    other = make_private_ca(tmp_path / "other")
    r = run_emulator("--tls-cert", str(ca.server_cert), "--tls-key", str(other.server_key))
    assert r.returncode == 1
    assert "listening on" not in r.stdout
    assert "Traceback" not in r.stderr
    assert "KEY_VALUES_MISMATCH" in r.stderr
    assert str(ca.server_cert) in r.stderr


def test_a_file_that_is_no_certificate_is_refused_before_serving(
    ca: PrivateCA, tmp_path: Path
) -> None:
    garbage = tmp_path / "not-a-cert.pem"
    garbage.write_text("hello\n", encoding="ascii")
    options = EmulatorOptions(data_dir=tmp_path / "data", tls_cert=garbage, tls_key=ca.server_key)
    with pytest.raises(EmulatorStartError, match="cannot use the TLS certificate"):
        EmbeddedEmulator(options).start()
    assert not (tmp_path / "data").exists()  # refused before the store was made


def test_an_encrypted_key_is_refused_instead_of_prompting(ca: PrivateCA, tmp_path: Path) -> None:
    encrypted = tmp_path / "encrypted.key"
    _openssl(
        "pkey", "-in", str(ca.server_key), "-aes-128-cbc", "-passout", "pass:k3y-pass",
        "-out", str(encrypted),
        cwd=tmp_path,
    )  # fmt: skip
    options = EmulatorOptions(tls_cert=ca.server_cert, tls_key=encrypted)
    with pytest.raises(EmulatorStartError, match="encrypted"):
        EmbeddedEmulator(options).start()


def test_options_need_both_certificate_and_key(ca: PrivateCA) -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        EmulatorOptions(tls_cert=ca.server_cert)
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        EmulatorOptions(tls_key=ca.server_key)
    assert EmulatorOptions().scheme == "http"
    assert EmulatorOptions(tls_cert=ca.server_cert, tls_key=ca.server_key).scheme == "https"
