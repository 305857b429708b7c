"""``/healthz`` and the reachable gauge of the real daemon (``creatio-attach run`` in a
subprocess) while Creatio goes away and comes back.

The emulator is stopped and started again on the same port and data directory, as a Creatio
restart would be. With ``[daemon] unreachable_limit = "1s"`` /healthz must turn 503 soon
after the first failed contact, and 200 again once a file gets through. The file dropped
during the outage belongs to a case the daemon has never looked up, so its parent lookup is a
real request (not an answer from the parent cache).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import wait_for
from tests.daemon_helpers import Site, log_lines, start_daemon, stop_daemon, wait_ready


class RestartableEmulator:
    """One emulator that can be stopped and started again on the same port and data dir."""

    def __init__(self, factory: Callable[..., EmbeddedEmulator], data_dir: Path) -> None:
        self._factory = factory
        self.data_dir = data_dir
        self.current = factory(data_dir=data_dir)
        self.port = self.current.port

    def stop(self) -> None:
        self.current.stop()

    def start(self) -> EmbeddedEmulator:
        self.current = self._factory(port=self.port, data_dir=self.data_dir)
        return self.current


@pytest.fixture
def restartable(
    tmp_path: Path, emulator_factory: Callable[..., EmbeddedEmulator]
) -> RestartableEmulator:
    """Stopped after the test by ``emulator_factory``, like every instance it started."""
    return RestartableEmulator(emulator_factory, tmp_path / "emulator-data")


def metrics_url(log: Path) -> str:
    """The address of the metrics server, from the daemon's ``metrics.listening`` line
    (``listen = "127.0.0.1:0"`` lets the kernel pick the port)."""
    for line in log_lines(log):
        if line.get("event") == "metrics.listening":
            return str(line["url"])
    raise AssertionError("no metrics.listening line in the daemon log")


def healthz(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


def reachable(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    found = re.search(r"^creatio_attach_creatio_reachable (\S+)$", text, re.MULTILINE)
    assert found, "the creatio_attach_creatio_reachable gauge is missing"
    return float(found.group(1))


def test_healthz_is_503_while_creatio_is_down_past_the_limit_and_200_when_back(
    tmp_path: Path, restartable: RestartableEmulator
) -> None:
    site = Site(tmp_path, restartable.current)
    site.case("SR7100")
    site.case("SR7101")  # exists, but no file of it is seen before the outage: not cached
    inbox = site.inbox()
    site.metrics = "127.0.0.1:0"
    site.daemon = {"unreachable_limit": "1s"}
    config = site.write_config()
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        url = metrics_url(log)
        (inbox / "SR7100_before.txt").write_bytes(b"uploaded while Creatio is up\n" * 20)
        wait_for(lambda: site.state_count("done") == 1, timeout=20, what="the first upload")
        assert healthz(url) == (200, "ok\n")
        assert reachable(url) == 1.0

        restartable.stop()
        (inbox / "SR7101_during.txt").write_bytes(b"dropped while Creatio is down\n" * 20)
        _, text = wait_for(
            lambda: (answer := healthz(url))[0] == 503 and answer,
            timeout=30,
            what="/healthz to answer 503",
        )
        assert "Creatio unreachable" in text, text
        assert "limit 1 s" in text, text
        assert reachable(url) == 0.0
        assert site.state_count("done") == 1
        # the file waits for Creatio: neither given up nor taken for a missing case
        assert site.state_count("failed") == site.state_count("unmatched") == 0

        site.emulator = restartable.start()
        wait_for(lambda: site.state_count("done") == 2, timeout=30, what="the upload after")
        wait_for(lambda: healthz(url)[0] == 200, timeout=10, what="/healthz back to 200")
        assert healthz(url) == (200, "ok\n")
        assert reachable(url) == 1.0
        assert stop_daemon(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    names = sorted(str(f["name"]) for f in site.files())
    assert names == ["SR7100_before.txt", "SR7101_during.txt"]
