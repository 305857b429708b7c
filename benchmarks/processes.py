"""The programs under measurement as subprocesses: the emulator (``creatio-attach emulator``)
and the daemon (``creatio-attach run``), their resident memory and CPU time, and what the
emulator's admin API says was stored.

Imports nothing from ``creatio_attach`` except its CLI group (to find out whether ``run`` is
registered there yet); everything else goes through the command line and HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import requests

from benchmarks.common import (
    CASE_NUMBER,
    PASSWORD,
    PATTERN,
    USER,
    BenchError,
    count_files,
    wait_until,
)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(10)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "CREATIO_ATTACH_CONFIG"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Emulator:
    """``creatio-attach emulator`` in a subprocess on a free port of 127.0.0.1."""

    def __init__(self, data_dir: Path, *, max_request_bytes: int | None = None) -> None:
        self.data_dir = data_dir
        self.max_request_bytes = max_request_bytes
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()
        self.log = data_dir.parent / f"{data_dir.name}.log"

    @property
    def ws_url(self) -> str:
        return self.url + "/0"

    def start(self, timeout: float = 60) -> Emulator:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "creatio_attach", "emulator", "--port", "0"]
        cmd += ["--data", str(self.data_dir)]
        if self.max_request_bytes is not None:
            cmd += ["--max-request-bytes", str(self.max_request_bytes)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_env())

        def listening() -> str | None:
            for line in _tail(self.log, 50).splitlines():
                if line.startswith("listening on "):
                    return line.removeprefix("listening on ").strip()
            return None

        self.url = wait_until(
            listening, timeout=timeout, what="the emulator to listen", alive=self.died
        )
        return self

    def died(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"the emulator exited ({self.proc.returncode}): {_tail(self.log)}"
        return None

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc, 30)
        self.http.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, self.url + path, json=body, timeout=120)
        if response.status_code >= 400:
            raise BenchError(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response.json() if response.content else None

    def seed_case(self, number: str = CASE_NUMBER) -> str:
        row = self.admin("POST", "/__emulator__/records/Case", {"Number": number})
        return str((row[0] if isinstance(row, list) else row)["Id"]).lower()

    def reset(self) -> str:
        """Empty store and sessions; the parent Case seeded again. Returns its Id."""
        self.admin("POST", "/__emulator__/reset")
        return self.seed_case()

    def requests_since(self, seq: int) -> list[dict[str, Any]]:
        return list(self.admin("GET", f"/__emulator__/requests?since={seq}"))

    def last_seq(self) -> int:
        entries = self.requests_since(0)
        return int(entries[-1]["seq"]) if entries else 0

    def files(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "/__emulator__/files"))


def is_content_upload(entry: Mapping[str, Any]) -> bool:
    """A request that stored file content and succeeded: ``PUT .../Data`` or a FileApiService
    chunk."""
    ok = 200 <= int(entry["status"]) < 300
    path = str(entry["path"])
    put = entry["method"] == "PUT" and path.endswith("/Data")
    chunk = entry["method"] == "POST" and path.endswith("/rest/FileApiService/UploadFile")
    return ok and (put or chunk)


def check_stored(emulator: Emulator, expected: Iterable[str]) -> int:
    """Every expected SHA-256 is stored exactly once; returns the number of file records."""
    files = emulator.files()
    stored: dict[str | None, int] = {}
    for f in files:
        stored[f["sha256"]] = stored.get(f["sha256"], 0) + 1
    wanted = list(expected)
    missing = [d for d in wanted if stored.get(d, 0) == 0]
    doubled = [d for d in wanted if stored.get(d, 0) > 1]
    if missing or doubled:
        raise BenchError(
            f"the emulator holds {len(files)} files: {len(missing)} expected missing, "
            f"{len(doubled)} stored more than once"
        )
    return len(files)


def run_registered() -> bool:
    """Whether ``creatio-attach run`` is on the main command group yet."""
    from creatio_attach.cli import main

    return "run" in getattr(main, "commands", {})


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))  # a TOML basic string is JSON-compatible for our values


class Daemon:
    """``creatio-attach run`` in a subprocess, with a config written for one inbox."""

    def __init__(
        self,
        root: Path,
        url: str,
        inbox: Path,
        *,
        concurrency: int,
        settle: str = "2s",
    ) -> None:
        self.root = root
        self.url = url
        self.inbox = inbox
        self.concurrency = concurrency
        self.settle = settle
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "daemon.log"
        self.config = root / "config.toml"

    @property
    def archive(self) -> Path:
        return self.inbox / ".archive"

    @property
    def failed(self) -> Path:
        return self.inbox / ".failed"

    def write_config(self) -> Path:
        inbox = {
            "name": "bench",
            "folder": str(self.inbox),
            "entity": "CaseFile",
            "parent": {"schema": "Case", "where": {"Number": "{number}"}},
            "settle": self.settle,
        }
        lines = [
            "[creatio]",
            f"url = {_toml(self.url)}",
            f"username = {_toml(USER)}",
            f"password = {_toml(PASSWORD)}",
            f"concurrency = {self.concurrency}",
            "",
            "[state]",
            f"dir = {_toml(self.root / 'state')}",
            "",
            "[[inbox]]",
        ]
        lines += [f"{k} = {_toml(v)}" for k, v in inbox.items()]
        lines.append(f"pattern = '{PATTERN}'")  # a TOML literal string: backslashes as they are
        self.root.mkdir(parents=True, exist_ok=True)
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.config.chmod(0o600)
        return self.config

    def command(self) -> list[str]:
        module = "creatio_attach" if run_registered() else "creatio_attach.daemon_cli"
        return [sys.executable, "-m", module, "run", "--config", str(self.config)]

    def start(self) -> subprocess.Popen[bytes]:
        """Start it; returns at once (use ``wait_ready``)."""
        self.write_config()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, env=_env()
            )
        return self.proc

    def wait_ready(self, timeout: float) -> None:
        """Until the daemon logs ``daemon.ready`` (logged in, watching every inbox)."""
        wait_until(
            lambda: '"daemon.ready"' in self.log.read_text(encoding="utf-8", errors="replace"),
            timeout=timeout,
            what="the daemon to be ready",
            interval=0.05,
            alive=self.died,
        )

    def died(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            return f"the daemon exited ({self.proc.returncode}): {_tail(self.log)}"
        return None

    def failures(self) -> str | None:
        """A reason when a file went to the failed folder (the run cannot finish)."""
        if count_files(self.failed):
            errors = sorted(self.failed.rglob("*.error.json"))
            said = errors[0].read_text(encoding="utf-8")[:300] if errors else ""
            return f"files went to {self.failed}: {said}"
        return self.died()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        return _terminate(self.proc, 60)


class RssSampler:
    """Peak resident memory of a process and its children, sampled every ``interval``."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                total = proc.memory_info().rss
                for child in proc.children(recursive=True):
                    try:
                        total += child.memory_info().rss
                    except psutil.NoSuchProcess:
                        continue
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)
            self.samples += 1
            self._stop.wait(self.interval)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._stop.set()
        self._thread.join(5)
        return self.peak


class UploadWatch:
    """Follows the emulator's request log: successful content uploads since a point."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.seq = emulator.last_seq()
        self.uploads = 0  # successful PUT .../Data requests seen
        self.bytes = 0  # content bytes of successful uploads (whole or chunks)

    def poll(self) -> list[dict[str, Any]]:
        entries = self.emulator.requests_since(self.seq)
        if entries:
            self.seq = int(entries[-1]["seq"])
        for e in entries:
            if is_content_upload(e):
                self.bytes += int(e["bytes_in"])
                if e["method"] == "PUT":
                    self.uploads += 1
        return entries


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children so far."""
    try:
        proc = psutil.Process(pid)
        times = proc.cpu_times()
        total = float(times.user + times.system)
        for child in proc.children(recursive=True):
            try:
                t = child.cpu_times()
                total += float(t.user + t.system)
            except psutil.NoSuchProcess:
                continue
        return total
    except psutil.NoSuchProcess:
        return 0.0
