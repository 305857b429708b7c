"""The daemon under ``creatio-attach demo``: run it, feed it, follow its journal.

Starts the real daemon (``creatio-attach run``) as a subprocess in its own session and waits
until it watches every inbox; stops it with SIGTERM (SIGKILL if it hangs); drops the packaged
sample files into the inboxes (copied in, or written to a hidden ``.part`` and renamed in, as
scanners do); reads the journal read-only until each file is done, failing at once on a final
bad state, a dead daemon or the timeout.

Imports ``demo_setup`` only among the demo's modules; ``journal`` (the only code that imports
sqlite3) and ``cli`` (to see whether it lists ``run``) only lazily, inside the functions that
need them. It must not import requests, magic, sqlite3, watchdog, pydantic or starlette, and
nothing heavy at import time (``creatio-attach --help`` must stay fast).
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from creatio_attach.demo_setup import DemoFailed, Drop, daemon_env

if TYPE_CHECKING:
    from creatio_attach.journal import FileRow

READY_EVENT = "daemon.ready"  # the daemon's log event once it watches every inbox
DAEMON_START_TIMEOUT = 30.0
POLL = 0.1


# ---------------------------------------------------------------------------------------------
# the daemon subprocess


def run_args(config: Path) -> list[str]:
    """``python -m creatio_attach run ...`` (the daemon commands' own entry point while the
    main group does not list ``run``)."""
    from creatio_attach.cli import main

    module = "creatio_attach" if "run" in main.commands else "creatio_attach.daemon_cli"
    return [sys.executable, "-m", module, "run", "--config", str(config), "--log-level", "info"]


def log_tail(log: Path, lines: int = 8) -> str:
    """The last lines of the daemon's log, indented (empty when it cannot be read)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("  " + line for line in text[-lines:])


def start_daemon(config: Path, log: Path, password: str) -> subprocess.Popen[bytes]:
    """Start ``run`` in its own session (Ctrl-C reaches only the demo, which stops it in
    order) and return once it logs that it watches every inbox."""
    with log.open("ab") as out:
        proc = subprocess.Popen(  # our own program, literal arguments
            run_args(config),
            stdout=out,
            stderr=out,
            env=daemon_env(password),
            start_new_session=True,
        )
    deadline = time.monotonic() + DAEMON_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoFailed(f"the daemon exited at start with status {proc.returncode}")
        if READY_EVENT in log.read_text(encoding="utf-8", errors="replace"):
            return proc
        time.sleep(POLL)
    stop_daemon(proc)
    raise DemoFailed(f"the daemon did not get ready within {DAEMON_START_TIMEOUT:.0f} s")


def stop_daemon(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM and wait (the daemon finishes uploads in flight); SIGKILL if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(10)
    return proc.returncode


# ---------------------------------------------------------------------------------------------
# dropping and waiting


def demo_files() -> Path:
    """The packaged sample files (a real folder: package data is installed as files)."""
    from importlib import resources

    return Path(str(resources.files("creatio_attach") / "demo_data"))


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def drop(source: Path, dest: Path, how: Literal["copy", "scanner"]) -> None:
    """Copy in (one close-after-write), or write a hidden ``.part`` file beside the target and
    rename it into place, as scanners and sync tools do (the inbox ignores the ``.part``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if how == "copy":
        shutil.copyfile(source, dest)
        return
    temp = dest.with_name(f".{dest.name}.part")
    with source.open("rb") as src, temp.open("wb") as out:
        while block := src.read(16 * 1024):  # in pieces, like a device streaming a page
            out.write(block)
            out.flush()
    temp.rename(dest)


@dataclass
class Outcome:
    """One dropped file and what became of it."""

    drop: Drop
    path: Path  # where it was dropped
    sha256: str
    dropped_at: float
    row: FileRow | None = None
    downloaded_sha256: str | None = None


def journal_rows(state_dir: Path) -> dict[tuple[str, str], FileRow]:
    """{(inbox, relative path): the newest journal row} (empty before the journal exists)."""
    from creatio_attach.errors import JournalError
    from creatio_attach.journal import Journal, State

    try:
        with Journal.open_readonly(state_dir) as journal:
            rows = journal.by_state(*State)
    except JournalError:
        return {}
    return {(r.inbox, r.path): r for r in rows}


def wait_until_done(
    outcomes: list[Outcome], state_dir: Path, proc: subprocess.Popen[bytes], timeout: float
) -> None:
    """Poll the journal until every file is done; fail at once on a final bad state."""
    from creatio_attach.journal import State

    bad = {State.FAILED, State.DUPLICATE, State.GONE}
    deadline = time.monotonic() + timeout
    while True:
        rows = journal_rows(state_dir)
        for o in outcomes:
            o.row = rows.get((o.drop.inbox, o.drop.relative))
            if o.row is not None and o.row.state in bad:
                note = o.row.last_error
                why = f": {note.reason}: {note.message}" if note else ""
                raise DemoFailed(f"{o.drop.inbox}/{o.drop.relative} ended {o.row.state}{why}")
        if all(o.row is not None and o.row.state == State.DONE for o in outcomes):
            return
        if proc.poll() is not None:
            raise DemoFailed(f"the daemon exited with status {proc.returncode}")
        if time.monotonic() > deadline:
            waiting = [
                f"{o.drop.inbox}/{o.drop.relative} "
                + (f"({o.row.state}: {o.row.last_error.message})"
                   if o.row and o.row.last_error else f"({o.row.state if o.row else 'unseen'})")
                for o in outcomes
                if o.row is None or o.row.state != State.DONE
            ]  # fmt: skip
            raise DemoFailed(f"not uploaded within {timeout:.0f} s: " + "; ".join(waiting))
        time.sleep(POLL)
