"""The one-shot transfer commands: ``upload``, ``list`` and ``download`` (click).

``cli.py`` registers them on the main group; their shared options (``--config``, ``--url``,
``--username``, ``-v``) and the expected-error handling come from there. The config, the Creatio
client, type detection (``detect``, the only user of python-magic) and rich are imported inside
the commands so that ``creatio-attach --help`` stays fast. A command module (the top of the
layering): it must not import requests, magic, sqlite3 or watchdog itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from creatio_attach.cli import SiteOptions, open_client, parse_guid, site_options
from creatio_attach.errors import CreatioAttachError, CreatioRejected, FileProblem

if TYPE_CHECKING:
    from creatio_attach.creatio import CreatioClient


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


# ---------------------------------------------------------------------------------------------
# upload


@click.command()
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
        parent_id = parse_guid(parent_id, "--parent-id")
    if spec is not None and spec[1].lower() == "id":
        spec = (spec[0], "Id", parse_guid(spec[2], "--parent"))
    _check_schema_fits(entity, spec[0] if spec else None)
    from creatio_attach.creatio import Target

    # with --parent-id the target is known now: a SysFile without a schema fails before login
    early = Target.for_file_object(entity, parent_id) if parent_id is not None else None
    config = site.load()
    from creatio_attach.output import byte_progress, print_error, print_json

    results: list[dict[str, Any]] = []
    failures: list[CreatioAttachError] = []
    with open_client(config) as client:
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


@click.command("list")
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
    record_id = parse_guid(record_id, "RECORD_ID")
    config = site.load()
    from creatio_attach.output import human_size, print_json, print_table

    with open_client(config) as client:
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


@click.command()
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
    file_id = parse_guid(file_id, "FILE_ID")
    config = site.load()
    from creatio_attach.output import byte_progress

    with open_client(config) as client:
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
