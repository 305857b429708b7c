"""The baselines the daemon is compared with: ``curl -T`` for one big file, and plain
``requests`` clients (sequential, and an ideal one on ``concurrency`` threads) that send the
same two requests per file as the daemon does to store it: create the record, PUT its content.
A third, for reference only (no goal): the ideal client that also reads each record back as
the daemon's ``verify = "size"`` does, so three requests per file, the daemon's own count.

The baselines do nothing else: no watching, no journal, no type detection, no parent lookup
(the parent's Id is handed to them). Imports nothing from ``creatio_attach``.
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import requests

from benchmarks.common import (
    FILE_TYPE_FILE,
    PASSWORD,
    USER,
    BenchError,
    clone_session,
    login,
)


def create_and_put(session: requests.Session, ws_url: str, path: Path, parent_id: str) -> str:
    """POST a CaseFile record, then PUT the file's bytes into its Data; returns the Id."""
    data = path.read_bytes()
    rid = str(uuid.uuid4())
    values = {
        "Id": rid,
        "Name": path.name,
        "CaseId": parent_id,
        "TypeId": FILE_TYPE_FILE,
        "Size": len(data),
    }
    created = session.post(f"{ws_url}/odata/CaseFile", json=values, timeout=60)
    if created.status_code != 201:
        raise BenchError(f"baseline create: HTTP {created.status_code} {created.text[:200]}")
    put = session.put(
        f"{ws_url}/odata/CaseFile({rid})/Data",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    if not 200 <= put.status_code < 300:
        raise BenchError(f"baseline PUT: HTTP {put.status_code} {put.text[:200]}")
    return rid


def read_back(session: requests.Session, ws_url: str, rid: str, size: int) -> None:
    """Read the record's ``Size`` back by Id and compare, as ``verify = "size"`` does."""
    got = session.get(
        f"{ws_url}/odata/CaseFile",
        params={"$filter": f"Id eq {rid}", "$top": 1, "$select": "Id,Size"},
        timeout=60,
    )
    if got.status_code != 200:
        raise BenchError(f"baseline read-back: HTTP {got.status_code} {got.text[:200]}")
    rows = got.json().get("value") or []
    if not rows or int(rows[0]["Size"]) != size:
        raise BenchError(f"baseline read-back: {rid} does not hold {size} bytes")


def sequential(url: str, files: Sequence[Path], parent_id: str) -> float:
    """Seconds for a plain script: log in once, then create and PUT each file in turn."""
    start = time.perf_counter()
    with login(url) as session:
        for path in files:
            create_and_put(session, url + "/0", path, parent_id)
    return time.perf_counter() - start


def threaded(
    url: str, files: Sequence[Path], parent_id: str, threads: int, *, verify: bool = False
) -> float:
    """Seconds for the ideal client: one login, the same requests from ``threads`` threads
    (a connection pool each), taking files from a shared queue; ``verify`` adds the read-back."""
    start = time.perf_counter()
    first = login(url)
    work: queue.Queue[Path] = queue.Queue()
    for path in files:
        work.put(path)
    errors: list[BaseException] = []

    def worker() -> None:
        with clone_session(first) as session:
            while not errors:
                try:
                    path = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    rid = create_and_put(session, url + "/0", path, parent_id)
                    if verify:
                        read_back(session, url + "/0", rid, path.stat().st_size)
                except BaseException as e:  # reported below, stops the others
                    errors.append(e)

    pool = [threading.Thread(target=worker, name=f"ideal-{n}") for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    first.close()
    if errors:
        raise errors[0]
    return elapsed


def single_latencies(url: str, files: Sequence[Path], parent_id: str) -> list[float]:
    """Seconds per file for a logged-in client that creates and PUTs one file at a time."""
    out: list[float] = []
    with login(url) as session:
        for path in files:
            start = time.perf_counter()
            create_and_put(session, url + "/0", path, parent_id)
            out.append(time.perf_counter() - start)
    return out


# --------------------------------------------------------------------------------- curl


@dataclass(frozen=True)
class CurlResult:
    seconds: float  # wall clock of the one PUT (curl started and finished)
    curl_time_total: float  # curl's own %{time_total}
    record_id: str


def curl_path() -> str | None:
    return shutil.which("curl")


def curl_version(curl: str) -> str:
    out = subprocess.run([curl, "--version"], capture_output=True, text=True, check=False)
    words = out.stdout.split()  # "curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 ..."
    return words[1] if len(words) > 1 else "unknown"


def _csrf_from_jar(jar: Path) -> str:
    """BPMCSRF's value from curl's Netscape cookie jar (name in column 6, value in 7)."""
    for line in jar.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 7 and cols[5] == "BPMCSRF":
            return cols[6]
    raise BenchError("curl's login left no BPMCSRF cookie")


def curl_put(curl: str, url: str, path: Path, parent_id: str, workdir: Path) -> CurlResult:
    """Log in with curl (cookie jar), create the record with curl, then time one
    ``curl -T path .../Data``: a single request carrying the whole file."""
    jar = workdir / "curl-cookies.txt"
    common = ["-sS", "--fail-with-body", "-H", "ForceUseSession: true"]
    login_cmd = [curl, *common, "-o", "/dev/null", "-c", str(jar)]
    login_cmd += ["-H", "Content-Type: application/json"]
    body = f'{{"UserName":"{USER}","UserPassword":"{PASSWORD}"}}'
    subprocess.run(
        [*login_cmd, "--data-binary", "@-", f"{url}/ServiceModel/AuthService.svc/Login"],
        input=body.encode(),
        check=True,
        capture_output=True,
    )
    csrf = ["-b", str(jar), "-H", f"BPMCSRF: {_csrf_from_jar(jar)}"]
    rid = str(uuid.uuid4())
    post = [curl, *common, *csrf, "-o", "/dev/null", "-H", "Content-Type: application/json"]
    create = (
        f'{{"Id":"{rid}","Name":"{path.name}","CaseId":"{parent_id}",'
        f'"TypeId":"{FILE_TYPE_FILE}","Size":{path.stat().st_size}}}'
    )
    subprocess.run(
        [*post, "--data-binary", create, f"{url}/0/odata/CaseFile"],
        check=True,
        capture_output=True,
    )
    # Expect: 100-continue would add a round trip the daemon does not make
    cmd = [curl, *common, *csrf, "-o", "/dev/null", "-w", "%{http_code} %{time_total}"]
    cmd += ["-H", "Content-Type: application/octet-stream", "-H", "Expect:"]
    cmd += ["-T", str(path), f"{url}/0/odata/CaseFile({rid})/Data"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"curl -T failed ({done.returncode}): {done.stderr.strip()[:300]}")
    code, total = done.stdout.split()
    if not code.startswith("2"):
        raise BenchError(f"curl -T: HTTP {code}")
    return CurlResult(seconds=seconds, curl_time_total=float(total), record_id=rid)
