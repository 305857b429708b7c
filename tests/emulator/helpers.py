"""Helpers for the emulator's data-side tests: a logged-in ``requests`` session and seeding.

Tests talk to the emulator over real HTTP with ``requests`` (never the project's client).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any, Protocol

import requests

ZERO_GUID = "00000000-0000-0000-0000-000000000000"


class EmulatorLike(Protocol):
    """An embedded emulator or a subprocess one: its site root, workspace and OData URLs."""

    @property
    def url(self) -> str: ...
    @property
    def ws_url(self) -> str: ...
    @property
    def odata_url(self) -> str: ...


class Api:
    """A forms-authenticated session against one emulator (cookies + BPMCSRF + ForceUseSession)."""

    def __init__(self, emu: EmulatorLike) -> None:
        self.emu = emu
        self.odata = emu.odata_url
        self.ws = emu.ws_url
        self.session = requests.Session()
        r = self.session.post(
            f"{emu.url}/ServiceModel/AuthService.svc/Login",
            json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
            headers={"ForceUseSession": "true"},
            timeout=10,
        )
        assert r.status_code == 200 and r.json()["Code"] == 0, r.text
        self.session.headers.update(
            {"BPMCSRF": self.session.cookies["BPMCSRF"], "ForceUseSession": "true"}
        )

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(f"{self.odata}/{path}", timeout=30, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.session.post(f"{self.odata}/{path}", json=body, timeout=30, **kw)

    def patch(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.session.patch(f"{self.odata}/{path}", json=body, timeout=30, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.session.delete(f"{self.odata}/{path}", timeout=30, **kw)

    def put_data(self, entity: str, record_id: str, data: Any, **kw: Any) -> requests.Response:
        headers = kw.pop("headers", {"Content-Type": "application/octet-stream"})
        return self.session.put(
            f"{self.odata}/{entity}({record_id})/Data",
            data=data,
            headers=headers,
            timeout=120,
            **kw,
        )

    def query(self, entity: str, **params: str) -> requests.Response:
        return self.get(entity, params={f"${k}": v for k, v in params.items()})

    def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.post(entity, body)
        assert r.status_code == 201, r.text
        row: dict[str, Any] = r.json()
        return row

    def upload_chunk(
        self, data: Any, *, headers: dict[str, str] | None = None, **params: Any
    ) -> requests.Response:
        return self.session.post(
            f"{self.ws}/rest/FileApiService/UploadFile",
            params=params,
            data=data,
            headers=headers or {},
            timeout=120,
        )


def seed(emu: EmulatorLike, entity: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert parents through the admin API (not part of Creatio)."""
    r = requests.post(f"{emu.url}/__emulator__/records/{entity}", json=rows, timeout=30)
    assert r.status_code == 201, r.text
    created: list[dict[str, Any]] = r.json()
    return created


def odata_error_message(r: requests.Response) -> str:
    """The message of an OData error envelope (asserting the shape on the way)."""
    body = r.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    message: str = body["error"]["message"]
    return message


def seeded_stream(total: int, seed_value: int = 7, piece: int = 1 << 20) -> Iterator[bytes]:
    """``total`` pseudo-random bytes generated piece by piece (never all in memory)."""
    counter = 0
    sent = 0
    block = b""
    while sent < total:
        if not block:
            block = hashlib.sha256(f"{seed_value}:{counter}".encode()).digest() * (piece // 32)
            counter += 1
        take = min(len(block), total - sent)
        yield block[:take]
        sent += take
        block = b""


def seeded_sha256(total: int, seed_value: int = 7) -> str:
    digest = hashlib.sha256()
    for chunk in seeded_stream(total, seed_value):
        digest.update(chunk)
    return digest.hexdigest()


def logged(emu: EmulatorLike, method: str, path_part: str) -> list[dict[str, Any]]:
    """Entries of the emulator's request log (admin API) for finished requests like this."""
    r = requests.get(f"{emu.url}/__emulator__/requests", timeout=10)
    return [e for e in r.json() if e["method"] == method and path_part in e["path"]]
