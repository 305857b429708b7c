"""The read-only web page at `/`: entities with record counts, latest records, their attachments.

So that a person can look at what arrived. Download links go through the admin route
`/__emulator__/download/{Entity}/{Id}` (no login needed). Everything shown is HTML-escaped.
Not part of Creatio.

Must not import anything from the rest of `creatio_attach`.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Route

from creatio_attach.emulator.filter import SqlQuery

if TYPE_CHECKING:
    from creatio_attach.emulator.store import Store

LATEST_RECORDS = 20
LATEST_FILES = 200
LABEL_COLUMNS = ("Number", "Name", "Subject", "Title", "Caption", "IntegrationId", "CallerId")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
code { font-size: 90%; }
.muted { color: #777; }
"""


def download_url(entity: str, record_id: str) -> str:
    return f"/__emulator__/download/{quote(entity, safe='')}/{quote(record_id, safe='')}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _label(row: dict[str, Any]) -> str:
    for column in LABEL_COLUMNS:
        value = row.get(column)
        if value:
            return str(value)
    return ""


def _file_link(f: dict[str, Any]) -> str:
    name = escape(str(f.get("name") or f["id"]))
    if f.get("sha256") is None:
        return f'{name} <span class="muted">(no content)</span>'
    href = escape(download_url(f["entity"], f["id"]))
    return (
        f'<a href="{href}">{name}</a> <span class="muted">{escape(_size(int(f["size"])))}, '
        f"sha256 {escape(str(f['sha256'])[:12])}…</span>"
    )


def render_page(store: Store, runtime: str) -> str:
    """The whole page; reads the store (call it from a worker thread)."""
    schemas = store.schemas
    counts = {name: store.count(SqlQuery(schemas, schemas[name]), where=None) for name in schemas}
    files = store.files_summary()
    by_parent: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for f in files:
        if f.get("parent_schema") and f.get("parent_id"):
            by_parent[(str(f["parent_schema"]), str(f["parent_id"]))].append(f)
    parents = sorted({s.parent_column for s in schemas.file_objects() if s.parent_column})

    out = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<title>Creatio emulator</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Creatio emulator</h1>",
        f"<p>Runtime <code>{escape(runtime)}</code>. Read-only view of the stored records; "
        "not part of Creatio. Admin API under <code>/__emulator__/</code>.</p>",
        "<h2>Entities</h2><table><tr><th>Entity</th><th>Records</th><th>Kind</th></tr>",
    ]
    for name, schema in schemas.items():
        kind = "file object" if schema.is_file else ""
        out.append(
            f"<tr><td>{escape(name)}</td><td>{counts[name]}</td><td>{escape(kind)}</td></tr>"
        )
    out.append("</table>")

    for parent in parents:
        if parent not in schemas or not counts.get(parent):
            continue
        out.append(f"<h2>Latest {escape(parent)} records</h2>")
        out.append("<table><tr><th>Id</th><th>Label</th><th>Created</th><th>Attachments</th></tr>")
        for row in store.list_rows(parent, limit=LATEST_RECORDS):
            attached = by_parent.get((parent, str(row["Id"])), [])
            links = "<br>".join(_file_link(f) for f in attached) or '<span class="muted">-</span>'
            out.append(
                f"<tr><td><code>{escape(str(row['Id']))}</code></td>"
                f"<td>{escape(_label(row))}</td><td>{escape(str(row.get('CreatedOn') or ''))}</td>"
                f"<td>{links}</td></tr>"
            )
        out.append("</table>")

    out.append(f"<h2>Latest files ({len(files)} stored)</h2>")
    out.append(
        "<table><tr><th>File</th><th>Object</th><th>Parent</th><th>Created</th>"
        "<th>SHA-256</th></tr>"
    )
    latest = sorted(files, key=lambda f: str(f.get("created_on") or ""), reverse=True)
    for f in latest[:LATEST_FILES]:
        parent = (
            f"{escape(str(f['parent_schema']))} <code>{escape(str(f['parent_id']))}</code>"
            if f.get("parent_id")
            else '<span class="muted">-</span>'
        )
        out.append(
            f"<tr><td>{_file_link(f)}</td><td>{escape(str(f['entity']))}</td><td>{parent}</td>"
            f"<td>{escape(str(f.get('created_on') or ''))}</td>"
            f"<td><code>{escape(str(f.get('sha256') or ''))}</code></td></tr>"
        )
    out.append("</table></body></html>")
    return "\n".join(out)


def web_routes(store: Store, runtime: str) -> list[BaseRoute]:
    def page(request: Request) -> HTMLResponse:  # sync: starlette runs it in a worker thread
        return HTMLResponse(render_page(store, runtime))

    return [Route("/", page, methods=["GET"])]
