"""Shared pieces of the daemon tests: configs in tmp_path, the emulator's admin API, a daemon
running in-process (a ``Service`` in a thread) or as a subprocess.

Everything real: TOML files read by ``load_config``, the emulator over HTTP on 127.0.0.1,
watchdog on real folders.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creatio_attach.config import load_config
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.errors import JournalError
from creatio_attach.journal import Journal
from creatio_attach.service import Service

from .conftest import wait_for

REPO = Path(__file__).resolve().parents[1]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string is JSON-compatible for our values
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


@dataclass
class Site:
    """A test setup: an emulator, a state dir and inbox folders."""

    root: Path
    emulator: EmbeddedEmulator
    inboxes: dict[str, dict[str, Any]] = field(default_factory=dict)
    daemon: dict[str, Any] = field(default_factory=dict)
    concurrency: int = 4
    metrics: str | None = None  # [metrics] listen
    username: str = "Supervisor"
    password: str | None = "Supervisor"  # None: no password in the file (a credential gives it)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def inbox(self, name: str = "cases", **keys: Any) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        table: dict[str, Any] = {
            "name": name,
            "folder": str(folder),
            "pattern": r"^(?P<number>SR\d+)[/_ -]",
            "entity": "CaseFile",
            "parent": {"schema": "Case", "where": {"Number": "{number}"}},
            "settle": "0.3s",
        }
        table.update(keys)
        self.inboxes[name] = table
        return folder

    def write_config(self, url: str | None = None) -> Path:
        lines = [
            "[creatio]",
            f"url = {_toml(url or self.emulator.url)}",
            f"username = {_toml(self.username)}",
            *([f"password = {_toml(self.password)}"] if self.password is not None else []),
            f"concurrency = {self.concurrency}",
            "timeout = 10",
            "connect_timeout = 2",
            "",
            "[state]",
            f"dir = {_toml(str(self.state))}",
            "",
            "[daemon]",
        ]
        daemon = {"grace": "10s", "retry_base": "0.2s", "retry_cap": "1s"}
        daemon.update(self.daemon)
        lines += [f"{k} = {_toml(v)}" for k, v in daemon.items()]
        if self.metrics is not None:
            lines += ["", "[metrics]", f"listen = {_toml(self.metrics)}"]
        for table in self.inboxes.values():
            lines += ["", "[[inbox]]"]
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
        path = self.root / "config.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    # -- the emulator ------------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        return admin(self.emulator.url, method, path, body)

    def case(self, number: str) -> str:
        """Create a Case with this Number; returns its Id."""
        rows = self.admin("POST", "/__emulator__/records/Case", {"Number": number})
        row = rows[0] if isinstance(rows, list) else rows
        return str(row["Id"]).lower()

    def files(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/__emulator__/files"))

    def faults(self, spec: str | None) -> None:
        self.admin("PUT", "/__emulator__/faults", {"spec": spec})

    # -- the journal -------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        if not (self.state / "journal.sqlite3").exists():
            return {}
        try:
            with Journal.open_readonly(self.state) as journal:
                return journal.counts()
        except JournalError:  # the daemon is creating it right now
            return {}

    def state_count(self, state: str, inbox: str | None = None) -> int:
        counts = self.counts()
        names = [inbox] if inbox else list(counts)
        return sum(counts.get(n, {}).get(state, 0) for n in names)


def admin(url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method)  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        raw = response.read()
    return json.loads(raw) if raw else None


@contextmanager
def running_service(config: Path) -> Iterator[Service]:
    """A ``Service`` (the real one) in a thread of this process; stopped on exit."""
    service = Service(config, install_signals=False)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            service.run()
        except BaseException as e:  # reported by the context manager
            errors.append(e)

    thread = threading.Thread(target=run, name="test-service", daemon=True)
    thread.start()
    wait_for(lambda: errors or (service.watcher is not None), timeout=15, what="service start")
    if errors:
        raise errors[0]
    try:
        yield service
    finally:
        service.request_stop()
        thread.join(30)
        assert not thread.is_alive(), "the service did not stop"
    if errors:
        raise errors[0]


def cli_args(*args: str) -> list[str]:
    """``python -m creatio_attach <args>``, or the daemon commands' own entry point while
    ``cli.py`` does not register them yet."""
    from creatio_attach.cli import main

    if "run" in main.commands:
        return [sys.executable, "-m", "creatio_attach", *args]
    return [sys.executable, "-m", "creatio_attach.daemon_cli", *args]


def run_cli(
    *args: str, timeout: float = 30, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_args(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=daemon_env(env),
        check=False,
    )


def start_daemon(
    config: Path,
    log: Path,
    level: str = "info",
    prefix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """The daemon as a subprocess; ``prefix`` runs it through e.g. ``setpriv``; ``env`` is
    added to the environment (e.g. ``NOTIFY_SOCKET``, which is otherwise removed)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [*prefix, *cli_args("run", "--config", str(config), "--log-level", level)],
            stdout=out,
            stderr=out,
            env=daemon_env(env),
        )


def stop_daemon(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30
) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without systemd's variables (a test runner under systemd
    must not leak its own), plus ``extra``."""
    env = dict(os.environ)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM"):
        env.pop(name, None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def load(config: Path) -> Any:
    return load_config(config)


def log_lines(log: Path) -> list[dict[str, Any]]:
    """Every JSON record of a daemon log (text before the first ``{``, e.g. journald's ``<N>``
    priority, is skipped; lines that are not JSON are left out)."""
    out = []
    for raw in log.read_text(encoding="utf-8", errors="replace").splitlines():
        start = raw.find("{")
        if start < 0:
            continue
        try:
            out.append(json.loads(raw[start:]))
        except ValueError:
            continue
    return out


def wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    """Wait for the daemon's ``daemon.ready`` line; fail with its log if it exits instead."""
    wait_for(
        lambda: proc.poll() is not None or b"daemon.ready" in log.read_bytes(),
        timeout=timeout,
        what="the daemon ready",
    )
    if proc.poll() is not None:
        tail = log.read_bytes()[-3000:].decode(errors="replace")
        raise AssertionError(
            f"the daemon exited with {proc.returncode} before it was ready:\n{tail}"
        )
