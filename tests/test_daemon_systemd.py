"""The real daemon (``creatio-attach run``, a subprocess) under a real ``$NOTIFY_SOCKET``.

A datagram socket in tmp_path plays systemd: READY=1 comes only once Creatio has answered the
login and the inboxes are watched; STATUS= follows the work; WATCHDOG=1 comes at half of
``WATCHDOG_USEC``; STOPPING=1 on SIGTERM. An unreachable Creatio at start still gives READY=1
(with a STATUS that says so) and the backlog drains once Creatio is up; rejected credentials
end the process with status 78 and one line, and never READY=1.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.service import SCAN_EXTEND
from creatio_attach.watcher import SCAN_PROGRESS_EVERY
from tests.conftest import CorpusFile, wait_for
from tests.daemon_helpers import Site, start_daemon, stop_daemon
from tests.test_notify import FakeSystemd

WATCHDOG_USEC = "400000"  # pings expected every 0.2 s


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify.sock"
    if len(str(path)) >= 100:  # sun_path holds 108 bytes
        pytest.fail(f"tmp_path too long for an AF_UNIX socket: {path}")
    fake = FakeSystemd(str(path), str(path))
    yield fake
    fake.close()


def lines(fake: FakeSystemd) -> list[str]:
    """Every ``KEY=value`` line received, in order."""
    return [line for message in fake.received() for line in message.splitlines()]


def statuses(fake: FakeSystemd) -> list[str]:
    return [line.removeprefix("STATUS=") for line in lines(fake) if line.startswith("STATUS=")]


def archived(folder: Path) -> list[Path]:
    return [p for p in (folder / ".archive").rglob("*") if p.is_file()]


def test_ready_status_watchdog_and_stopping_under_a_real_notify_socket(
    tmp_path: Path,
    emulator: EmbeddedEmulator,
    systemd: FakeSystemd,
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    site = Site(tmp_path, emulator)
    site.case("SR10")
    inbox = site.inbox()
    config = site.write_config()
    site.faults("latency=1s:path=Login")  # a slow login: READY must wait for it
    log = tmp_path / "daemon.log"
    env = {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": WATCHDOG_USEC}
    proc = start_daemon(config, log, env=env)
    try:
        wait_for(lambda: "READY=1" in lines(systemd) or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, log.read_text(errors="replace")
        logins = [
            r
            for r in site.admin("GET", "/__emulator__/requests")
            if r["path"].endswith("/AuthService.svc/Login")
        ]
        assert [r["status"] for r in logins] == [200]  # answered before READY=1 was sent
        assert "creatio.login_ok" in log.read_text()
        ready = next(m for m in systemd.received() if "READY=1" in m.splitlines())
        assert "STATUS=watching cases" in ready.splitlines()
        # watching already: a file dropped right after READY is uploaded
        site.faults("latency=700ms:method=PUT,POST")  # slow enough for STATUS to show it
        shutil.copyfile(corpus_by_name["filetype-fixture.pdf"].path, inbox / "SR10_ready.pdf")
        wait_for(lambda: archived(inbox), timeout=30, what="the file archived")
        wait_for(lambda: statuses(systemd)[-1:] == ["idle"], timeout=10, what="STATUS=idle")
        seen = statuses(systemd)
        uploading = [i for i, s in enumerate(seen) if s.startswith("uploading 1 of 1")]
        assert uploading, seen
        assert "idle" in seen[uploading[-1] :]
        wait_for(lambda: systemd.count("WATCHDOG=1") >= 3, timeout=10, what="watchdog pings")
        assert stop_daemon(proc, signal.SIGTERM) == 0
    finally:
        stop_daemon(proc, signal.SIGKILL)
    received = lines(systemd)
    assert received.index("READY=1") < received.index("WATCHDOG=1")  # pings only once ready
    assert received[-1] == "STOPPING=1"
    assert received.count("READY=1") == 1
    assert len(site.files()) == 1


def _start_with_files(
    tmp_path: Path, emulator: EmbeddedEmulator, systemd: FakeSystemd, count: int
) -> tuple[subprocess.Popen[bytes], Path]:
    """The daemon under the notify socket, started with ``count`` small text files already in
    its inbox (for the first scan); returns the process and its log."""
    site = Site(tmp_path, emulator)
    site.case("SR10")
    inbox = site.inbox()
    for n in range(count):
        (inbox / f"SR10_{n:05d}.txt").write_bytes(b"a line of text\n")
    log = tmp_path / "daemon.log"
    env = {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": WATCHDOG_USEC}
    return start_daemon(site.write_config(), log, env=env), log


def test_a_long_first_scan_extends_the_start_timeout_before_ready(
    tmp_path: Path,
    emulator: EmbeddedEmulator,
    systemd: FakeSystemd,
) -> None:
    """A first scan that lists many files (slow on a network share) pushes systemd's start
    timeout further every ``SCAN_PROGRESS_EVERY`` files, with a STATUS that says so, so that
    ``TimeoutStartSec=`` cannot kill the service before READY=1 while the scan moves."""
    proc, log = _start_with_files(tmp_path, emulator, systemd, 2 * SCAN_PROGRESS_EVERY + 1)
    try:
        wait_for(lambda: "READY=1" in lines(systemd) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log.read_text(errors="replace")
        assert stop_daemon(proc, signal.SIGTERM) == 0
    finally:
        stop_daemon(proc, signal.SIGKILL)
    received = lines(systemd)
    before_ready = received[: received.index("READY=1")]
    extend = f"EXTEND_TIMEOUT_USEC={round(SCAN_EXTEND * 1_000_000)}"
    assert before_ready.count(extend) == 2
    scanning = [s for s in statuses(systemd) if s.startswith("scanning")]
    assert scanning == [
        f"scanning cases: {SCAN_PROGRESS_EVERY} files found",
        f"scanning cases: {2 * SCAN_PROGRESS_EVERY} files found",
    ]


def test_sigterm_during_the_first_scan_ends_it_early_without_ready(
    tmp_path: Path,
    emulator: EmbeddedEmulator,
    systemd: FakeSystemd,
) -> None:
    """SIGTERM while the first scan of a large inbox runs stops the scan at once: exit 0,
    STOPPING=1, no READY=1; the next start finds the files the scan did not reach."""
    count = 80 * SCAN_PROGRESS_EVERY  # 40,000: seconds of scanning, far more than needed
    proc, log = _start_with_files(tmp_path, emulator, systemd, count)
    try:
        wait_for(
            lambda: (
                any(s.startswith("scanning") for s in statuses(systemd)) or proc.poll() is not None
            ),
            timeout=30,
            what="the first scan under way",
        )
        assert proc.poll() is None, log.read_text(errors="replace")
        assert stop_daemon(proc, signal.SIGTERM) == 0
    finally:
        stop_daemon(proc, signal.SIGKILL)
    received = lines(systemd)
    assert "READY=1" not in received
    assert received[-1] == "STOPPING=1"
    found = [s for s in statuses(systemd) if s.startswith("scanning")]
    assert len(found) < count // SCAN_PROGRESS_EVERY  # the scan did not reach the end
    assert '"daemon.stopped_before_ready"' in log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_creatio_at_start_is_ready_and_the_backlog_drains_when_it_comes(
    tmp_path: Path,
    emulator_factory: Callable[..., EmbeddedEmulator],
    systemd: FakeSystemd,
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    port = _free_port()  # closed: nothing listens there yet
    site = Site(tmp_path, cast(EmbeddedEmulator, None))
    inbox = site.inbox()
    config = site.write_config(url=f"http://127.0.0.1:{port}")
    log = tmp_path / "daemon.log"
    env = {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": WATCHDOG_USEC}
    proc = start_daemon(config, log, env=env)
    try:
        wait_for(lambda: "READY=1" in lines(systemd) or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, log.read_text(errors="replace")
        ready = next(m for m in systemd.received() if "READY=1" in m.splitlines())
        (status,) = [line for line in ready.splitlines() if line.startswith("STATUS=")]
        assert status.startswith("STATUS=Creatio unreachable"), ready
        shutil.copyfile(corpus_by_name["filetype-fixture.pdf"].path, inbox / "SR11_wait.pdf")
        wait_for(lambda: site.state_count("retry_wait") == 1, timeout=30, what="retry_wait")
        assert any(s.startswith("Creatio unreachable for") for s in statuses(systemd))
        wait_for(lambda: systemd.count("WATCHDOG=1") >= 2, timeout=10, what="pings while down")
        site.emulator = emulator_factory(port=port)  # Creatio comes up on that port
        site.case("SR11")
        wait_for(lambda: archived(inbox), timeout=30, what="the backlog drained")
        wait_for(lambda: statuses(systemd)[-1:] == ["idle"], timeout=10, what="STATUS=idle")
        assert stop_daemon(proc, signal.SIGTERM) == 0
    finally:
        stop_daemon(proc, signal.SIGKILL)
    (record,) = site.files()
    assert record["sha256"] == corpus_by_name["filetype-fixture.pdf"].sha256
    assert "STOPPING=1" in lines(systemd)


def test_rejected_credentials_at_start_exit_78_with_one_line_and_never_ready(
    tmp_path: Path, emulator: EmbeddedEmulator, systemd: FakeSystemd
) -> None:
    site = Site(tmp_path, emulator)
    site.password = "not-the-password-9"
    site.inbox()
    config = site.write_config()
    log = tmp_path / "daemon.log"
    env = {"NOTIFY_SOCKET": systemd.name, "WATCHDOG_USEC": WATCHDOG_USEC}
    proc = start_daemon(config, log, env=env)
    try:
        assert proc.wait(30) == 78
    finally:
        stop_daemon(proc, signal.SIGKILL)
    received = lines(systemd)
    assert "READY=1" not in received
    assert "WATCHDOG=1" not in received
    errors = [line for line in log.read_text().splitlines() if line.startswith("creatio-attach: ")]
    assert len(errors) == 1, log.read_text()
    assert "refused the login" in errors[0], errors[0]
    assert "not-the-password-9" not in log.read_text()
