"""sd_notify and the watchdog heartbeat, against a real AF_UNIX datagram socket as systemd's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from creatio_attach.notify import (
    Heartbeat,
    Notifier,
    notify,
    start_heartbeat,
    watchdog_interval,
)
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[1]


class FakeSystemd:
    """The receiving end of ``$NOTIFY_SOCKET``: collects every datagram in a thread."""

    def __init__(self, address: str | bytes, name: str):
        self.name = name  # what goes into NOTIFY_SOCKET
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-systemd", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.messages.append(data.decode())

    def received(self) -> list[str]:
        with self._lock:
            return list(self.messages)

    def count(self, line: str) -> int:
        return sum(1 for m in self.received() if line in m.splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify.sock"
    if len(str(path)) >= 100:  # sun_path holds 108 bytes
        pytest.fail(f"tmp_path too long for an AF_UNIX socket: {path}")
    fake = FakeSystemd(str(path), str(path))
    yield fake
    fake.close()


@pytest.fixture
def abstract_systemd() -> Iterator[FakeSystemd]:
    name = f"creatio-attach-test-{os.getpid()}-{threading.get_ident()}"
    fake = FakeSystemd(b"\0" + name.encode(), "@" + name)
    yield fake
    fake.close()


def test_outside_systemd_every_call_is_a_silent_no_op() -> None:
    n = Notifier(env={})
    assert not n.enabled
    assert n.ready() is False
    assert n.status("idle") is False
    assert n.watchdog_ping() is False
    assert n.stopping() is False
    n.close()
    assert watchdog_interval(env={}) is None
    assert start_heartbeat(n, lambda: True, env={"WATCHDOG_USEC": "1000000"}) is None


def test_ready_status_and_stopping_reach_the_socket(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    assert n.enabled
    assert n.ready(status="idle")
    assert n.status("uploading 3 of 120")
    assert n.stopping()
    wait_for(lambda: len(systemd.received()) == 3, what="three datagrams")
    assert systemd.received() == [
        "READY=1\nSTATUS=idle\n",
        "STATUS=uploading 3 of 120\n",
        "STOPPING=1\n",
    ]
    n.close()


def test_status_is_sent_only_when_it_changes(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    sent = [n.status(s) for s in ["idle", "idle", "Creatio unreachable, retry in 40 s", "idle"]]
    assert sent == [True, False, True, True]
    wait_for(lambda: len(systemd.received()) == 3, what="three status datagrams")
    assert [m.strip() for m in systemd.received()] == [
        "STATUS=idle",
        "STATUS=Creatio unreachable, retry in 40 s",
        "STATUS=idle",
    ]
    n.close()


def test_extend_timeout_sends_microseconds_with_its_status(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    assert n.extend_timeout(120, "scanning cases: 500 files found")
    assert n.extend_timeout(1.5)
    assert n.status("scanning cases: 500 files found") is False  # already the status
    wait_for(lambda: len(systemd.received()) == 2, what="two datagrams")
    assert systemd.received() == [
        "EXTEND_TIMEOUT_USEC=120000000\nSTATUS=scanning cases: 500 files found\n",
        "EXTEND_TIMEOUT_USEC=1500000\n",
    ]
    n.close()
    assert Notifier(env={}).extend_timeout(120, "x") is False


def test_reload_is_announced_and_closed_by_ready(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    n.ready(status="idle")
    n.reloading()
    n.ready(status="idle")  # same status: READY=1 alone
    wait_for(lambda: len(systemd.received()) == 3, what="three datagrams")
    assert systemd.received()[1:] == ["RELOADING=1\n", "READY=1\n"]
    n.close()


def test_abstract_socket_name_with_at_sign(abstract_systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": abstract_systemd.name})
    assert n.ready()
    wait_for(lambda: abstract_systemd.received() == ["READY=1\n"], what="READY=1")
    n.close()


def test_one_off_notify_uses_the_environment(
    systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.name)
    assert notify(READY=1, STATUS="idle")
    wait_for(lambda: systemd.received() == ["READY=1\nSTATUS=idle\n"], what="one datagram")


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert n.enabled
    assert n.ready() is False
    n.close()


def test_watchdog_interval_honours_usec_and_pid() -> None:
    me = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(me)}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(me + 1)}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "x"}) is None


def test_heartbeat_pings_at_about_half_the_interval(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    env = {"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    hb = start_heartbeat(n, lambda: True, env=env)
    assert hb is not None
    assert hb.period == pytest.approx(0.1)
    # at 0.1 s per ping, 5 pings need about 0.4 s; the bound is generous for slow machines
    wait_for(lambda: systemd.count("WATCHDOG=1") >= 5, timeout=15, what="5 watchdog pings")
    hb.stop()
    assert not hb.running
    n.close()


def test_heartbeat_stops_pinging_while_a_worker_is_stuck(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    healthy = threading.Event()
    healthy.set()
    hb = Heartbeat(n, 0.1, healthy.is_set).start()
    wait_for(lambda: systemd.count("WATCHDOG=1") >= 2, what="pings while healthy")
    healthy.clear()
    skipped = hb.skipped
    wait_for(lambda: hb.skipped >= skipped + 3, what="three skipped beats")
    sent, received = hb.pings, systemd.count("WATCHDOG=1")
    wait_for(lambda: hb.skipped >= skipped + 6, what="three more skipped beats")
    assert hb.pings == sent  # nothing sent while stuck
    healthy.set()
    wait_for(lambda: systemd.count("WATCHDOG=1") > received, what="pings again once healthy")
    hb.stop()
    n.close()


def test_a_liveness_check_that_raises_counts_as_not_alive(systemd: FakeSystemd) -> None:
    def broken() -> bool:
        raise RuntimeError("worker table gone")

    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    with Heartbeat(n, 0.05, broken) as hb:
        wait_for(lambda: hb.skipped >= 3, what="skipped beats")
        assert hb.running
    assert not hb.running
    assert systemd.count("WATCHDOG=1") == 0
    n.close()


def test_watchdog_pid_of_another_process_means_no_heartbeat(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    env = {"WATCHDOG_USEC": "100000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert start_heartbeat(n, lambda: True, env=env) is None
    n.close()


def test_heartbeat_stop_leaves_no_thread_behind(systemd: FakeSystemd) -> None:
    n = Notifier(env={"NOTIFY_SOCKET": systemd.name})
    hb = Heartbeat(n, 60.0, lambda: True).start()  # a long period: stop must not wait for it
    wait_for(lambda: systemd.count("WATCHDOG=1") == 1, what="the first ping at start")
    hb.stop(timeout=5)
    assert not any(t.name == "sd-watchdog" for t in threading.enumerate())
    n.close()


def test_heartbeat_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        Heartbeat(Notifier(env={}), 0, lambda: True)


CHILD = textwrap.dedent(
    """
    import sys, threading
    from creatio_attach.notify import Notifier, start_heartbeat

    n = Notifier()
    n.status("starting")
    n.ready(status="idle")
    hb = start_heartbeat(n, lambda: True)
    assert hb is not None, "no heartbeat"
    while hb.pings < 3:
        threading.Event().wait(0.01)
    hb.stop()
    n.stopping()
    n.close()
    """
)


def test_a_real_process_under_a_notify_socket(systemd: FakeSystemd, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "WATCHDOG_USEC")}
    env |= {
        "NOTIFY_SOCKET": systemd.name,
        "WATCHDOG_USEC": "100000",
        "PYTHONPATH": str(REPO / "daemon"),
    }
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    wait_for(lambda: systemd.count("STOPPING=1") == 1, what="STOPPING=1 from the child")
    lines = [line for m in systemd.received() for line in m.splitlines()]
    assert lines[:3] == ["STATUS=starting", "READY=1", "STATUS=idle"]
    assert lines.count("WATCHDOG=1") >= 3
    assert lines[-1] == "STOPPING=1"
