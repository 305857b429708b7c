"""What ``creatio-attach demo`` reports: the check of each landing, then the table or JSON.

Checks that each uploaded file is a record in the emulator, in the right file object, on the
right parent, and that its content downloaded back through the Creatio client has the source's
SHA-256 (``check_landings``, ``verify``); turns the outcomes into the report's rows (``report``)
and prints them as a table (``print_report``; the ``--json`` document is built by ``demo``).

Imports ``demo_setup`` and ``demo_daemon`` among the demo's modules, and the client, ``output``
and rich lazily; it must not import requests, magic, sqlite3, watchdog, pydantic or starlette
itself or at import time (the client is the only code that imports requests, and
``creatio-attach --help`` must stay fast). The emulator's file list comes over its admin API.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from creatio_attach.demo_daemon import Outcome, sha256_file
from creatio_attach.demo_setup import DemoFailed, emulator_admin

if TYPE_CHECKING:
    from creatio_attach.config import Config


@dataclass(frozen=True)
class Landing:
    """Where one file must have landed, and with which bytes."""

    label: str  # inbox/relative path, for messages
    record_id: str  # the record the journal says was created
    entity: str  # the file object it must be in
    parent_schema: str
    parent_id: str  # the record it must be attached to
    sha256: str  # of the source file


def check_landings(
    landings: list[Landing], emulator_url: str, config: Config, downloads: Path
) -> tuple[dict[str, str], list[str]]:
    """Each record in the emulator, in the right file object and on the right parent, and its
    content downloaded back through the client (``.../Data`` or FileService) equal to the
    source. Returns ({record Id: downloaded SHA-256}, problems)."""
    from creatio_attach.creatio import CreatioClient

    stored = {
        f["id"].lower(): f for f in emulator_admin(emulator_url, "GET", "/__emulator__/files")
    }
    downloads.mkdir(parents=True, exist_ok=True)
    downloaded: dict[str, str] = {}
    problems: list[str] = []
    with CreatioClient(config.creatio) as client:
        client.login()
        for n, want in enumerate(landings):
            got = stored.get(want.record_id.lower())
            if got is None:
                problems.append(f"{want.label}: record {want.record_id} is not in Creatio")
                continue
            where = (got["entity"], str(got["parent_id"]).lower())
            if where != (want.entity, want.parent_id.lower()):
                problems.append(
                    f"{want.label}: landed on {got['entity']} of {got['parent_schema']} "
                    f"{got['parent_id']}, expected {want.entity} of {want.parent_schema} "
                    f"{want.parent_id}"
                )
            dest = downloads / f"{n:02d}.bin"
            client.download(got["entity"], want.record_id, dest)
            digest = downloaded[want.record_id] = sha256_file(dest)
            if digest != want.sha256:
                problems.append(
                    f"{want.label}: downloaded SHA-256 {digest[:12]}... differs from the "
                    f"source's {want.sha256[:12]}..."
                )
    return downloaded, problems


def verify(
    outcomes: list[Outcome], emulator_url: str, config: Config, ids: dict[tuple[str, str], str],
    downloads: Path,
) -> None:  # fmt: skip
    """``check_landings`` for the dropped files; DemoFailed listing every problem."""
    landings = []
    for o in outcomes:
        assert o.row is not None and o.row.record_id is not None  # every row is done here
        landings.append(
            Landing(
                label=f"{o.drop.inbox}/{o.drop.relative}",
                record_id=o.row.record_id,
                entity=o.drop.entity,
                parent_schema=o.drop.parent[0],
                parent_id=ids[o.drop.parent],
                sha256=o.sha256,
            )
        )
    downloaded, problems = check_landings(landings, emulator_url, config, downloads)
    for o in outcomes:
        assert o.row is not None and o.row.record_id is not None
        o.downloaded_sha256 = downloaded.get(o.row.record_id)
    if problems:
        raise DemoFailed("; ".join(problems))


# ---------------------------------------------------------------------------------------------
# output


def _parent_label(o: Outcome) -> str:
    schema, key = o.drop.parent
    if schema == "Call":
        return f"Call ({o.row.matched_by})" if o.row and o.row.matched_by else "Call"
    return f"{schema} {key}"


def report(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """One row per dropped file: the ``files`` of ``--json`` and the lines of the table."""
    out = []
    for o in outcomes:
        row = o.row
        assert row is not None
        out.append(
            {
                "file": o.drop.relative,
                "source": o.drop.source,
                "inbox": o.drop.inbox,
                "type": row.mime,
                "object": row.target,
                "parent_schema": row.parent_schema,
                "parent_id": row.parent_id,
                "parent": _parent_label(o),
                "matched_by": row.matched_by,
                "name": row.record_name,
                "record_id": row.record_id,
                "bytes": row.size,
                "sha256": o.sha256,
                "downloaded_sha256": o.downloaded_sha256,
                "ms": round(((row.done_at or o.dropped_at) - o.dropped_at) * 1000),
            }
        )
    return out


def print_report(rows: list[dict[str, Any]]) -> None:
    """A compact rich table on a terminal (the record's Name under the file when the content
    changed it, the parent under the object); piped, one plain line per file."""
    title = f"{len(rows)} files uploaded, each downloaded back: SHA-256 identical"
    if not sys.stdout.isatty():
        from creatio_attach.output import print_table

        columns = ["file", "detected type", "object", "parent", "record Name", "record Id"]
        keys = ["file", "type", "object", "parent", "name", "record_id"]
        print_table(
            [*((c, "left") for c in columns), ("bytes", "right"), ("ms", "right")],
            [[str(r[k]) for k in [*keys, "bytes", "ms"]] for r in rows],
            title=title,
        )
        return
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("file", overflow="fold", ratio=3)
    table.add_column("detected type", overflow="fold", ratio=2)
    table.add_column("object / parent", no_wrap=True)
    table.add_column("record Id", no_wrap=True)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    for r in rows:
        cell = escape(r["file"])  # names are data, not rich markup
        if r["name"] != r["file"].rsplit("/", 1)[-1]:
            cell += f"\n[dim]as {escape(str(r['name']))}[/dim]"
        table.add_row(
            cell,
            escape(str(r["type"])),
            f"{escape(str(r['object']))}\n[dim]{escape(r['parent'])}[/dim]",
            str(r["record_id"]),
            str(r["bytes"]),
            str(r["ms"]),
        )
    Console(highlight=False).print(table)
