"""The command line: commands, and expected errors turned into one readable line and an exit code.

The top of this module imports only click and the light project modules (``errors``,
``__init__``); config, logging, the Creatio client, type detection and rich are imported inside
the commands, so that ``creatio-attach --help`` starts fast. Expected errors
(``CreatioAttachError``) print ``creatio-attach: <message>`` (each config problem on its own
line, then ``hint: ...``) on stderr and exit with the error's ``exit_code``; anything else is a
bug and keeps its traceback. Nothing here prints a secret: passwords are never options.
"""

from __future__ import annotations

import functools
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from creatio_attach import __version__
from creatio_attach.emulator.cli import emulator_command
from creatio_attach.errors import CreatioAttachError, CreatioRejected, FileProblem

if TYPE_CHECKING:
    from creatio_attach.config import Config
    from creatio_attach.creatio import CreatioClient
    from creatio_attach.output import CheckItem

F = TypeVar("F", bound=Callable[..., Any])

NIL_GUID = "00000000-0000-0000-0000-000000000000"

#: file objects ``check`` looks for when no ``--entity`` is given (present on most sites)
STANDARD_FILE_OBJECTS = ("SysFile", "ActivityFile", "ContactFile", "AccountFile", "CaseFile")


class _Main(click.Group):
    """The group that turns expected errors into one line and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CreatioAttachError as e:
            from creatio_attach.output import print_error

            print_error(e)
            ctx.exit(e.exit_code)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="creatio-attach")
def main() -> None:
    """Move files from folders into Creatio CRM as attachments of the right records."""


main.add_command(emulator_command)


# ---------------------------------------------------------------------------------------------
# options every command takes


@dataclass(frozen=True)
class SiteOptions:
    config_path: Path | None
    url: str | None
    username: str | None
    verbose: bool

    def load(self) -> Config:
        """The validated config (``ConfigError`` lists every problem); warnings to stderr."""
        from creatio_attach.config import load_config
        from creatio_attach.log import setup_logging
        from creatio_attach.output import print_warning

        setup_logging(level="debug" if self.verbose else "warning")
        config = load_config(
            self.config_path,
            overrides={"creatio.url": self.url, "creatio.username": self.username},
        )
        for warning in config.warnings:
            print_warning(warning)
        return config


def site_options(command: F) -> F:
    """Add ``--config``, ``--url``, ``--username`` and ``-v``; pass them as ``site``."""

    @click.option(
        "--config",
        "config_path",
        metavar="PATH",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Config file. Default: $CREATIO_ATTACH_CONFIG, then /etc/creatio-attach/config.toml.",
    )
    @click.option(
        "--url",
        metavar="URL",
        help="Creatio site root (https://acme.creatio.com); overrides [creatio] url. Without a "
        "config file, --url, --username and $CREATIO_ATTACH_PASSWORD are enough.",
    )
    @click.option(
        "--username",
        metavar="NAME",
        help="Creatio user; overrides [creatio] username. The password comes from the config, "
        "the systemd credential creatio-password or $CREATIO_ATTACH_PASSWORD, never an option.",
    )
    @click.option(
        "-v", "--verbose", is_flag=True, help="Log what happens (requests, retries) on stderr."
    )
    @functools.wraps(command)
    def wrapper(
        *args: Any,
        config_path: Path | None,
        url: str | None,
        username: str | None,
        verbose: bool,
        **kwargs: Any,
    ) -> Any:
        site = SiteOptions(config_path, url, username, verbose)
        return command(*args, site=site, **kwargs)

    return wrapper  # type: ignore[return-value]


def _guid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value.strip().strip("{}")))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a GUID (like 3fa85f64-5717-4562-b3fc-2c963f66afa6)", param_hint=what
        ) from None


def parse_parent(spec: str) -> tuple[str, str, str]:
    """``SCHEMA:COLUMN=VALUE`` split at the first ``:`` and the first ``=`` after it."""
    schema, colon, rest = spec.partition(":")
    column, equals, value = rest.partition("=")
    if not colon or not equals or not schema.strip() or not column.strip():
        raise click.BadParameter(
            f"{spec!r} is not SCHEMA:COLUMN=VALUE (e.g. Case:Number=SR00001234)",
            param_hint="--parent",
        )
    return schema.strip(), column.strip(), value


def _open_client(config: Config) -> CreatioClient:
    from creatio_attach.creatio import CreatioClient

    return CreatioClient(config.creatio)


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


# ---------------------------------------------------------------------------------------------
# upload


@main.command()
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
)
@click.option(
    "--entity",
    required=True,
    metavar="FILE_OBJECT",
    help="The file object that holds the files: CaseFile, ContactFile, UsrRealtyFile, SysFile...",
)
@click.option(
    "--parent-id",
    metavar="GUID",
    help="Id of the parent record; its schema follows from the file object (CaseFile -> Case).",
)
@click.option(
    "--parent",
    "parent_spec",
    metavar="SCHEMA:COLUMN=VALUE",
    help="Find the parent by a column: Case:Number=SR00001234, or UsrRealty:Id=<guid> "
    "(SysFile needs this form: it takes any schema).",
)
@click.option(
    "--name",
    metavar="NAME",
    help="The record's Name (one FILE only). Default: the file name, its extension corrected "
    "to the content's type (scan -> scan.pdf).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of the uploads.")
@site_options
def upload(
    files: tuple[Path, ...],
    entity: str,
    parent_id: str | None,
    parent_spec: str | None,
    name: str | None,
    as_json: bool,
    site: SiteOptions,
) -> None:
    """Upload FILE... as attachments of one record.

    \b
    Examples:
      creatio-attach upload offer.pdf --entity CaseFile --parent Case:Number=SR00001234
      creatio-attach upload a.docx b.xlsx --entity CaseFile --parent-id 3fa85f64-...
      creatio-attach upload call.mp3 --entity SysFile --parent UsrRealty:Id=3fa85f64-...
    """
    if (parent_id is None) == (parent_spec is None):
        raise click.UsageError(
            "give exactly one of --parent-id GUID and --parent SCHEMA:COLUMN=VALUE"
        )
    if name is not None and len(files) != 1:
        raise click.UsageError("--name needs exactly one FILE")
    spec = parse_parent(parent_spec) if parent_spec is not None else None
    if spec is None and parent_id is not None:
        parent_id = _guid(parent_id, "--parent-id")
    if spec is not None and spec[1].lower() == "id":
        spec = (spec[0], "Id", _guid(spec[2], "--parent"))
    _check_schema_fits(entity, spec[0] if spec else None)
    from creatio_attach.creatio import Target

    # with --parent-id the target is known now: a SysFile without a schema fails before login
    early = Target.for_file_object(entity, parent_id) if parent_id is not None else None
    config = site.load()
    from creatio_attach.output import byte_progress, print_error, print_json

    results: list[dict[str, Any]] = []
    failures: list[CreatioAttachError] = []
    with _open_client(config) as client:
        client.login()
        _require_entity(client, entity)
        if early is not None:
            target = early
        else:
            assert spec is not None
            schema, column, value = spec
            found = value if column == "Id" else client.find_parent(schema, {column: value})
            target = Target.for_file_object(entity, found, parent_schema=schema)

        for path in files:
            try:
                size = path.stat().st_size
                mime, detected_name = _detect(path)
                big = size > config.creatio.chunk_threshold
                with byte_progress(path.name, size, enabled=big) as progress:
                    result = client.upload(
                        path, target, name=name or detected_name, mime=mime, progress=progress
                    )
            except (FileProblem, CreatioRejected) as e:
                # this file cannot go; the others still can. Say which one it was.
                e.path = e.path or str(path)
                failures.append(e)
                print_error(e)
                continue
            except OSError as e:
                problem = FileProblem(f"cannot read the file: {e.strerror}", path=str(path))
                failures.append(problem)
                print_error(problem)
                continue
            row = {
                "file": str(path),
                "entity": result.file_object,
                "record_id": result.record_id,
                "parent_schema": result.parent_schema,
                "parent_id": result.parent_id,
                "bytes": result.bytes,
                "mime": result.mime,
                "sha256": result.sha256,
            }
            results.append(row)
            if not as_json:
                renamed = f"  (as {result.name})" if result.name != path.name else ""
                click.echo(
                    f"{path}  ->  {result.file_object} {result.record_id}  "
                    f"{result.bytes} bytes{renamed}"
                )
    if as_json:
        print_json(results)
    if failures:
        sys.exit(failures[0].exit_code)


def _check_schema_fits(entity: str, schema: str | None) -> None:
    """``CaseFile`` only holds files of ``Case`` records; ``SysFile`` holds any schema's."""
    if schema is None or entity == "SysFile" or not entity.endswith("File"):
        return
    owner = entity[: -len("File")]
    if owner and owner != schema:
        raise click.BadParameter(
            f"{entity} holds files of {owner} records, not of {schema}", param_hint="--parent"
        )


def _require_entity(client: CreatioClient, entity: str) -> None:
    """A clear error before any work when the site has no such object (close names hinted)."""
    client.metadata().require(entity)


def _detect(path: Path) -> tuple[str, str]:
    """The real type by content (python-magic lives in ``detect``) and the record's Name.

    As in the daemon, the content wins in the Name: ``scan`` holding a PDF goes up as
    ``scan.pdf``, ``report.xls`` holding an xlsx as ``report.xlsx``.
    """
    from creatio_attach.detect import detect, record_name

    detected = detect(path)
    return detected.mime, record_name(path.name, detected)


# ---------------------------------------------------------------------------------------------
# list


@main.command("list")
@click.argument("schema")
@click.argument("record_id", metavar="RECORD_ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@site_options
def list_command(schema: str, record_id: str, as_json: bool, site: SiteOptions) -> None:
    """List the attachments of one record (its file object and SysFile).

    \b
    Example:
      creatio-attach list Case 3fa85f64-5717-4562-b3fc-2c963f66afa6
    """
    record_id = _guid(record_id, "RECORD_ID")
    config = site.load()
    from creatio_attach.output import human_size, print_json, print_table

    with _open_client(config) as client:
        client.login()
        _require_entity(client, schema)
        attachments = client.list_attachments(schema, record_id)
    if as_json:
        print_json(
            [
                {
                    "id": a.id,
                    "object": a.object,
                    "name": a.name,
                    "size": a.size,
                    "created_on": a.created_on,
                }
                for a in attachments
            ]
        )
        return
    if not attachments:
        click.echo(f"no attachments on {schema} {record_id}")
        return
    print_table(
        [
            ("Id", "left"),
            ("Object", "left"),
            ("Name", "left"),
            ("Size", "right"),
            ("CreatedOn", "left"),
        ],
        [[a.id, a.object, a.name, human_size(a.size), a.created_on or "-"] for a in attachments],
        title=f"{len(attachments)} attachment{'s' if len(attachments) != 1 else ''} "
        f"of {schema} {record_id}",
    )


# ---------------------------------------------------------------------------------------------
# download


@main.command()
@click.argument("file_object", metavar="FILE_OBJECT")
@click.argument("file_id", metavar="FILE_ID")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Where to save it: a file, or a folder. Default: the file's Name in the current folder.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@site_options
def download(
    file_object: str, file_id: str, output: Path | None, force: bool, site: SiteOptions
) -> None:
    """Download the content of one attachment.

    \b
    Example:
      creatio-attach download CaseFile 9b2f6c1e-0d4e-4a57-9f0a-2f8e1f6b7c3d -o ./offer.pdf
    """
    file_id = _guid(file_id, "FILE_ID")
    config = site.load()
    from creatio_attach.output import byte_progress

    with _open_client(config) as client:
        client.login()
        _require_entity(client, file_object)
        record = client.record_exists(file_object, file_id)
        if record is None:
            raise CreatioRejected(
                f"no {file_object} record with Id {file_id}",
                hint="'creatio-attach list SCHEMA RECORD_ID' shows a record's attachments",
            )
        dest = _download_path(output, str(record.get("Name") or ""), file_id)
        if dest.exists() and not force:
            raise FileProblem(
                "already exists", path=str(dest), hint="pass --force to overwrite it, or -o PATH"
            )
        size = record.get("Size")
        total = size if isinstance(size, int) else 0
        partial = dest.with_name(f".{dest.name}.{os.getpid()}.part")
        try:
            with byte_progress(
                dest.name, total, enabled=total > config.creatio.chunk_threshold
            ) as p:
                written = client.download(file_object, file_id, partial, progress=p)
            partial.replace(dest)
        except OSError as e:
            raise FileProblem(f"cannot write the file: {e.strerror}", path=str(dest)) from e
        finally:
            partial.unlink(missing_ok=True)
    click.echo(f"{dest}  {written} bytes")


def _download_path(output: Path | None, name: str, file_id: str) -> Path:
    """``-o`` as given (a folder gets the Name inside); else the Name, made safe, in cwd."""
    safe = Path(name.replace("\\", "/")).name
    if safe in {"", ".", ".."}:
        safe = file_id
    if output is None:
        return Path.cwd() / safe
    if output.is_dir():
        return output / safe
    return output


# ---------------------------------------------------------------------------------------------
# check


@main.command()
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

    client = _open_client(config)
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
