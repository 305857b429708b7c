"""Reachability is reported only after a real answer from Creatio: a parent given by an
``id =`` template (no request needed) must not make a dead Creatio look reachable again, which
would log ``creatio.reachable_again``, release the whole backlog at once and defeat the backoff.

The real daemon (``creatio-attach run`` in a subprocess) against the emulator answering 503 to
every request, the login included (a fault rule with ``path=`` covers the login too).
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import wait_for
from tests.daemon_helpers import Site, log_lines, start_daemon, stop_daemon, wait_ready

FILES = 6
#: the ``file.retry_wait`` line is written just after the journal commit that sets the next
#: attempt, and the next attempt's line only after a request failed: a little slack for that
SLACK = 0.25


def _when(line: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(line["timestamp"])).timestamp()


def _retries(log: Path) -> dict[str, list[tuple[float, float]]]:
    """file -> [(time of its ``file.retry_wait`` line, announced wait in s), ...]"""
    out: dict[str, list[tuple[float, float]]] = {}
    for line in log_lines(log):
        if line.get("event") == "file.retry_wait":
            out.setdefault(str(line["file"]), []).append((_when(line), float(line["wait_s"])))
    return out


def test_a_parent_by_id_does_not_make_a_dead_creatio_look_reachable(
    tmp_path: Path, emulator: EmbeddedEmulator
) -> None:
    site = Site(tmp_path, emulator)
    case_id = site.case("SR5000")
    inbox = site.inbox(
        pattern=r"^(?P<id>[0-9a-f-]{36})_",
        parent={"schema": "Case", "id": "{id}"},
    )
    # a backoff of 0.5 s doubling to 4 s (the 503 answers carry no Retry-After)
    site.daemon = {"retry_base": "0.5s", "retry_cap": "4s"}
    config = site.write_config()
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        site.faults("503@p=1:path=.:retry-after=0")  # every request, the login and probe too
        for i in range(FILES):
            (inbox / f"{case_id}_{i}.txt").write_bytes(f"file {i} for the case\n".encode() * 50)

        def enough() -> bool:
            retries = _retries(log)
            return len(retries) == FILES and all(len(r) >= 2 for r in retries.values())

        wait_for(enough, timeout=60, what="every file retried twice")
        events = [line.get("event") for line in log_lines(log)]
        assert "creatio.unreachable" in events
        assert "creatio.reachable_again" not in events, "Creatio never answered"
        assert site.files() == []
        # the backoff holds: no attempt comes before the wait the previous one announced
        for name, retries in _retries(log).items():
            for (t0, wait), (t1, _) in itertools.pairwise(retries):
                assert t1 - t0 >= wait - SLACK, (name, retries)

        site.faults(None)
        wait_for(lambda: site.state_count("done") == FILES, timeout=60, what="the backlog drained")
        assert "creatio.reachable_again" in [line.get("event") for line in log_lines(log)]
        assert stop_daemon(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert len(site.files()) == FILES
