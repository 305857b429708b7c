"""Shared pieces of the benchmarks: scales, result records, waiting, seeded test files and a
forms login for the baseline clients.

Imports nothing from ``creatio_attach`` (the subprocesses are in ``processes``).
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

MiB = 1 << 20
USER = "Supervisor"
PASSWORD = "Supervisor"  # the emulator's default demo user  # noqa: S105
CASE_NUMBER = "SR1"
FILE_TYPE_FILE = "529bc2f8-0ee0-df11-971b-001d60e938c6"  # Creatio's "File" attachment type
PATTERN = r"^(?P<number>SR\d+)[/_ -]"


class BenchError(Exception):
    """A scenario could not be measured (a subprocess died, a wait timed out, a check failed)."""


# ------------------------------------------------------------------------------ scales


@dataclass(frozen=True)
class Scale:
    """How big each scenario is."""

    name: str
    big_bytes: int  # big-file: the one large file
    big_rounds: int  # big-file: curl and the daemon, alternately, this many times each
    small_count: int  # small-files: files dropped at once
    small_bytes: int
    drops: int  # latency: files dropped one at a time
    drop_bytes: int
    backlog_count: int  # backlog: files present at start
    backlog_bytes: int
    backlog_window: float  # backlog: seconds observed after the first upload
    timeout: float  # any single wait


SCALES: dict[str, Scale] = {
    "full": Scale("full", 1 << 30, 5, 2000, 32 << 10, 200, 8 << 10, 50_000, 4 << 10, 60.0, 1800.0),
    # tiny: for the smoke test; 16 MiB still takes the daemon's chunked path (above 8 MiB)
    "tiny": Scale("tiny", 16 * MiB, 1, 50, 32 << 10, 10, 8 << 10, 200, 4 << 10, 60.0, 120.0),
}


# ------------------------------------------------------------------------------ results


@dataclass
class Row:
    """One figure of creatio-attach beside its baseline (``ratio``: higher is better for the
    daemon, e.g. baseline time / daemon time)."""

    measure: str
    unit: str
    daemon: float | None
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None


@dataclass
class Goal:
    """A goal of issue 4; ``passed`` is None when it could not be measured."""

    name: str
    target: str
    value: float | None
    unit: str
    passed: bool | None


@dataclass
class ScenarioResult:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def goal(self, name: str, target: str, value: float | None, unit: str, ok: bool | None) -> None:
        self.goals.append(Goal(name, target, value, unit, None if value is None else ok))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n*q/100), at least 1
    return ordered[int(rank) - 1]


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
    alive: Callable[[], str | None] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; BenchError after ``timeout``.
    ``alive`` returns a reason when a subprocess we depend on has died."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if alive is not None and (why := alive()):
            raise BenchError(f"{what}: {why}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------ files


def header(index: int) -> bytes:
    """A plain first line, so that libmagic sees ``data`` and never an executable by chance."""
    return f"creatio-attach benchmark file {index:08d}\n".encode()


def seeded_content(index: int, size: int, seed: int) -> bytes:
    """Distinct, reproducible content for file ``index`` (the daemon skips equal content)."""
    head = header(index)
    rest = random.Random(seed * 1_000_003 + index).randbytes(max(0, size - len(head)))  # noqa: S311
    return (head + rest)[:size]


def write_files(
    folder: Path, names: Iterable[str], size: int, seed: int, *, first: int = 0
) -> dict[str, str]:
    """Write one seeded file per name; returns name -> SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    for i, name in enumerate(names, start=first):
        data = seeded_content(i, size, seed)
        (folder / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    return digests


def write_big_file(path: Path, size: int, seed: int, block: int = 4 * MiB) -> str:
    """A seeded pattern written block by block (each block stamped with its index, so that
    no two blocks are equal); returns the SHA-256."""
    pattern = random.Random(seed).randbytes(block)  # noqa: S311
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for n, start in enumerate(range(0, size, block)):
            stamp = header(n)
            data = (stamp + pattern[len(stamp) :])[: min(block, size - start)]
            out.write(data)
            digest.update(data)
    return digest.hexdigest()


def count_files(folder: Path) -> int:
    """Regular files anywhere under ``folder`` (0 if it does not exist)."""
    total = 0
    for _root, _dirs, files in os.walk(folder):
        total += len(files)
    return total


# ------------------------------------------------------------------------------ HTTP


def login(url: str) -> requests.Session:
    """A forms session as Creatio expects it: cookies, BPMCSRF header, ForceUseSession."""
    session = requests.Session()
    response = session.post(
        f"{url}/ServiceModel/AuthService.svc/Login",
        json={"UserName": USER, "UserPassword": PASSWORD},
        headers={"ForceUseSession": "true"},
        timeout=30,
    )
    response.raise_for_status()
    if response.json().get("Code") != 0:
        raise BenchError(f"login to {url} refused: {response.text[:200]}")
    session.headers["BPMCSRF"] = session.cookies.get("BPMCSRF") or ""
    session.headers["ForceUseSession"] = "true"
    return session


def clone_session(session: requests.Session) -> requests.Session:
    """Another connection pool with the same login (a Session per thread)."""
    other = requests.Session()
    other.cookies.update(session.cookies)
    other.headers.update(session.headers)
    return other


def seconds_since(start: float) -> float:
    return time.perf_counter() - start


@dataclass(frozen=True)
class Context:
    """What every scenario gets: its scale, a folder of its own, the daemon's concurrency."""

    scale: Scale
    workdir: Path
    concurrency: int
    seed: int = 20261128


def mb(n_bytes: int) -> float:
    """Bytes in MB (10^6), the unit of the memory goal."""
    return n_bytes / 1e6
