"""OData 4 routes of the emulator: collections, single records and the ``/Data`` stream.

One job: answer ``{ws}/odata/...`` the way Creatio does (contract sections 0 E-H, 2, 5),
with content streamed to disk. ``data_routes`` also gathers the ``$batch`` and FileApiService
routes for the server side to mount. No authentication here (the server's middlewares do it).
Must not import anything from the rest of ``creatio_attach`` (only this package).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, Router

from .bodies import aspnet_error, odata_error, routing_miss
from .filter import (
    Expand,
    QueryError,
    SqlQuery,
    normalise_guid,
    parse_expand,
    parse_select,
)
from .metadata import build_metadata
from .schemas import Column, ColumnType, Schema
from .store import EMPTY_GUID, BadValue, DuplicateId, Store, UnknownColumn

MAX_ROWS = 20_000  # MaxEntityRowCount default (contract section 5.2)
OOXML_SUFFIXES = (".docx", ".xlsx", ".pptx")
_PATH = re.compile(
    r"^(?P<set>[A-Za-z_][A-Za-z0-9_]*)(?:\((?P<key>[^)]*)\))?(?:/(?P<prop>[$A-Za-z_][A-Za-z0-9_]*))?/?$"
)


def query_error_response(exc: QueryError) -> Response:
    if exc.shape == "aspnet":
        return aspnet_error(exc.status, exc.message)
    return odata_error(exc.status, exc.message)


def odata_root(request: Request) -> str:
    """``http://host/0/odata`` for this request (used in ``@odata.context``)."""
    url = str(request.url.replace(query=""))
    idx = url.find("/odata")
    return url[: idx + len("/odata")] if idx >= 0 else url


def not_found(schema: Schema, record_id: str) -> Response:
    return odata_error(404, f"The {schema.name} entity with Id '{record_id}' was not found.")


def duplicate_response(schema: Schema, record_id: str) -> Response:
    """A second insert with the same Id: SQL Server's primary-key violation as a 500 envelope."""
    return odata_error(
        500,
        f"Violation of PRIMARY KEY constraint 'PK{schema.name}Id'. Cannot insert duplicate key in "
        f"object 'dbo.{schema.name}'. The duplicate key value is ({record_id}).",
    )


class ODataApi:
    """Handlers over one :class:`Store`."""

    def __init__(
        self, store: Store, max_file_bytes: int, *, ignore_client_ids: bool = False
    ) -> None:
        self.store = store
        self.schemas = store.schemas
        self.max_file_bytes = max_file_bytes
        self.ignore_client_ids = ignore_client_ids

    # ------------------------------------------------------------------ entry points

    async def metadata(self, request: Request) -> Response:
        return Response(build_metadata(self.schemas), media_type="application/xml")

    async def service_document(self, request: Request) -> Response:
        root = odata_root(request)
        sets = [{"name": n, "kind": "EntitySet", "url": n} for n in self.schemas]
        return JSONResponse({"@odata.context": f"{root}/$metadata", "value": sets})

    async def dispatch(self, request: Request) -> Response:
        path = request.path_params["path"]
        m = _PATH.match(path)
        name = (m.group("set") if m else path.split("/")[0].split("(")[0]) or "odata"
        if m is None or name not in self.schemas:
            return routing_miss(str(request.url), name)
        schema = self.schemas[name]
        key, prop = m.group("key"), m.group("prop")
        method = request.method
        try:
            if key is None:
                if prop == "$count" and method == "GET":
                    return await self.count(request, schema)
                if prop is not None:
                    return routing_miss(str(request.url), name)
                if method == "GET":
                    return await self.collection(request, schema)
                if method == "POST":
                    return await self.create(request, schema)
                return _not_allowed(method)
            record_id = _parse_key(key)
            if prop is None:
                if method == "GET":
                    return await self.read(request, schema, record_id)
                if method in ("PATCH", "MERGE"):
                    return await self.patch(request, schema, record_id)
                if method == "DELETE":
                    return self.delete(schema, record_id)
                return _not_allowed(method)
            if prop == "Data" and schema.by_flat("Data") is not None:
                if method == "PUT":
                    return await self.put_data(request, schema, record_id)
                if method == "GET":
                    return self.get_data(schema, record_id)
                if method == "DELETE":
                    if not self.store.clear_content(schema.name, record_id):
                        return not_found(schema, record_id)
                    return Response(status_code=204)
                return _not_allowed(method)
            column = schema.by_flat(prop)
            if column is None:
                return odata_error(
                    400,
                    f"Could not find a property named '{prop}' on type "
                    f"'Terrasoft.Configuration.OData.{schema.name}'.",
                )
            return await self.read_property(request, schema, record_id, column)
        except QueryError as exc:
            return query_error_response(exc)

    # ------------------------------------------------------------------ reads

    def _query_options(
        self, request: Request, schema: Schema
    ) -> tuple[SqlQuery, str | None, str | None, list[Column], list[Expand]]:
        params = request.query_params
        query = SqlQuery(self.schemas, schema)
        where = query.where(params["$filter"]) if "$filter" in params else None
        order = query.order_by(params["$orderby"]) if params.get("$orderby") else None
        columns = (
            parse_select(params["$select"], schema)
            if params.get("$select")
            else schema.stored_columns()
        )
        expands = (
            parse_expand(params["$expand"], schema, self.schemas) if params.get("$expand") else []
        )
        return query, where, order, columns, expands

    async def collection(self, request: Request, schema: Schema) -> Response:
        params = request.query_params
        query, where, order, columns, expands = self._query_options(request, schema)
        top = _non_negative(params.get("$top"), "$top")
        skip = _non_negative(params.get("$skip"), "$skip") or 0
        want_count = _boolean(params.get("$count"), "$count")
        total: int | None = None
        if top is None or want_count:
            total = self.store.count(query, where=where)
        if top is None and total is not None and total > MAX_ROWS:
            return odata_error(
                500,
                f"The number of rows to select exceeds the MaxEntityRowCount limit ({MAX_ROWS}). "
                "Use $top and $skip to page through the results.",
            )
        fetch = _with_lookups(columns, expands)
        rows = self.store.select(
            query, where=where, order=order, columns=fetch, limit=top, offset=skip
        )
        self._expand(rows, expands)
        rows = [_project(r, columns, expands) for r in rows]
        context = f"{odata_root(request)}/$metadata#{schema.name}"
        if params.get("$select"):
            context += f"({','.join(c.flat_name for c in columns)})"
        body: dict[str, Any] = {"@odata.context": context}
        if want_count:
            body["@odata.count"] = total
        body["value"] = rows
        return JSONResponse(body)

    async def count(self, request: Request, schema: Schema) -> Response:
        query = SqlQuery(self.schemas, schema)
        filter_text = request.query_params.get("$filter")
        where = query.where(filter_text) if filter_text else None
        return PlainTextResponse(str(self.store.count(query, where=where)))

    async def read(self, request: Request, schema: Schema, record_id: str) -> Response:
        _, _, _, columns, expands = self._query_options(request, schema)
        row = self.store.get(schema.name, record_id)
        if row is None:
            return not_found(schema, record_id)
        self._expand([row], expands)
        body = {
            "@odata.context": f"{odata_root(request)}/$metadata#{schema.name}/$entity",
            **_project(row, columns, expands),
        }
        return JSONResponse(body)

    async def read_property(
        self, request: Request, schema: Schema, record_id: str, column: Column
    ) -> Response:
        row = self.store.get(schema.name, record_id)
        if row is None:
            return not_found(schema, record_id)
        context = f"{odata_root(request)}/$metadata#{schema.name}({record_id})/{column.flat_name}"
        return JSONResponse({"@odata.context": context, "value": row[column.flat_name]})

    def _expand(self, rows: list[dict[str, Any]], expands: list[Expand]) -> None:
        for item in expands:
            columns = item.select or item.target.stored_columns()
            fetch = _with_lookups(columns, item.expand)
            flat = item.lookup.flat_name
            found = self.store.get_many(item.target.name, (r[flat] for r in rows), fetch)
            children = list(found.values())
            self._expand(children, item.expand)
            for row in rows:
                child = found.get(row[flat])
                row[item.lookup.name] = (
                    None if child is None else _project(child, columns, item.expand)
                )

    # ------------------------------------------------------------------ writes

    async def _json_body(self, request: Request) -> dict[str, Any] | Response:
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError):
            return odata_error(400, "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return odata_error(400, "The request body must be a JSON object.")
        return body

    def _columns_from_body(self, schema: Schema, body: dict[str, Any]) -> dict[str, Any]:
        """Drop annotations and navigation-style keys (Creatio ignores them, section 2.2)."""
        out: dict[str, Any] = {}
        for key, value in body.items():
            if "@odata." in key or key.startswith("@"):
                continue
            if schema.lookup(key) is not None:
                continue
            out[key] = value
        return out

    def _missing_reference(self, schema: Schema, values: dict[str, Any]) -> Response | None:
        """Lookups are foreign keys in Creatio's database: a dangling reference fails."""
        for key, value in values.items():
            column = schema.by_flat(key)
            if column is None or column.type is not ColumnType.LOOKUP or not value:
                continue
            if column.name == "SysFileStorage" or column.reference not in self.schemas:
                continue
            try:
                ref = normalise_guid(value) if isinstance(value, str) else None
            except ValueError:
                continue
            if ref is None or ref == EMPTY_GUID:
                continue
            if self.store.get(column.reference or "", ref) is None:
                return odata_error(
                    500,
                    f"The INSERT statement conflicted with the FOREIGN KEY constraint "
                    f'"FK{schema.name}{column.reference}{column.flat_name}". The conflict occurred '
                    f"in table \"dbo.{column.reference}\", column 'Id'.",
                )
        return None

    async def create(self, request: Request, schema: Schema) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        values = self._columns_from_body(schema, body)
        if self.ignore_client_ids:
            values.pop("Id", None)  # the server picks the Id (``ignore_client_ids``)
        problem = self._missing_reference(schema, values)
        if problem is not None:
            return problem
        try:
            row = self.store.insert(schema.name, values)
        except DuplicateId as exc:
            return duplicate_response(schema, str(exc))
        except (UnknownColumn, BadValue) as exc:
            return odata_error(400, str(exc))
        root = odata_root(request)
        payload = {"@odata.context": f"{root}/$metadata#{schema.name}/$entity", **row}
        return JSONResponse(
            payload, status_code=201, headers={"Location": f"{root}/{schema.name}({row['Id']})"}
        )

    async def patch(self, request: Request, schema: Schema, record_id: str) -> Response:
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        values = self._columns_from_body(schema, body)
        values.pop("Id", None)
        problem = self._missing_reference(schema, values)
        if problem is not None:
            return problem
        try:
            found = self.store.update(schema.name, record_id, values)
        except (UnknownColumn, BadValue) as exc:
            return odata_error(400, str(exc))
        return Response(status_code=204) if found else not_found(schema, record_id)

    def delete(self, schema: Schema, record_id: str) -> Response:
        if not self.store.delete(schema.name, record_id):
            return not_found(schema, record_id)
        return Response(status_code=204)

    # ------------------------------------------------------------------ /Data

    async def put_data(self, request: Request, schema: Schema, record_id: str) -> Response:
        record = self.store.get(schema.name, record_id)
        if record is None:
            await _drain(request)
            return not_found(schema, record_id)
        content_type = request.headers.get("content-type", "").lower()
        name = str(record.get("Name") or "").lower()
        if content_type.startswith("multipart/form-data") and name.endswith(OOXML_SUFFIXES):
            # Decision (contract 2.5): Creatio's multipart path rejects Office files.
            await _drain(request)
            return odata_error(400, "Incorrect Request")
        temp = self.store.new_temp_path()
        digest = hashlib.sha256()
        size = 0
        too_big = False
        try:
            with temp.open("wb") as f:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > self.max_file_bytes:
                        too_big = True
                        continue
                    f.write(chunk)
                    digest.update(chunk)
        except ClientDisconnect:
            temp.unlink(missing_ok=True)
            return Response(status_code=400)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if too_big:
            temp.unlink(missing_ok=True)
            return odata_error(
                413, f"The file is larger than the allowed maximum of {self.max_file_bytes} bytes."
            )
        if not self.store.commit_content(schema.name, record_id, temp, size, digest.hexdigest()):
            return not_found(schema, record_id)
        return Response(status_code=200)

    def get_data(self, schema: Schema, record_id: str) -> Response:
        if self.store.get(schema.name, record_id) is None:
            return not_found(schema, record_id)
        path = self.store.content_path(schema.name, record_id)
        if path is None:
            return Response(b"", media_type="application/octet-stream")
        return FileResponse(path, media_type="application/octet-stream")


async def _drain(request: Request) -> None:
    """Read and discard a body we reject, so the client sees our answer, not a reset."""
    try:
        async for _ in request.stream():
            pass
    except ClientDisconnect:
        return


def _not_allowed(method: str) -> Response:
    return JSONResponse(
        {"Message": f"The requested resource does not support http method '{method}'."},
        status_code=405,
    )


def _parse_key(key: str) -> str:
    text = key.strip()
    if text.startswith("Id="):
        text = text[3:].strip()
    try:
        return normalise_guid(text)
    except ValueError:
        raise QueryError(
            400, f"The key value '{key}' is not a valid Edm.Guid (GUIDs are written bare)."
        ) from None


def _non_negative(value: str | None, option: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise QueryError(400, f"Invalid value '{value}' for {option} query option found.")
    return int(value)


def _boolean(value: str | None, option: str) -> bool:
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise QueryError(400, f"Invalid value '{value}' for {option} query option found.")


def _with_lookups(columns: list[Column], expands: list[Expand]) -> list[Column]:
    fetch = list(columns)
    for item in expands:
        if item.lookup not in fetch:
            fetch.append(item.lookup)
    return fetch


def _project(row: dict[str, Any], columns: list[Column], expands: list[Expand]) -> dict[str, Any]:
    out = {c.flat_name: row[c.flat_name] for c in columns}
    for item in expands:
        out[item.lookup.name] = row.get(item.lookup.name)
    return out


Endpoint = Callable[[Request], Awaitable[Response]]


def data_routes(
    store: Store, *, max_file_bytes: int, ignore_client_ids: bool = False
) -> list[BaseRoute]:
    """All data routes, relative to the workspace base (``/odata/...``, ``/rest/...``)."""
    from .batch import BatchApi
    from .fileapi import FileApi

    api = ODataApi(store, max_file_bytes, ignore_client_ids=ignore_client_ids)
    methods = ["GET", "POST", "PATCH", "MERGE", "PUT", "DELETE"]
    odata: list[BaseRoute] = [
        Route("/odata/$metadata", api.metadata, methods=["GET"]),
        Route("/odata", api.service_document, methods=["GET"]),
        Route("/odata/", api.service_document, methods=["GET"]),
        Route("/odata/{path:path}", api.dispatch, methods=methods),
    ]
    batch = BatchApi(Router(routes=odata))
    files = FileApi(store, max_file_bytes)
    return [
        Route("/odata/$batch", batch.handle, methods=["POST"]),
        *odata,
        *files.routes(),
    ]


__all__ = ["MAX_ROWS", "ODataApi", "data_routes", "odata_root", "query_error_response"]
