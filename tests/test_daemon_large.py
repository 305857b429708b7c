"""Large files (above ``adapters.HASH_WHILE_UPLOADING_ABOVE``) are hashed while they upload,
not before: the daemon reads them once. Exactly-once still holds: a file of the same size on
the same parent makes the daemon hash first and compare. The real service in-process, real
files of 65 MiB, the emulator over HTTP.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from creatio_attach.adapters import HASH_WHILE_UPLOADING_ABOVE
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.journal import Journal
from creatio_attach.journal.states import State
from tests.conftest import wait_for
from tests.daemon_helpers import Site, running_service

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
