"""The Creatio client over HTTPS against the emulator with a private CA's certificate.

TLS is verified by default (`verify_tls = true`): a certificate from a CA the system does not
know is refused, with a `CreatioUnavailable` whose hint names `ca_bundle`, after a bounded number
of attempts. `ca_bundle` pointing at the CA makes it work (upload and download byte-identical);
`verify_tls = false` works too, and urllib3 warns. Certificates are made at test time with the
`openssl` command (tests/emulator/test_tls.py).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import structlog
from urllib3.exceptions import InsecureRequestWarning

from creatio_attach.creatio import CreatioClient, Target
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import CreatioError, CreatioUnavailable
from tests.conftest import CorpusFile
from tests.emulator.test_tls import PrivateCA, make_private_ca
from tests.test_cli import ENTRY, clean_env

PASSWORD = "Tls-pa55-not-for-logs"
CA_ENVIRONMENT = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return make_private_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def no_ca_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client reads these when `ca_bundle` is unset; the test host may set them."""
    for name in CA_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls_emulator(
    ca: PrivateCA, emulator_factory: Callable[..., EmbeddedEmulator]
) -> EmbeddedEmulator:
    return emulator_factory(
        users={"Supervisor": PASSWORD}, tls_cert=ca.server_cert, tls_key=ca.server_key
    )


def admin(emu: EmbeddedEmulator, ca: PrivateCA, method: str, path: str, **kw: Any) -> Any:
    """The emulator's admin API over HTTPS (an explicit `verify` beats $REQUESTS_CA_BUNDLE)."""
    answer = requests.request(
        method, f"{emu.url}/__emulator__/{path}", verify=str(ca.ca_cert), timeout=30, **kw
    )
    answer.raise_for_status()
    return answer.json() if answer.content else None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_private_ca_is_refused_by_default_without_retrying_the_same_handshake(
    tls_emulator: EmbeddedEmulator,
    ca: PrivateCA,
    client_for: Callable[..., CreatioClient],
    no_ca_environment: None,
) -> None:
    client = client_for(tls_emulator, password=PASSWORD)
    assert client.settings.verify_tls is True and client.settings.ca_bundle is None
    with structlog.testing.capture_logs() as logs, pytest.raises(CreatioUnavailable) as caught:
        client.login()
    error = caught.value
    assert isinstance(error, CreatioError)
    assert "TLS failed" in error.message
    assert error.hint is not None and "ca_bundle" in error.hint
    assert error.status is None and error.retry_after is None
    for text in (str(error), repr(error), error.message, error.hint):
        assert PASSWORD not in text
    # a certificate that fails verification fails the same way a second later: no retries
    # within the call (the daemon tries again on its own schedule, see test_daemon_*)
    assert error.retry_soon is False
    assert [e for e in logs if e["event"] == "creatio.retry"] == []
    assert PASSWORD not in repr(logs)
    # nothing got through the handshake
    assert admin(tls_emulator, ca, "GET", "requests") == []


def test_with_ca_bundle_the_client_uploads_and_downloads_byte_identical(
    tls_emulator: EmbeddedEmulator,
    ca: PrivateCA,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
    no_ca_environment: None,
    tmp_path: Path,
) -> None:
    case_id = admin(tls_emulator, ca, "POST", "records/Case", json={"Number": "SR-TLS"})["Id"]
    client = client_for(tls_emulator, password=PASSWORD, ca_bundle=ca.ca_cert, verify="download")
    assert client.find_parent("Case", {"Number": "SR-TLS"}) == case_id
    item = corpus_by_name["filetype-fixture.docx"]
    result = client.upload(
        item.path, Target.for_file_object("CaseFile", case_id), mime=item.expected_mime
    )
    assert (result.bytes, result.sha256) == (item.size, item.sha256)
    [attachment] = client.list_attachments("Case", case_id)
    assert attachment.id == result.record_id
    back = tmp_path / "back.docx"
    assert client.download("CaseFile", result.record_id, back) == item.size
    assert sha256(back) == item.sha256
    stored = admin(tls_emulator, ca, "GET", "files")
    assert [(f["id"], f["sha256"]) for f in stored] == [(result.record_id, item.sha256)]


def test_requests_ca_bundle_in_the_environment_is_honoured_without_ca_bundle(
    tls_emulator: EmbeddedEmulator,
    ca: PrivateCA,
    client_for: Callable[..., CreatioClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.ca_cert))
    client = client_for(tls_emulator, password=PASSWORD)
    client.login()
    assert client.runtime == "netframework"


def test_a_certificate_of_another_ca_is_refused_even_with_a_ca_bundle(
    tls_emulator: EmbeddedEmulator,
    client_for: Callable[..., CreatioClient],
    tmp_path: Path,
) -> None:
    other = make_private_ca(tmp_path / "other")
    client = client_for(tls_emulator, password=PASSWORD, ca_bundle=other.ca_cert)
    with pytest.raises(CreatioUnavailable, match="TLS failed"):
        client.login()


def test_a_certificate_for_another_host_name_is_refused(
    emulator_factory: Callable[..., EmbeddedEmulator],
    client_for: Callable[..., CreatioClient],
    tmp_path: Path,
) -> None:
    wrong = make_private_ca(tmp_path / "wrong-name", names=("DNS:crm.example.invalid",))
    emu = emulator_factory(tls_cert=wrong.server_cert, tls_key=wrong.server_key)
    client = client_for(emu, ca_bundle=wrong.ca_cert)
    with pytest.raises(CreatioUnavailable, match="TLS failed") as caught:
        client.login()
    assert caught.value.hint is not None and "certificate" in caught.value.hint


def test_verify_tls_false_works_and_urllib3_warns(
    tls_emulator: EmbeddedEmulator,
    ca: PrivateCA,
    client_for: Callable[..., CreatioClient],
    corpus_by_name: dict[str, CorpusFile],
    no_ca_environment: None,
) -> None:
    case_id = admin(tls_emulator, ca, "POST", "records/Case", json={"Number": "SR-NOVERIFY"})["Id"]
    client = client_for(tls_emulator, password=PASSWORD, verify_tls=False)
    item = corpus_by_name["filetype-fixture.pdf"]
    with pytest.warns(InsecureRequestWarning):
        result = client.upload(item.path, Target.for_file_object("CaseFile", case_id))
        client.close()  # the logout is unverified too
    assert result.sha256 == item.sha256
    assert [f["sha256"] for f in admin(tls_emulator, ca, "GET", "files")] == [item.sha256]


def run_check(url: str, config: Path | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert ENTRY, "creatio-attach is not installed next to this Python"
    env = {k: v for k, v in clean_env().items() if k not in CA_ENVIRONMENT}
    env["CREATIO_ATTACH_PASSWORD"] = PASSWORD
    env["CREATIO_ATTACH_CONFIG"] = str(config or tmp_path / "absent.toml")
    return subprocess.run(
        [ENTRY, "check", "--url", url, "--username", "Supervisor"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )


def test_check_names_ca_bundle_for_a_private_ca_and_passes_with_it(
    tls_emulator: EmbeddedEmulator, ca: PrivateCA, tmp_path: Path
) -> None:
    refused = run_check(tls_emulator.url, None, tmp_path)
    text = refused.stdout + refused.stderr
    assert refused.returncode != 0, text
    assert "✗ login: " in refused.stdout
    assert "TLS failed" in text and "ca_bundle" in text
    assert "Traceback" not in text and PASSWORD not in text

    config = tmp_path / "config.toml"
    config.write_text(
        f'[creatio]\nurl = "{tls_emulator.url}"\nusername = "Supervisor"\n'
        f'ca_bundle = "{ca.ca_cert}"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    passed = run_check(tls_emulator.url, config, tmp_path)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"✓ login: {tls_emulator.url} as Supervisor" in passed.stdout
    assert PASSWORD not in passed.stdout + passed.stderr
