"""The ``check`` command: the config, the login, the file objects and every inbox, as a checklist.

``cli.py`` registers it on the main group; its shared options and the expected-error handling
come from there. Each check prints one line (``output.print_check``); a failure makes the exit
code non-zero (the first failure's), with a closing summary and its hint. The config, the
Creatio client and rich are imported inside the functions so that ``creatio-attach --help``
stays fast. A command module (the top of the layering): it must not import requests, magic,
sqlite3 or watchdog itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from creatio_attach.cli import SiteOptions, open_client, site_options
from creatio_attach.errors import CreatioAttachError, CreatioRejected

if TYPE_CHECKING:
    from creatio_attach.config import Config, InboxSettings
    from creatio_attach.creatio import CreatioClient
    from creatio_attach.creatio.metadata import Metadata
    from creatio_attach.output import CheckItem

NIL_GUID = "00000000-0000-0000-0000-000000000000"

#: file objects ``check`` looks for when no ``--entity`` is given (present on most sites)
STANDARD_FILE_OBJECTS = ("SysFile", "ActivityFile", "ContactFile", "AccountFile", "CaseFile")


@click.command()
@click.option(
    "--entity",
    "entities",
    multiple=True,
    metavar="FILE_OBJECT",
    help="A file object that must exist (repeatable). Default: the standard ones "
    f"({', '.join(STANDARD_FILE_OBJECTS)}), where a missing one is only a warning.",
)
@site_options
def check(entities: tuple[str, ...], site: SiteOptions) -> None:
    """Check the config, the login and the file objects; non-zero exit when anything fails."""
    from creatio_attach.errors import ConfigError
    from creatio_attach.output import CheckItem, print_check

    items: list[CheckItem] = []
    failures: list[CreatioAttachError] = []

    def note(item: CheckItem, error: CreatioAttachError | None = None) -> None:
        items.append(item)
        print_check(item)
        if error is not None:
            failures.append(error)

    try:
        config = site.load()
    except ConfigError as e:
        note(CheckItem("config", False, _config_label(e)), e)
        from creatio_attach.output import print_error

        print_error(e)
        sys.exit(e.exit_code)
    if config.path is not None:
        note(CheckItem("config", True, f"{config.path} is valid"))
    else:
        note(CheckItem("config", True, "no config file; --url and the environment are valid"))

    for inbox in config.inboxes:
        note(*_inbox_folder_check(inbox))

    client = open_client(config)
    with client:
        who = config.creatio.username or config.creatio.client_id or "?"
        try:
            client.login()
        except CreatioAttachError as e:
            note(CheckItem("login", False, f"{config.creatio.url} as {who}: {e.message}"), e)
        else:
            note(
                CheckItem(
                    "login", True, f"{config.creatio.url} as {who} (runtime {client.runtime})"
                )
            )
            for item, error in _file_object_checks(client, _checked_file_objects(config, entities)):
                note(item, error)
            if config.inboxes:
                for item, error in _inbox_metadata_checks(client, config.inboxes):
                    note(item, error)

    failed = [i for i in items if i.ok is False]
    if failures:
        from creatio_attach.output import PROG

        click.echo(
            f"{PROG}: {len(failed)} of {len(items)} checks failed: "
            + ", ".join(i.name for i in failed),
            err=True,
        )
        first = failures[0]
        if first.hint:
            click.echo(f"hint: {first.hint}", err=True)
        sys.exit(first.exit_code)


def _config_label(error: CreatioAttachError) -> str:
    return f"{error.path}: {error.message}" if error.path else error.message


@dataclass(frozen=True)
class FileObjectCheck:
    """A file object a command or an inbox writes to, and whether its absence is a failure."""

    file_object: str
    required: bool
    parent_schema: str | None = None


def _checked_file_objects(config: Config, entities: Sequence[str]) -> list[FileObjectCheck]:
    """What ``check`` verifies. The daemon adds each inbox's entity and parent schema here."""
    if entities:
        return [FileObjectCheck(e, required=True) for e in dict.fromkeys(entities)]
    return [FileObjectCheck(e, required=False) for e in STANDARD_FILE_OBJECTS]


def _file_object_checks(
    client: CreatioClient, checks: Sequence[FileObjectCheck]
) -> list[tuple[CheckItem, CreatioAttachError | None]]:
    """Each file object: in ``$metadata``, with its parent link, and readable."""
    from creatio_attach.output import CheckItem

    out: list[tuple[CheckItem, CreatioAttachError | None]] = []
    try:
        metadata = client.metadata()
    except CreatioAttachError as e:
        return [(CheckItem("$metadata", False, e.message), e)]
    for check_ in checks:
        name = check_.file_object
        info = metadata.entity(name)
        if info is None:
            if check_.required:
                error = CreatioRejected(
                    f"{name} is not in $metadata",
                    hint="names are case-sensitive; is the package that adds it installed?",
                )
                out.append((CheckItem(name, False, "not in $metadata"), error))
            else:
                out.append(
                    (CheckItem(name, None, "not in $metadata (fine unless you use it)"), None)
                )
            continue
        link = _parent_link(name, info.columns, info.lookups, check_.parent_schema)
        if link is None or link.startswith("missing"):
            detail = link or "no parent column"
            error = CreatioRejected(f"{name}: {detail}")
            out.append((CheckItem(name, False, detail), error))
            continue
        try:
            # a query that matches nothing proves the object can be read, cheaply
            client.find_records(name, {"Id": NIL_GUID}, select=("Id",), top=1)
        except CreatioAttachError as e:
            out.append((CheckItem(name, False, f"{link}; not readable: {e.message}"), e))
            continue
        out.append((CheckItem(name, True, f"{link}; readable"), None))
    return out


def _parent_link(
    name: str, columns: dict[str, str], lookups: dict[str, str], schema: str | None
) -> str | None:
    """How files of ``name`` point at their parent, in words; ``missing ...`` when broken."""
    if name == "SysFile":
        absent = [c for c in ("RecordSchemaName", "RecordId") if c not in columns]
        if absent:
            return "missing column " + ", ".join(absent)
        return "parent by RecordSchemaName + RecordId"
    owner = schema or (name[: -len("File")] if name.endswith("File") else "")
    if owner in lookups:
        return f"parent lookup {owner} -> {lookups[owner]}"
    targets = [nav for nav, target in lookups.items() if target == owner]
    if targets:
        return f"parent lookup {targets[0]} -> {owner}"
    return f"missing a lookup to {owner or 'its parent'}"


# ---------------------------------------------------------------------------------------------
# check: the inboxes


def _inbox_folder_check(inbox: InboxSettings) -> tuple[CheckItem, CreatioAttachError | None]:
    """The inbox folder exists and the daemon can write there; its folder templates expand."""
    import datetime

    from creatio_attach.errors import ConfigError
    from creatio_attach.output import CheckItem

    label = f"inbox {inbox.name}"
    folder = inbox.folder
    problem: str | None = None
    if not folder.is_dir():
        problem = "does not exist" if not folder.exists() else "is not a folder"
    elif not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        # archiving and deleting need write access to the inbox folder itself
        problem = "is not readable and writable by this user"
    if problem is None:
        today = datetime.date.today().isoformat()
        try:
            folders = [inbox.folder_for(kind, today) for kind in ("archive", "failed", "unmatched")]
        except (KeyError, ValueError) as e:
            problem = f"a folder template does not expand: {e}"
        else:
            blocked = [f for f in folders if not _can_create(f)]
            if blocked:
                problem = f"cannot create {blocked[0]}"
    if problem is not None:
        error = ConfigError(
            f"{label}: {folder} {problem}",
            hint="create the folder and give the daemon's user write access to it",
        )
        return CheckItem(label, False, f"{folder} {problem}"), error
    kind = (
        f"preset {inbox.preset}"
        if inbox.preset
        else ("call recordings" if inbox.is_recordings else f"{inbox.entity}")
    )
    return CheckItem(
        label, True, f"{folder} is writable; {kind}; after upload: {inbox.after}"
    ), None


def _can_create(folder: Path) -> bool:
    """The folder exists and is writable, or its nearest existing parent is."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


def _inbox_metadata_checks(
    client: CreatioClient, inboxes: Sequence[InboxSettings]
) -> list[tuple[CheckItem, CreatioAttachError | None]]:
    """Each inbox's file object, parent schema and where/id columns are in ``$metadata``."""
    from creatio_attach.output import CheckItem

    try:
        metadata = client.metadata()
    except CreatioAttachError as e:
        return [(CheckItem("$metadata", False, e.message), e)]
    out: list[tuple[CheckItem, CreatioAttachError | None]] = []
    for inbox in inboxes:
        problems = _inbox_metadata_problems(metadata, inbox)
        label = f"inbox {inbox.name}"
        if problems:
            error = CreatioRejected(
                f"{label}: " + "; ".join(problems),
                hint="names are case-sensitive; check them in $metadata or the configuration",
            )
            out.append((CheckItem(label, False, "; ".join(problems)), error))
        elif inbox.is_recordings:
            out.append((CheckItem(label, True, f"{_recording_targets(inbox)} in $metadata"), None))
        else:
            assert inbox.parent is not None
            by = (
                f"{inbox.parent.schema_}.Id"
                if inbox.parent.id is not None
                else f"{inbox.parent.schema_}." + "+".join(inbox.parent.where or {})
            )
            out.append((CheckItem(label, True, f"{inbox.entity} of {by} in $metadata"), None))
    return out


def _recording_targets(inbox: InboxSettings) -> str:
    assert inbox.match is not None
    objects = (
        ["Call", "CallFile"] if {"call_by_id", "call_by_number"} & set(inbox.match.steps) else []
    )
    if "contact_by_number" in inbox.match.steps:
        objects += ["Contact", "ContactCommunication"]
        if inbox.match.contact_target == "activity":
            objects += ["Activity", "ActivityFile"]
        else:
            objects.append("ContactFile")
    return ", ".join(objects)


def _inbox_metadata_problems(metadata: Metadata, inbox: InboxSettings) -> list[str]:
    problems: list[str] = []
    if inbox.is_recordings:
        for name in _recording_targets(inbox).split(", "):
            if name and metadata.entity(name) is None:
                problems.append(f"{name} is not in $metadata")
        return problems
    assert inbox.entity is not None and inbox.parent is not None
    entity = metadata.entity(inbox.entity)
    if entity is None:
        problems.append(f"file object {inbox.entity} is not in $metadata")
    schema = inbox.parent.schema_
    parent = metadata.entity(schema)
    if parent is None:
        problems.append(f"parent schema {schema} is not in $metadata")
    else:
        columns = ["Id"] if inbox.parent.id is not None else list(inbox.parent.where or {})
        missing = [c for c in columns if c not in parent.columns]
        if missing:
            problems.append(f"{schema} has no column {', '.join(missing)}")
    if entity is not None and parent is not None:
        link = _parent_link(inbox.entity, entity.columns, entity.lookups, schema)
        if link is None or link.startswith("missing"):
            problems.append(f"{inbox.entity}: {link or 'no parent column'}")
    return problems
