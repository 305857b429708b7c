"""Helpers for the Creatio client's tests: clients bound to an emulator, seeding, the logs.

Every client here runs against a real emulator over loopback with a fast retry policy
(passed explicitly, nothing patched), so that retries and backoff stay quick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3
from pydantic import SecretStr

from creatio_attach.config import CreatioSettings
from creatio_attach.creatio import CreatioClient, RetryPolicy
from creatio_attach.creatio.http import where
from creatio_attach.creatio.reply import Reply
from creatio_attach.emulator import EmbeddedEmulator

#: quick retries for tests; Retry-After is still honoured
FAST = RetryPolicy(attempts=5, backoff_base=0.01, backoff_cap=0.05, max_retry_after=10.0)


def settings_for(emu: EmbeddedEmulator, **overrides: Any) -> CreatioSettings:
    values: dict[str, Any] = {
        "url": emu.url,
        "runtime": "auto",
        "username": "Supervisor",
        "password": SecretStr("Supervisor"),
        "timeout": 30.0,
        "connect_timeout": 5.0,
    }
    values.update(overrides)
    return CreatioSettings(**values)


@pytest.fixture
def client_for() -> Iterator[Callable[..., CreatioClient]]:
    """``client_for(emu, **settings)``: a client for that emulator, closed after the test."""
    made: list[CreatioClient] = []

    def make(
        emu: EmbeddedEmulator, *, retry: RetryPolicy = FAST, **overrides: Any
    ) -> CreatioClient:
        client = CreatioClient(settings_for(emu, **overrides), retry=retry)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def seed(emu: EmbeddedEmulator, entity: str, **row: Any) -> str:
    """Insert one record through the admin API; returns its Id."""
    response = requests.post(f"{emu.url}/__emulator__/records/{entity}", json=row, timeout=10)
    assert response.status_code == 201, response.text
    body = response.json()
    return str((body[0] if isinstance(body, list) else body)["Id"])


def request_log(emu: EmbeddedEmulator) -> list[dict[str, Any]]:
    response = requests.get(f"{emu.url}/__emulator__/requests", timeout=10)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


def clear_log(emu: EmbeddedEmulator) -> None:
    requests.delete(f"{emu.url}/__emulator__/requests", timeout=10).raise_for_status()


def stored_files(emu: EmbeddedEmulator) -> list[dict[str, Any]]:
    response = requests.get(f"{emu.url}/__emulator__/files", timeout=10)
    response.raise_for_status()
    files: list[dict[str, Any]] = response.json()
    return files


def set_faults(emu: EmbeddedEmulator, spec: str | None) -> None:
    response = requests.put(f"{emu.url}/__emulator__/faults", json={"spec": spec}, timeout=10)
    assert response.status_code < 300, response.text


def expire_sessions(emu: EmbeddedEmulator) -> None:
    requests.post(f"{emu.url}/__emulator__/sessions/expire", timeout=10).raise_for_status()


def fetch(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    json: Any = None,
) -> Reply:
    """One plain call (urllib3, not our client; no redirect followed), answered as the
    client's ``Reply`` so that the client's answer-reading functions can be tried on it."""
    sent = dict(headers or {})
    if cookies:
        sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    with urllib3.PoolManager(retries=False) as pool:
        raw = pool.request(method, url, headers=sent, json=json, redirect=False, timeout=10)
    return Reply(raw, where(method, url))


def logins(entries: list[dict[str, Any]]) -> int:
    return sum(1 for e in entries if e["path"].endswith("AuthService.svc/Login"))
