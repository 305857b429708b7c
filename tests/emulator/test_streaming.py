"""300 MB uploads stream to disk: the emulator subprocess's RSS stays flat (issue 2, item 2).

One emulator subprocess (the real CLI); one upload through ``PUT .../Data`` and one through
FileApiService chunks, each generated from a seeded stream (never held in memory here either),
checked by SHA-256 on download.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.emulator.helpers import Api, seed, seeded_sha256, seeded_stream

TOTAL = 300 * 1024 * 1024
CHUNK = 16 * 1024 * 1024
RSS_BUDGET = 50 * 1024 * 1024
CLI = Path(sys.executable).with_name("creatio-attach")


class Emulator:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.odata_url = f"{url}/0/odata"
        self.ws_url = f"{url}/0"


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[Emulator]:
    proc = subprocess.Popen(
        [
            str(CLI),
            "emulator",
            "--port",
            "0",
            "--data",
            str(tmp_path / "data"),
            "--max-request-bytes",
            str(TOTAL + 1),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"listening on (http://\S+)", line)
        assert m, f"unexpected first line: {line!r}"
        yield Emulator(proc, m.group(1))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class PeakRss:
    """Samples a process's RSS in a thread; ``peak`` is the highest value seen."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def download_sha256(api: Api, url: str) -> str:
    digest = hashlib.sha256()
    with api.session.get(url, stream=True, timeout=300) as r:
        assert r.status_code == 200
        for block in r.iter_content(1 << 20):
            digest.update(block)
    return digest.hexdigest()


@pytest.mark.slow
def test_300_mb_uploads_stream_to_disk_with_flat_memory(emulator_process: Emulator) -> None:
    api = Api(emulator_process)
    expected = seeded_sha256(TOTAL)
    case = seed(emulator_process, "Case", [{"Number": "SR-big"}])[0]
    put_row = api.create("CaseFile", {"Name": "big.bin", "CaseId": case["Id"], "Size": TOTAL})
    chunk_id = str(uuid.uuid4())
    # warm up both paths so that imports and caches are in the baseline
    warm = api.create("CaseFile", {"Name": "warm.bin", "CaseId": case["Id"]})
    assert api.put_data("CaseFile", warm["Id"], b"w" * 100_000).status_code == 200
    baseline = psutil.Process(emulator_process.proc.pid).memory_info().rss

    with PeakRss(emulator_process.proc.pid) as rss:
        r = api.put_data("CaseFile", put_row["Id"], seeded_stream(TOTAL))
        assert r.status_code == 200, r.text
        stream = seeded_stream(TOTAL)
        pending = b""
        for start in range(0, TOTAL, CHUNK):
            size = min(CHUNK, TOTAL - start)
            body = bytearray(pending)
            while len(body) < size:
                body += next(stream)
            pending = bytes(body[size:])
            r = api.upload_chunk(
                bytes(body[:size]),
                headers={"Content-Range": f"bytes {start}-{start + size - 1}/{TOTAL}"},
                fileId=chunk_id,
                totalFileLength=TOTAL,
                fileName="big-chunked.bin",
                columnName="Data",
                entitySchemaName="CaseFile",
                parentColumnName="Case",
                parentColumnValue=case["Id"],
            )
            assert r.json() == {"success": True}, r.text
        odata = emulator_process.odata_url
        assert download_sha256(api, f"{odata}/CaseFile({put_row['Id']})/Data") == expected
        assert (
            download_sha256(
                api, f"{emulator_process.ws_url}/rest/FileService/Download/CaseFile/{chunk_id}"
            )
            == expected
        )

    growth = rss.peak - baseline
    assert growth < RSS_BUDGET, f"emulator RSS grew by {growth / 2**20:.1f} MiB"
    rows = {r["Id"]: r for r in api.query("CaseFile", select="Id,Size").json()["value"]}
    assert rows[put_row["Id"]]["Size"] == TOTAL and rows[chunk_id]["Size"] == TOTAL
    print(f"emulator RSS growth during 2 x 300 MB: {growth / 2**20:.1f} MiB")
