"""Fixtures shared by every test: the real-file corpus and emulators on loopback.

Every emulator here is the real server (uvicorn on 127.0.0.1, a free port) in a
background thread; tests talk to it over HTTP.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from creatio_attach.emulator import EmbeddedEmulator, EmulatorOptions

REPO = Path(__file__).resolve().parents[1]
# The corpus beside the repository is the reference; tests/fixtures/real is its copy for a clone
# of this repository alone.
_SHARED_FIXTURES = REPO.parent / "shared" / "fixtures" / "real"
FIXTURES = (
    _SHARED_FIXTURES
    if (_SHARED_FIXTURES / "manifest.csv").is_file()
    else REPO / "tests" / "fixtures" / "real"
)


@dataclass(frozen=True)
class CorpusFile:
    """One row of ../shared/fixtures/real/manifest.csv."""

    name: str
    size: int
    sha256: str
    expected_mime: str  # empty: the file must be rejected
    path: Path
    row: dict[str, str]


def load_manifest() -> list[CorpusFile]:
    with (FIXTURES / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append(
            CorpusFile(
                name=r["name"],
                size=int(r["bytes"]),
                sha256=r["sha256"],
                expected_mime=r.get("expected_mime", ""),
                path=FIXTURES / r["name"],
                row=r,
            )
        )
    return out


@pytest.fixture(scope="session")
def corpus() -> list[CorpusFile]:
    """The 57 real files with their manifest rows."""
    if not FIXTURES.is_dir():
        pytest.fail(f"the real-file corpus is missing: {FIXTURES}")
    return load_manifest()


@pytest.fixture(scope="session")
def corpus_by_name(corpus: list[CorpusFile]) -> dict[str, CorpusFile]:
    return {c.name: c for c in corpus}


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., EmbeddedEmulator]]:
    """Start emulators with custom options; all are stopped after the test."""
    started: list[EmbeddedEmulator] = []

    def start(**options: Any) -> EmbeddedEmulator:
        options.setdefault("data_dir", tmp_path / f"emulator-{len(started)}")
        emu = EmbeddedEmulator(EmulatorOptions(**options)).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., EmbeddedEmulator]) -> EmbeddedEmulator:
    """A fresh emulator (netframework runtime, default users) for this test."""
    return emulator_factory()


def wait_for(
    condition: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition!r}")
        time.sleep(interval)


@pytest.fixture(autouse=True)
def no_thread_is_left_behind() -> Iterator[None]:
    """Every thread a test starts (observers, workers, emulators) must be gone after it."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 10.0
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"threads left running after the test: {[t.name for t in left]}"
