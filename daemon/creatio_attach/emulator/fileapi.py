"""FileApiService (chunked upload) and FileService (download) of the emulator.

One job: ``POST {ws}/rest/FileApiService/UploadFile`` with contiguous ``Content-Range``
chunks appended to a partial blob on disk (contract sections 4.1, 8.6) and
``GET {ws}/rest/FileService/Download/{schema}/{id}`` / ``GetFile/{schemaUId}/{id}`` (4.2).
Must not import anything from the rest of ``creatio_attach`` (only this package).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import re
from typing import Any
from urllib.parse import quote

from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .bodies import aspnet_error
from .filter import normalise_guid
from .schemas import FILE_TYPE_FILE, Schema
from .store import EMPTY_GUID, BadValue, DuplicateId, Store, UnknownColumn

_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)


class UploadRejected(Exception):
    """One chunk refused; answered ``200 {"success": false, "errorInfo": ...}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def upload_failure(code: str, message: str) -> JSONResponse:
    """Decision: HTTP 200 with ``success: false`` (a client must read the body, section 4.1)."""
    body = {
        "success": False,
        "errorInfo": {"errorCode": code, "message": message, "stackTrace": None},
    }
    return JSONResponse(body, status_code=200)


class FileApi:
    """Handlers over one :class:`Store`; chunks of one file are handled one at a time."""

    def __init__(self, store: Store, max_file_bytes: int) -> None:
        self.store = store
        self.schemas = store.schemas
        self.max_file_bytes = max_file_bytes
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}  # lock, users

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/rest/FileApiService/UploadFile", self.upload, methods=["POST"]),
            Route(
                "/rest/FileService/Download/{schema}/{record_id}", self.download, methods=["GET"]
            ),
            Route("/rest/FileService/GetFile/{uid}/{record_id}", self.get_file, methods=["GET"]),
        ]

    # ------------------------------------------------------------------ upload

    async def upload(self, request: Request) -> Response:
        try:
            schema, record_id, total, start, end = self._validate(request)
            key = (schema.name, record_id)
            lock, users = self._locks.get(key, (asyncio.Lock(), 0))
            self._locks[key] = (lock, users + 1)
            try:
                async with lock:
                    await self._ensure_record(request, schema, record_id, total, start)
                    await self._write_chunk(request, schema, record_id, total, start, end)
            finally:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
        except UploadRejected as exc:
            await _drain(request)
            return upload_failure(exc.code, exc.message)
        return JSONResponse({"success": True})

    def _validate(self, request: Request) -> tuple[Schema, str, int, int, int]:
        q = request.query_params
        entity = q.get("entitySchemaName", "")
        schema = self.schemas.get(entity)
        if schema is None or not schema.is_file:
            raise UploadRejected(
                "EntitySchemaNotFound", f"Entity schema '{entity}' is not a file object."
            )
        column = q.get("columnName") or "Data"
        if column != "Data":
            raise UploadRejected(
                "ColumnNotFound", f"Column {column} not found in schema {schema.name}."
            )
        try:
            record_id = normalise_guid(q.get("fileId", ""))
        except ValueError:
            raise UploadRejected("InvalidFileId", "fileId must be a GUID.") from None
        total_text = q.get("totalFileLength", "")
        if not total_text.isdigit():
            raise UploadRejected("InvalidTotalFileLength", "totalFileLength must be a number.")
        total = int(total_text)
        if total > self.max_file_bytes:
            raise UploadRejected(
                "FileSizeLimitExceeded",
                f"The file size ({total} bytes) exceeds the maximum "
                f"of {self.max_file_bytes} bytes.",
            )
        header = request.headers.get("content-range")
        if total == 0 and (header is None or header.strip() in ("bytes */0", "bytes 0--1/0")):
            return schema, record_id, 0, 0, -1
        m = _RANGE.match(header or "")
        if m is None:
            raise UploadRejected(
                "InvalidContentRange",
                f"Content-Range must be 'bytes <first>-<last>/<total>', got {header!r}.",
            )
        start, end, range_total = (int(g) for g in m.groups())
        if range_total != total:
            raise UploadRejected(
                "TotalLengthMismatch",
                f"Content-Range total {range_total} differs from totalFileLength {total}.",
            )
        if end < start or end >= total:
            raise UploadRejected(
                "InvalidContentRange", f"Content-Range {header!r} is outside the file."
            )
        return schema, record_id, total, start, end

    async def _ensure_record(
        self, request: Request, schema: Schema, record_id: str, total: int, start: int
    ) -> None:
        if self.store.get(schema.name, record_id) is not None:
            return
        if start != 0:
            raise UploadRejected(
                "ChunkGap", f"Chunk starts at {start} but no bytes were received for this file."
            )
        q = request.query_params
        values: dict[str, Any] = {
            "Id": record_id,
            "Name": q.get("fileName") or _disposition_name(request) or "",
            "TypeId": FILE_TYPE_FILE,
            "Size": total,
            "TotalSize": total,
        }
        extra = _additional_params(q.get("AdditionalParams"))
        parent_name = q.get("parentColumnName") or ""
        parent_value = q.get("parentColumnValue") or ""
        if schema.name == "SysFile":
            record_schema = extra.pop("RecordSchemaName", None) or extra.pop(
                "recordSchemaName", None
            )
            record_ref = extra.pop("RecordId", None) or extra.pop("recordId", None)
            if parent_name == "RecordId" and parent_value:
                record_ref = parent_value
            elif parent_name:
                raise UploadRejected(
                    "ColumnNotFound", f"Column {parent_name} not found in schema SysFile."
                )
            if record_schema:
                values["RecordSchemaName"] = str(record_schema)
            if record_ref:
                values["RecordId"] = str(record_ref)
        elif parent_name:
            lookup = schema.lookup(parent_name)
            if lookup is None:
                raise UploadRejected(
                    "ColumnNotFound", f"Column {parent_name} not found in schema {schema.name}."
                )
            try:
                parent_id = normalise_guid(parent_value)
            except ValueError:
                raise UploadRejected(
                    "InvalidParentColumnValue", "parentColumnValue must be a GUID."
                ) from None
            if (
                parent_id != EMPTY_GUID
                and self.store.get(lookup.reference or "", parent_id) is None
            ):
                raise UploadRejected(
                    "ParentRecordNotFound",
                    f"Record {parent_id} of {lookup.reference} not found.",
                )
            values[lookup.flat_name] = parent_id
        for key, value in extra.items():
            if schema.by_flat(key) is not None and key not in values:
                values[key] = value
        try:
            self.store.insert(schema.name, values)
        except (UnknownColumn, BadValue) as exc:
            raise UploadRejected("InvalidParameter", str(exc)) from exc
        except DuplicateId:
            return

    async def _write_chunk(
        self, request: Request, schema: Schema, record_id: str, total: int, start: int, end: int
    ) -> None:
        state = self.store.upload_state(schema.name, record_id)
        if start == 0:
            # A chunk at 0 starts the content over (how a client recovers after a crash).
            path = self.store.start_upload(schema.name, record_id, total)
            received = 0
        else:
            if state is None:
                raise UploadRejected(
                    "ChunkGap", f"Chunk starts at {start} but no bytes were received yet."
                )
            received, state_total, complete = state
            if complete:
                raise UploadRejected(
                    "ChunkOverlap",
                    f"Chunk starts at {start} but the file is already complete ({received} bytes).",
                )
            if state_total != total:
                raise UploadRejected(
                    "TotalLengthMismatch",
                    f"totalFileLength {total} differs from {state_total} given for this upload.",
                )
            if start > received:
                raise UploadRejected(
                    "ChunkGap", f"Chunk starts at {start} but only {received} bytes were received."
                )
            if start < received:
                raise UploadRejected(
                    "ChunkOverlap", f"Chunk starts at {start} but {received} bytes were received."
                )
            path = self.store.partial_path(schema.name, record_id)
        expected = end - start + 1
        written = 0
        overflow = False
        try:
            with path.open("ab") as f:
                async for chunk in request.stream():
                    if written + len(chunk) > expected:
                        overflow = True
                        continue
                    f.write(chunk)
                    written += len(chunk)
        except ClientDisconnect:
            os.truncate(path, received)
            raise UploadRejected("ClientDisconnected", "The request body ended early.") from None
        if overflow or written != expected:
            os.truncate(path, received)
            raise UploadRejected(
                "ChunkLengthMismatch",
                f"Content-Range announces {expected} bytes but the body "
                f"{'is longer' if overflow else f'has {written}'}.",
            )
        self.store.record_progress(schema.name, record_id, received + written)

    # ------------------------------------------------------------------ download

    async def download(self, request: Request) -> Response:
        schema = self.schemas.get(request.path_params["schema"])
        return self._send(schema, request.path_params["record_id"])

    async def get_file(self, request: Request) -> Response:
        schema = self.schemas.by_uid(request.path_params["uid"])
        return self._send(schema, request.path_params["record_id"])

    def _send(self, schema: Schema | None, record_id: str) -> Response:
        if schema is None or not schema.is_file:
            return aspnet_error(404, "Entity schema not found.", "System.ArgumentException")
        row = self.store.get(schema.name, record_id)
        if row is None:
            return aspnet_error(
                404,
                f"File with Id {record_id} not found in {schema.name}.",
                "Terrasoft.Common.ItemNotFoundException",
            )
        name = str(row.get("Name") or "file")
        media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = {"Content-Disposition": f"attachment; filename={quote(name)}"}
        path = self.store.content_path(schema.name, row["Id"])
        if path is None:
            return Response(b"", media_type=media_type, headers=headers)
        return FileResponse(path, media_type=media_type, headers=headers)


def _additional_params(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise UploadRejected("InvalidAdditionalParams", "AdditionalParams is not JSON.") from None
    if not isinstance(value, dict):
        raise UploadRejected("InvalidAdditionalParams", "AdditionalParams must be an object.")
    return value


def _disposition_name(request: Request) -> str | None:
    header = request.headers.get("content-disposition", "")
    m = re.search(r'filename="?([^";]+)"?', header)
    return m.group(1) if m else None


async def _drain(request: Request) -> None:
    try:
        async for _ in request.stream():
            pass
    except (ClientDisconnect, RuntimeError):
        return
