"""The daemon's commands: ``run``, ``status``, ``retry`` and ``submit`` (click).

``cli.py`` registers them on the main group. Heavy modules (the service, the journal, the
client) are imported inside the commands so ``creatio-attach --help`` stays fast. Expected
errors print one line (``output.print_error``) and exit with the error's code (78 for a bad
config or rejected credentials). Arguments are taken literally: nothing is ever passed to a
shell or evaluated (``submit`` is called from PBX hooks with caller ids in its arguments).
``status``, ``retry`` and ``submit`` use the journal only, so they load the config without its
secrets: they work where the password is not at hand (a shell beside the systemd service, whose
password is its credential; a PBX hook).
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import stat
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from creatio_attach.errors import CreatioAttachError

if TYPE_CHECKING:
    from creatio_attach.config import Config
    from creatio_attach.journal import FileRow, Journal

F = TypeVar("F", bound=Callable[..., Any])


def _expected_errors(command: F) -> F:
    """Expected errors -> one readable line and the error's exit code (also outside ``cli``)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except CreatioAttachError as e:
            from creatio_attach.output import print_error

            print_error(e)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Config file (default: $CREATIO_ATTACH_CONFIG, then /etc/creatio-attach/config.toml).",
)


def _load(config_path: Path | None, *, secrets: bool = True) -> Config:
    """The config; ``secrets=False`` for the commands that never talk to Creatio."""
    from creatio_attach.config import load_config

    return load_config(config_path, secrets=secrets)


def _absolute(path: str) -> str:
    """The path made absolute as typed (symlinks are not resolved: the journal keeps paths as
    the watcher reported them)."""
    return os.path.normpath(os.path.join(os.getcwd(), path))  # noqa: PTH118, PTH109


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------------------------------------
# run


@click.command("run")
@_config_option
@click.option(
    "--dry-run", is_flag=True, help="Show what would happen to each file; upload nothing."
)
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON array.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@_expected_errors
def run_command(config_path: Path | None, dry_run: bool, as_json: bool, log_level: str) -> None:
    """Watch the inboxes and upload every complete file, until SIGTERM or SIGINT."""
    from creatio_attach.log import setup_logging

    if as_json and not dry_run:
        raise click.UsageError("--json goes with --dry-run (run itself logs JSON lines)")
    setup_logging(level=log_level)
    if dry_run:
        _dry_run(config_path, as_json)
        return
    from creatio_attach.service import Service

    sys.exit(Service(config_path).run())


def _dry_run(config_path: Path | None, as_json: bool) -> None:
    from creatio_attach.creatio import CreatioClient
    from creatio_attach.errors import CreatioUnavailable
    from creatio_attach.service import dry_run

    config = _load(config_path)
    client: CreatioClient | None = CreatioClient(config.creatio)
    assert client is not None
    try:
        client.login()
    except CreatioUnavailable as exc:
        click.echo(
            f"creatio-attach: Creatio is unreachable ({exc.message}); parents not looked up",
            err=True,
        )
        client.close()
        client = None
    try:
        planned = dry_run(config, client)
    finally:
        if client is not None:
            client.close()
    if as_json:
        click.echo(json.dumps([p.__dict__ for p in planned], ensure_ascii=False, indent=2))
        return
    if not planned:
        click.echo("no files in the inboxes")
        return
    for p in planned:
        click.echo(f"{p.inbox}: {p.file}")
        click.echo(f"  type:    {p.mime or '-'}")
        click.echo(f"  target:  {p.target or '-'}")
        click.echo(f"  parent:  {p.parent or '-'}")
        click.echo(f"  name:    {p.name or '-'}")
        click.echo(f"  outcome: {p.outcome} (dry run: nothing uploaded)")


# ---------------------------------------------------------------------------------------------
# status


def _row_brief(row: FileRow) -> dict[str, Any]:
    note = row.last_error
    return {
        "inbox": row.inbox,
        "file": row.path,
        "state": row.state.value,
        "location": row.location,
        "entity": row.target,
        "parent": f"{row.parent_schema} {row.parent_id}" if row.parent_id else None,
        "record_id": row.record_id,
        "bytes": row.size,
        "mime": row.mime,
        "attempts": row.attempts,
        "reason": note.reason if note else None,
        "message": note.message if note else None,
        "status": note.status if note else None,
        "creatio_message": note.creatio_message if note else None,
        "details": dict(note.details) if note and note.details else None,
        "next_attempt_at": row.next_attempt_at,
        "updated_at": row.updated_at,
        "done_at": row.done_at,
        "final_path": row.final_path,
        "matched_by": row.matched_by,
    }


@click.command("status")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--last",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many recent uploads to show.",
)
@_expected_errors
def status_command(config_path: Path | None, as_json: bool, last: int) -> None:
    """Counts per state and inbox, the last uploads, every failure with its reason.

    Reads the journal only (no password needed); safe while the daemon runs.
    """
    from creatio_attach.journal import JOURNAL_FILE, Journal, State

    config = _load(config_path, secrets=False)
    file = Path(config.state.dir) / JOURNAL_FILE
    if not file.is_file():
        _no_journal_yet(config, file, as_json)
        return
    with Journal.open_readonly(config.state.dir) as journal:
        counts = journal.counts()
        recent = journal.recent(last)
        failures = journal.failures()
        waiting = journal.by_state(State.UNMATCHED, State.RETRY_WAIT)
        matched = journal.matched_by_counts()
    for inbox in config.inboxes:
        counts.setdefault(inbox.name, {})
    doc = {
        "journal": str(Path(config.state.dir) / "journal.sqlite3"),
        "counts": counts,
        "recent": [_row_brief(r) for r in recent],
        "failures": [_row_brief(r) for r in failures],
        "waiting": [_row_brief(r) for r in waiting],
        "matched_by": matched,
    }
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2, default=str))
        return
    _print_status(doc)


def _no_journal_yet(config: Config, file: Path, as_json: bool) -> None:
    """``status`` before the daemon ever ran here: nothing recorded yet, which is no error
    (a monitoring script or a first look after the install gets empty counts and exit 0)."""
    if as_json:
        doc: dict[str, Any] = {
            "journal": None,
            "counts": {i.name: {} for i in config.inboxes},
            "recent": [],
            "failures": [],
            "waiting": [],
            "matched_by": {},
        }
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    click.echo(f"journal: none yet at {file}")
    click.echo("nothing has been recorded yet: the daemon has not run with this [state] dir")
    for inbox in config.inboxes:
        click.echo(f"  {inbox.name}: no files yet")


def _print_status(doc: dict[str, Any]) -> None:
    click.echo(f"journal: {doc['journal']}")
    click.echo("")
    states = ["seen", "ready", "uploading", "uploaded", "done", "retry_wait", "unmatched"]
    states += ["failed", "duplicate", "gone"]
    width = max([5, *(len(i) for i in doc["counts"])])
    click.echo(f"{'inbox':<{width}}  " + " ".join(f"{s:>10}" for s in states))
    for inbox, per_state in sorted(doc["counts"].items()):
        cells = " ".join(f"{per_state.get(s, 0):>10}" for s in states)
        click.echo(f"{inbox:<{width}}  {cells}")
    click.echo("")
    click.echo("last uploads:" if doc["recent"] else "last uploads: none")
    for r in doc["recent"]:
        click.echo(
            f"  {_when(r['done_at'])}  {r['inbox']}: {r['file']} -> {r['entity']} "
            f"{r['record_id']} ({r['bytes']} bytes, {r['mime']})"
        )
    click.echo("")
    click.echo("failures:" if doc["failures"] else "failures: none")
    for r in doc["failures"]:
        status = f" HTTP {r['status']}" if r["status"] else ""
        click.echo(f"  {r['inbox']}: {r['file']}: {r['reason']}{status}: {r['message']}")
        click.echo(f"      now at {r['location']}")
    if doc["waiting"]:
        click.echo("")
        click.echo("waiting:")
        for r in doc["waiting"]:
            click.echo(
                f"  {r['inbox']}: {r['file']}: {r['state']} ({r['reason']}: {r['message']}), "
                f"next try {_when(r['next_attempt_at'])}"
            )
    if doc["matched_by"]:
        click.echo("")
        click.echo("recordings matched by step:")
        for inbox, steps in sorted(doc["matched_by"].items()):
            click.echo(f"  {inbox}: " + ", ".join(f"{k} {v}" for k, v in sorted(steps.items())))


# ---------------------------------------------------------------------------------------------
# retry


@click.command("retry")
@_config_option
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@click.option("--all-failed", is_flag=True, help="Requeue every failed file.")
@_expected_errors
def retry_command(config_path: Path | None, paths: Sequence[str], all_failed: bool) -> None:
    """Put failed files back in the queue (and named unmatched files, at once).

    A PATH may be the file's original path, its path relative to the inbox, or where it lies
    now in the failed folder. The file stays where it is; the daemon picks it up from there
    (also when it runs only later).
    """
    from creatio_attach.journal import Journal

    if bool(paths) == all_failed:
        raise click.UsageError("give the failed files' paths, or --all-failed")
    config = _load(config_path, secrets=False)
    names: list[str] = []
    for p in paths:
        names.append(p)
        full = _absolute(p)
        if full != p:
            names.append(full)
    with Journal.open(config.state.dir) as journal:
        if all_failed:
            result = journal.retry_failed(now=time.time(), all_failed=True)
            missing: list[str] = []
        else:
            result = journal.retry_failed(names, now=time.time())
            found: set[str | None] = set()
            for r in result.requeued:
                found |= {r.path, r.location, r.source_path, r.final_path}
            missing = [p for p in paths if not ({p, _absolute(p)} & found)]
    seen: set[int] = set()
    for row in result.requeued:
        if row.id in seen:
            continue
        seen.add(row.id)
        click.echo(f"requeued {row.inbox}: {row.path} (at {row.location})")
    if not seen:
        click.echo("nothing to retry")
    for p in missing:
        click.echo(f"creatio-attach: no failed or unmatched file {p}", err=True)
    if missing:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# submit


def _key_value(
    _ctx: click.Context, _param: click.Parameter, values: Sequence[str]
) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or not key.replace("_", "").isalnum():
            raise click.BadParameter(f"{item!r}: expected key=value with a plain key")
        out[key] = value
    return out


@click.command("submit")
@_config_option
@click.argument("file", type=click.Path(path_type=str))
@click.option("--inbox", default=None, help="The inbox the file belongs to (default: by folder).")
@click.option(
    "--set",
    "metadata",
    multiple=True,
    callback=_key_value,
    metavar="KEY=VALUE",
    help="Metadata for the matching chain, e.g. --set uniqueid=1732790400.1234 (repeatable).",
)
@_expected_errors
def submit_command(
    config_path: Path | None, file: str, inbox: str | None, metadata: dict[str, str]
) -> None:
    """Mark FILE complete at once (a PBX's post-recording hook), with optional metadata.

    Written to the journal, so it works while the daemon runs and while it is stopped; no
    password needed.
    """
    from creatio_attach.errors import ConfigError
    from creatio_attach.journal import Journal

    config = _load(config_path, secrets=False)
    path = _absolute(file)
    if inbox is not None and config.inbox(inbox) is None:
        raise ConfigError(
            f"no inbox named {inbox!r}",
            hint="inboxes: " + ", ".join(i.name for i in config.inboxes),
        )
    with Journal.open(config.state.dir) as journal:
        if not _known(journal, path):
            _check_submittable(config, path, inbox)
        number = journal.submit(path=path, inbox=inbox, metadata=metadata, now=time.time())
    click.echo(f"submitted {path} (#{number})")


def _known(journal: Journal, path: str) -> bool:
    """The journal has a file at ``path`` still on its way (e.g. one in the unmatched folder)."""
    from creatio_attach.intake import row_for_path

    return row_for_path(journal, path) is not None


def _check_submittable(config: Config, path: str, inbox: str | None) -> None:
    """A file the daemon would take: a regular file (not a symlink) inside the inbox named,
    or inside some inbox. Otherwise the hook hears it at once (exit 1), instead of a success
    followed by a warning in the daemon's log."""
    from creatio_attach.adapters import watch_specs
    from creatio_attach.errors import FileRefused
    from creatio_attach.events import in_scope

    specs = [s for s in watch_specs(config) if inbox is None or s.inbox == inbox]
    where = f"inbox {inbox!r}" if inbox else "any inbox"
    if not any(in_scope(spec, path) for spec in specs):
        raise FileRefused(
            f"not in {where} (or an ignored or excluded name)",
            reason="not_in_inbox",
            path=path,
            hint="inbox folders: " + ", ".join(str(s.folder) for s in specs),
        )
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise FileRefused(
            f"cannot submit: {exc.strerror}", reason="no_such_file", path=path
        ) from exc
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(
            "not a regular file (a symlink, folder or FIFO is never taken)",
            reason="not_a_file",
            path=path,
        )


COMMANDS = (run_command, status_command, retry_command, submit_command)


@click.group()
def _standalone() -> None:
    """The daemon's commands (normally reached through ``creatio-attach``)."""


for _command in COMMANDS:
    _standalone.add_command(_command)

if __name__ == "__main__":
    _standalone()
