"""Large files (above ``adapters.HASH_WHILE_UPLOADING_ABOVE``) are hashed while they upload,
not before: the daemon reads them once. Exactly-once still holds: a file of the same size on
the same parent makes the daemon hash first and compare. The real service in-process, real
files of 65 MiB, the emulator over HTTP.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import pytest

from creatio_attach.adapters import HASH_WHILE_UPLOADING_ABOVE
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.journal import Journal
from creatio_attach.journal.states import State
from tests.conftest import wait_for
from tests.daemon_helpers import Site, running_service, start_daemon, stop_daemon, wait_ready

SIZE = HASH_WHILE_UPLOADING_ABOVE + 1024 * 1024


@pytest.fixture
def site(tmp_path: Path, emulator: EmbeddedEmulator) -> Site:
    return Site(tmp_path, emulator)


def write_large(path: Path, seed: bytes) -> str:
    """A SIZE-byte file written in 1 MiB blocks (never whole in memory); returns its SHA-256."""
    digest = hashlib.sha256()
    block = hashlib.sha256(seed).digest() * (1024 * 1024 // 32)
    with path.open("wb") as out:
        for n in range(SIZE // len(block)):
            piece = n.to_bytes(8, "big") + block[8:]
            out.write(piece)
            digest.update(piece)
    return digest.hexdigest()


def test_large_files_upload_once_with_the_hash_taken_while_sending(site: Site) -> None:
    site.case("SR40")
    inbox = site.inbox(settle="0.2s")
    staging = site.root / "staging"
    staging.mkdir()
    first = write_large(staging / "SR40_recording.bin", b"one")
    os.link(staging / "SR40_recording.bin", staging / "SR40_recording copy.bin")
    other = write_large(staging / "SR40_other.bin", b"two")  # the same size, other content
    config = site.write_config()
    with running_service(config):
        for name in ("SR40_recording.bin", "SR40_recording copy.bin", "SR40_other.bin"):
            (staging / name).rename(inbox / name)
        wait_for(
            lambda: site.state_count("done") == 2 and site.state_count("duplicate") == 1,
            timeout=60,
            what="two uploads and one duplicate",
        )
    stored = sorted(f["sha256"] for f in site.files())
    assert stored == sorted([first, other])  # the copy was not uploaded again
    with Journal.open_readonly(site.state) as journal:
        rows = journal.by_state(State.DONE) + journal.by_state(State.DUPLICATE)
    assert sorted(r.sha256 or "" for r in rows) == sorted([first, first, other])
    assert all(r.size == SIZE for r in rows)


def test_kill_9_in_the_middle_of_a_large_upload_then_restart_stores_it_once(site: Site) -> None:
    """The row of a large file is ``uploading`` without a hash when the daemon dies; after the
    restart the same record is completed, the hash recorded, and the twin found a duplicate."""
    site.case("SR41")
    inbox = site.inbox(settle="0.2s")
    staging = site.root / "staging"
    staging.mkdir()
    digest = write_large(staging / "SR41_a.bin", b"crash")
    os.link(staging / "SR41_a.bin", staging / "SR41_b.bin")
    config = site.write_config()
    site.faults("latency=150ms")  # every chunk is slow: the kill lands mid-upload
    log = site.root / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        for name in ("SR41_a.bin", "SR41_b.bin"):
            (staging / name).rename(inbox / name)

        def chunks_sent() -> int:
            return sum(
                "FileApiService" in str(r.get("path"))
                for r in site.admin("GET", "/__emulator__/requests")
            )

        wait_for(lambda: chunks_sent() >= 3, timeout=30, what="a few chunks stored")
        with Journal.open_readonly(site.state) as journal:
            [uploading] = journal.by_state(State.UPLOADING)
        assert uploading.sha256 is None  # hashed while it is sent: not known yet
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    site.faults(None)
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        wait_for(
            lambda: site.state_count("done") == 1 and site.state_count("duplicate") == 1,
            timeout=60,
            what="the large file done and its copy a duplicate",
        )
    finally:
        assert stop_daemon(proc) == 0
    assert [f["sha256"] for f in site.files()] == [digest]
    with Journal.open_readonly(site.state) as journal:
        [done] = journal.by_state(State.DONE)
    assert done.sha256 == digest
