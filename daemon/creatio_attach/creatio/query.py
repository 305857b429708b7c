"""Typed OData queries: find a parent record, find records, list a record's attachments.

Filters are built from ``$metadata``-typed literals (``literals.py``); collections are read
in pages with ``$top``/``$skip`` and a stable ``$orderby`` (never more than 20,000 rows per
request: Creatio's ``MaxEntityRowCount``). Calls go through ``session.Connection``; must not
import ``urllib3`` or ``requests``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from creatio_attach.errors import CreatioRejected, ParentAmbiguous, ParentNotFound

from .http import json_body, where
from .literals import build_filter, check_columns, literal, query_string
from .metadata import Metadata
from .retry import Retrier
from .session import Connection
from .types import SYS_FILE, Attachment, normalise_guid

#: Creatio answers at most this many rows per request (MaxEntityRowCount default)
MAX_ROWS = 20_000
PAGE_SIZE = 1_000
#: how many candidates an ambiguous parent query reports
MAX_CANDIDATES = 20


class Queries:
    """Read-only queries over one connection."""

    def __init__(
        self, conn: Connection, retrier: Retrier, metadata: Callable[[], Metadata]
    ) -> None:
        self.conn = conn
        self.retrier = retrier
        self.metadata = metadata

    def _get_rows(self, entity: str, params: Mapping[str, str | int]) -> list[dict[str, Any]]:
        url = f"{self.conn.ws}/odata/{entity}?{query_string(params)}"

        def step() -> list[dict[str, Any]]:
            with self.conn.request("GET", url) as response:
                body = json_body(response, where("GET", url))
            rows = body.get("value") if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise CreatioRejected(f"Creatio answered a query on {entity} without rows")
            return rows

        return self.retrier.call(step, what=f"query {entity}")

    def pages(
        self,
        entity: str,
        filter_: str,
        select: Sequence[str],
        order_by: Sequence[str],
        page_size: int = PAGE_SIZE,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every matching row, ``page_size`` at a time (``$skip`` moves, order is stable)."""
        page_size = max(1, min(page_size, MAX_ROWS))
        skip = 0
        while limit is None or skip < limit:
            top = page_size if limit is None else min(page_size, limit - skip)
            params: dict[str, str | int] = {"$filter": filter_, "$select": ",".join(select)}
            if order_by:
                params["$orderby"] = ",".join(order_by)
            params["$top"] = top
            if skip:
                params["$skip"] = skip
            rows = self._get_rows(entity, params)
            yield from rows
            if len(rows) < top:
                return
            skip += len(rows)

    def find_records(
        self,
        schema: str,
        where_: Mapping[str, Any],
        *,
        select: Sequence[str] = ("Id",),
        top: int = 100,
        order_by: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        """Rows matching every condition; all names and literals checked before any request.
        ``order_by`` items are column names, optionally followed by `` desc``."""
        md = self.metadata()
        entity = md.require(schema)
        filter_ = build_filter(md, entity, where_)
        columns = check_columns(entity, list(select))
        if not order_by and "Id" in entity.columns:
            order_by = ("Id",)  # paging needs a stable order
        order = []
        for item in order_by:
            name, _, direction = item.strip().partition(" ")
            if direction not in ("", "asc", "desc"):
                raise CreatioRejected(f"order {item!r}: direction must be asc or desc")
            (column,) = check_columns(entity, [name])
            order.append(f"{column} {direction}" if direction else column)
        return list(self.pages(schema, filter_, columns, order, limit=max(0, top)))

    def find_parent(self, schema: str, where_: Mapping[str, str | int]) -> str:
        """The one record matching ``where_``; ParentNotFound or ParentAmbiguous otherwise."""
        rows = self.find_records(schema, where_, select=("Id",), top=MAX_CANDIDATES + 1)
        shown = ", ".join(f"{k}={v!r}" for k, v in where_.items())
        if not rows:
            raise ParentNotFound(
                f"no {schema} record with {shown}",
                hint="the record may not exist yet, or a value differs",
            )
        if len(rows) > 1:
            ids = [str(r.get("Id")) for r in rows[:MAX_CANDIDATES]]
            more = "+" if len(rows) > MAX_CANDIDATES else ""
            raise ParentAmbiguous(
                f"{len(ids)}{more} {schema} records match {shown}: {', '.join(ids)}",
                candidates=ids,
                hint="make the query match exactly one record",
            )
        return str(rows[0]["Id"])

    def list_attachments(
        self, schema: str, record_id: str, page_size: int = PAGE_SIZE
    ) -> list[Attachment]:
        """Files of one record: its file object (``<Schema>File``, if the site has it) by
        ``<Lookup>/Id eq <guid>``, then ``SysFile`` by ``RecordSchemaName`` + ``RecordId``."""
        record_id = normalise_guid(record_id, f"{schema} Id")
        md = self.metadata()
        md.require(schema)
        found: list[Attachment] = []
        file_object = f"{schema}File"
        fo = md.entity(file_object) if schema != SYS_FILE else None
        if fo is not None:
            nav = fo.lookup_to(schema)
            if nav is None:
                raise CreatioRejected(f"{file_object} has no lookup to {schema}")
            found += self._attachments(fo.name, f"{nav}/Id eq {record_id}", fo.columns, page_size)
        sys_file = md.entity(SYS_FILE)
        if sys_file is not None:
            filter_ = (
                f"RecordSchemaName eq {literal(schema, 'Edm.String')} and RecordId eq {record_id}"
            )
            found += self._attachments(SYS_FILE, filter_, sys_file.columns, page_size)
        return found

    def _attachments(
        self, entity: str, filter_: str, columns: Mapping[str, str], page_size: int
    ) -> list[Attachment]:
        select = [c for c in ("Id", "Name", "Size", "CreatedOn") if c in columns]
        order = [c for c in ("CreatedOn", "Id") if c in columns]
        out = []
        for row in self.pages(entity, filter_, select, order, page_size):
            size = row.get("Size")
            out.append(
                Attachment(
                    id=str(row.get("Id")),
                    object=entity,
                    name=str(row.get("Name") or ""),
                    size=int(size) if isinstance(size, int | float) else None,
                    created_on=str(row["CreatedOn"]) if row.get("CreatedOn") else None,
                )
            )
        return out
