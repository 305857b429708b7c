"""``creatio-attach demo``: the whole product end to end on this machine, in one command.

Starts the embedded Creatio emulator (with the custom object ``UsrRealty``) in a work folder,
seeds a few ``Case``, ``Contact``, ``UsrRealty`` and ``Call`` records, writes a config with three
inboxes (case documents, realty documents, FreePBX call recordings), starts the real daemon
(``creatio-attach run``) as a subprocess, drops the sample files of ``demo_data/`` into the
inboxes (some copied in, some written to a temporary name and renamed in, as scanners do), waits
until the journal says each one is done, checks that each landed on the expected record, downloads
each back through the Creatio client and compares SHA-256 with the source, and prints a table.
Any mismatch, failure or timeout ends it with one line and exit status 1, the daemon's log kept.
``--keep-running`` then leaves the emulator's web page and the daemon up until Ctrl-C.

This module's one job is the command: its options, the order of the steps, signals, the
``--keep-running`` loop and the exit status. The steps live in ``demo_setup`` (scenario, seeding,
config), ``demo_daemon`` (the daemon subprocess, dropping, the journal) and ``demo_report``
(checking each landing, the table).

A command module (the top of the layering, like ``cli``): it may use the emulator, the config,
the journal (read-only) and the client; it must not import requests, magic, sqlite3 or watchdog
itself (those stay in their adapters), and nothing heavy at import time (pydantic, starlette,
the emulator, the client): ``cli`` imports ``demo_command`` and ``creatio-attach --help`` must
stay fast.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Literal

import click

from creatio_attach.demo_daemon import (
    Outcome,
    demo_files,
    drop,
    journal_rows,
    log_tail,
    run_args,
    sha256_file,
    start_daemon,
    stop_daemon,
    wait_until_done,
)
from creatio_attach.demo_report import print_report, report, verify
from creatio_attach.demo_setup import (
    DROPS,
    SEEDS,
    USER,
    DemoFailed,
    daemon_env,
    inbox_tables,
    seed,
    write_config,
)
from creatio_attach.errors import CreatioAttachError

if TYPE_CHECKING:
    from creatio_attach.emulator import EmbeddedEmulator

# ---------------------------------------------------------------------------------------------
# signals: Ctrl-C, SIGTERM and a closed terminal all stop the demo cleanly


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived."""


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    fired: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not fired:  # once: the cleanup that follows must not be cut short
            fired.append(signum)
            raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _say(text: str, *, err: bool = False) -> None:
    click.echo(text, err=err)


def keep_running(
    emulator: EmbeddedEmulator, inboxes: Path, state_dir: Path, log: Path, config_path: Path,
    announced: dict[int, str], proc: subprocess.Popen[bytes],
) -> None:  # fmt: skip
    """Print where things are, then report each file's fate as it changes, until interrupted."""
    from creatio_attach.journal import State

    shown = {State.DONE, State.FAILED, State.DUPLICATE, State.UNMATCHED, State.RETRY_WAIT}
    _say("")
    _say(f"emulator:  {emulator.url}/   (open it in a browser: every record and file)")
    _say("inboxes (drop files here):")
    for table in inbox_tables(inboxes):
        _say(f"  {table['name']:<17} {table['folder']}")
    _say(f"config:    {config_path}   (the password is in the daemon's environment only)")
    _say(f"daemon log: {log}")
    _say(
        "a parent record that does not exist yet can be added while the file waits, e.g.\n"
        f"  curl -H 'Content-Type: application/json' -d '{{\"Number\": \"SR00004\"}}' "
        f"{emulator.url}/__emulator__/records/Case"
    )
    _say("the daemon and the emulator keep running; press Ctrl-C to stop both")
    while True:
        if proc.poll() is not None:
            raise DemoFailed(f"the daemon exited with status {proc.returncode}")
        for row in journal_rows(state_dir).values():
            if row.state not in shown or announced.get(row.id) == row.state:
                continue
            announced[row.id] = row.state
            if row.state == State.DONE:
                _say(
                    f"arrived: {row.inbox}/{row.path} -> {row.target} {row.record_id} "
                    f"({row.mime}, {row.size} bytes, as {row.record_name!r})"
                )
                continue
            note = row.last_error
            detail = note.message if note else ""
            if row.state in {State.UNMATCHED, State.RETRY_WAIT}:
                _say(f"waiting ({row.state}): {row.inbox}/{row.path}: {detail}")
            else:
                _say(f"{row.state}: {row.inbox}/{row.path}: {detail}")
        time.sleep(0.3)


# ---------------------------------------------------------------------------------------------
# the command


@click.command("demo")
@click.option(
    "--keep-running",
    is_flag=True,
    help="After the check, leave the emulator's web page and the daemon up (Ctrl-C stops).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one line of JSON.")
@click.option(
    "--runtime",
    type=click.Choice(["netframework", "netcore"]),
    default="netcore",
    show_default=True,
    help="Which Creatio runtime the emulator plays.",
)
@click.option("--port", type=int, default=0, help="Emulator port (default: any free one).")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the emulator's data, the inboxes, the journal and the log; kept. "
    "Default: a temporary folder, removed after a successful run.",
)
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds to wait.")
def demo_command(
    keep_running: bool,
    as_json: bool,
    runtime: Literal["netframework", "netcore"],
    port: int,
    workdir: Path | None,
    timeout: float,
) -> None:
    """Run the daemon end to end against the embedded emulator, with real sample files.

    Seeds records, writes a config with three inboxes (case documents, realty documents,
    FreePBX call recordings), starts `creatio-attach run`, drops the sample files, waits until
    each is uploaded, downloads each back and compares SHA-256. Exit 0 when all match.
    """
    temporary = workdir is None
    if workdir is not None and workdir.exists() and any(workdir.iterdir()):
        # an earlier run's records, journal and archive would make this one's results lie
        raise click.BadParameter(
            f"{workdir} is not empty; give a new or empty folder", param_hint="--workdir"
        )
    root = Path(tempfile.mkdtemp(prefix="creatio-attach-demo-")) if workdir is None else workdir
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "daemon.log"
    ok = False
    with _interruptible():
        try:
            _demo(root, log, keep_running, as_json, runtime, port, timeout)
            ok = True
        except Interrupted as e:
            _say(f"creatio-attach demo: interrupted ({e}); stopped", err=True)
            _say(f"work folder kept: {root}", err=True)
            sys.exit(130)
        except CreatioAttachError as e:
            if isinstance(e, DemoFailed):
                _say(f"creatio-attach demo: FAILED: {e.message}", err=True)
            else:
                from creatio_attach.output import print_error

                print_error(e)
            tail = log_tail(log)
            if tail:
                _say(f"last lines of the daemon log:\n{tail}", err=True)
            _say(f"daemon log: {log}", err=True)
            _say(f"work folder kept: {root}", err=True)
            sys.exit(e.exit_code)
    if keep_running:
        _say("stopped the daemon and the emulator", err=True)
    if ok and temporary:
        shutil.rmtree(root, ignore_errors=True)


def _demo(
    root: Path, log: Path, keep: bool, as_json: bool,
    runtime: Literal["netframework", "netcore"], port: int, timeout: float,
) -> None:  # fmt: skip
    from creatio_attach.config import load_config
    from creatio_attach.emulator import EmbeddedEmulator, EmulatorOptions
    from creatio_attach.log import setup_logging

    setup_logging(level="warning")  # this process's client: only what goes wrong, on stderr

    password = secrets.token_urlsafe(18)  # this run's only; never written to a file
    options = EmulatorOptions(
        port=port,
        runtime=runtime,
        data_dir=root / "emulator",
        users={USER: password},
        custom_schemas=("UsrRealty",),
    )
    emulator = EmbeddedEmulator(options)
    proc: subprocess.Popen[bytes] | None = None
    try:
        try:
            emulator.start()
        except OSError as e:
            raise DemoFailed(f"cannot start the emulator: {e.strerror or e}") from e
        ids = seed(emulator.url)
        inboxes, state_dir = root / "inboxes", root / "state"
        for table in inbox_tables(inboxes):
            Path(table["folder"]).mkdir(parents=True, exist_ok=True)
        config_path = root / "config.toml"
        write_config(config_path, emulator.url, state_dir, inboxes)
        # the config the daemon will read, checked here first: a bad one lists every problem
        config = load_config(config_path, env=daemon_env(password))
        if not as_json:
            _say(f"emulator ({runtime}) at {emulator.url}/ with {len(SEEDS)} records seeded")
            _say(f"daemon starting: {' '.join(run_args(config_path)[1:])}")
        proc = start_daemon(config_path, log, password)

        source_dir = demo_files()
        folders = {t["name"]: Path(t["folder"]) for t in inbox_tables(inboxes)}
        outcomes = []
        for d in DROPS:
            source = source_dir / d.source
            dest = folders[d.inbox] / d.relative
            digest = sha256_file(source)
            drop(source, dest, d.how)
            outcomes.append(Outcome(d, dest, digest, time.time()))  # complete in the inbox now
        if not as_json:
            _say(f"dropped {len(outcomes)} files into {len(folders)} inboxes; waiting...")
        wait_until_done(outcomes, state_dir, proc, timeout)
        verify(outcomes, emulator.url, config, ids, root / "downloaded")
        rows = report(outcomes)
        if as_json:
            doc = {
                "ok": True,
                "url": emulator.url,
                "runtime": runtime,
                "inboxes": {name: str(folder) for name, folder in folders.items()},
                "config": str(config_path),
                "log": str(log),
                "files": rows,
            }
            click.echo(json.dumps(doc, ensure_ascii=False))
        else:
            print_report(rows)
        if keep:
            announced = {o.row.id: str(o.row.state) for o in outcomes if o.row is not None}
            with contextlib.suppress(Interrupted):  # Ctrl-C: the way out of --keep-running
                keep_running(emulator, inboxes, state_dir, log, config_path, announced, proc)
        status = stop_daemon(proc)
        if status != 0:
            raise DemoFailed(f"the daemon stopped with status {status}, not 0 (SIGTERM)")
    finally:
        if proc is not None:
            stop_daemon(proc)
        emulator.stop()
