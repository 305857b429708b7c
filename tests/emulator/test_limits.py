"""The per-request body limit: 413 above `max_request_bytes`, by Content-Length or chunked.

Issue 2 rule 5 (IIS's 30,000,000-byte default, contract section 2.6); nothing is stored when the
limit is hit and the connection stays usable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import requests

from creatio_attach.emulator import EmbeddedEmulator

LIMIT = 100_000


@pytest.fixture
def small(emulator_factory: Callable[..., EmbeddedEmulator]) -> EmbeddedEmulator:
    return emulator_factory(max_request_bytes=LIMIT)


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


def new_file(emu: EmbeddedEmulator, auth: dict[str, str]) -> str:
    case_id = requests.post(emu.odata_url + "/Case", json={}, headers=auth, timeout=30).json()["Id"]
    r = requests.post(
        emu.odata_url + "/CaseFile",
        json={"Name": "big.bin", "CaseId": case_id},
        headers=auth,
        timeout=30,
    )
    assert r.status_code == 201
    return f"{emu.odata_url}/CaseFile({r.json()['Id']})/Data"


def chunks(total: int, size: int = 16_384) -> Iterator[bytes]:
    """A generator body: requests sends it with Transfer-Encoding: chunked."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"z" * n


def test_a_declared_length_above_the_limit_is_413(small: EmbeddedEmulator) -> None:
    auth = bearer(small)
    url = new_file(small, auth)
    with requests.Session() as s:
        r = s.put(url, data=b"a" * (LIMIT + 1), headers=auth)
        assert r.status_code == 413
        assert "text/html" in r.headers["Content-Type"]
        assert "413" in r.text
        assert "Request Entity Too Large" in r.text
        # the same keep-alive connection goes on working
        assert s.get(small.odata_url + "/Case?$top=1", headers=auth).status_code == 200
    assert requests.get(url, headers=auth, timeout=30).content == b""


def test_exactly_the_limit_is_accepted(small: EmbeddedEmulator) -> None:
    auth = bearer(small)
    url = new_file(small, auth)
    assert requests.put(url, data=b"a" * LIMIT, headers=auth, timeout=30).status_code == 200
    assert len(requests.get(url, headers=auth, timeout=30).content) == LIMIT


def test_a_chunked_body_above_the_limit_is_413_and_nothing_is_stored(
    small: EmbeddedEmulator,
) -> None:
    auth = bearer(small)
    url = new_file(small, auth)
    with requests.Session() as s:
        r = s.put(url, data=chunks(3 * LIMIT), headers=auth)
        assert r.status_code == 413
        assert "Request Entity Too Large" in r.text
        assert s.get(small.odata_url + "/Case?$top=1", headers=auth).status_code == 200
    assert requests.get(url, headers=auth, timeout=30).content == b""
    files = requests.get(small.url + "/__emulator__/files", timeout=30).json()
    assert all(f["sha256"] is None for f in files)


def test_a_chunked_body_under_the_limit_goes_through(small: EmbeddedEmulator) -> None:
    auth = bearer(small)
    url = new_file(small, auth)
    assert requests.put(url, data=chunks(LIMIT - 10), headers=auth, timeout=30).status_code == 200
    assert requests.get(url, headers=auth, timeout=30).content == b"z" * (LIMIT - 10)


def test_the_limit_applies_before_authentication(small: EmbeddedEmulator) -> None:
    r = requests.post(small.odata_url + "/Case", data=b"{" + b" " * LIMIT + b"}", timeout=30)
    assert r.status_code == 413


def test_the_default_limit_is_iis_default(emulator: EmbeddedEmulator) -> None:
    assert emulator.options.max_request_bytes == 30_000_000
    r = requests.post(
        emulator.odata_url + "/Case",
        data=b"",
        headers={"Content-Length": "30000001", "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 413
