"""A 200 MB file goes up in chunks while the client's memory stays flat (real subprocess)."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from tests.creatio.conftest import request_log, seed, stored_files

SIZE = 200 * 1024 * 1024
BLOCK = 1024 * 1024
CHILD = Path(__file__).with_name("big_upload_child.py")


def write_pattern_file(path: Path, size: int, seed_value: int) -> str:
    """A file of pseudo-random bytes from a seed, written block by block; its SHA-256."""
    rng = random.Random(seed_value)
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = rng.randbytes(min(BLOCK, left))
            out.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


@pytest.mark.slow
def test_a_200_mb_file_goes_up_in_chunks_with_flat_memory(
    emulator: EmbeddedEmulator, tmp_path: Path
) -> None:
    big = tmp_path / "recording-200mb.bin"
    expected = write_pattern_file(big, SIZE, seed_value=20240523)
    case_id = seed(emulator, "Case", Number="SR-BIG")
    done = subprocess.run(
        [sys.executable, str(CHILD), emulator.url, str(big), case_id],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["chunked"] and report["bytes"] == SIZE and report["sha256"] == expected
    assert report["rss_growth"] < 50 * 1024 * 1024, report
    (stored,) = stored_files(emulator)
    assert (stored["id"], stored["size"], stored["sha256"]) == (report["record_id"], SIZE, expected)
    chunks = [e for e in request_log(emulator) if "FileApiService/UploadFile" in e["path"]]
    assert len(chunks) == SIZE // (4 * 1024 * 1024)  # default chunk_size 4 MiB
    assert all(e["status"] == 200 for e in chunks)
