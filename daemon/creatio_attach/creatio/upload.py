"""Upload one local file as one attachment record: create, send the content, verify.

1. Create the record with our own ``Id``, ``Name``, the parent link, ``TypeId`` File,
   ``Size`` and ``TotalSize`` (read-back makes the create idempotent, ``records.py``).
2. Content: up to ``chunk_threshold`` one streamed ``PUT .../Data``
   (``application/octet-stream``, ``Content-Length``); larger files through
   FileApiService ``UploadFile`` in ``chunk_size`` pieces with the file's MIME type.
   A failed step is retried; a chunk refused after an interruption restarts at byte 0.
3. Verify: read the record back and compare ``Size``; ``verify = "download"`` also
   downloads the content and compares SHA-256.
Any failure after the create deletes the record: no half-made record is left behind.
The file is never read whole: every body (a ``PUT``, a FileApiService chunk) is streamed in
256 KiB blocks with a ``Content-Length`` (no chunked transfer encoding), hashing each block as
it goes, so the emulator or Creatio reads one block while the next is hashed. Must not import
``requests`` or ``urllib3`` (calls go through ``session.Connection``).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import structlog

from creatio_attach.config import CreatioSettings
from creatio_attach.errors import (
    CreatioAttachError,
    CreatioRejected,
    FileGone,
    FileUnreadable,
    VerificationFailed,
)

from .download import Downloads
from .http import creatio_message, json_body, where
from .literals import query_string
from .metadata import EntityInfo, Metadata
from .records import Records
from .retry import Retrier
from .session import Connection
from .transport import LocalReadError
from .types import FILE_TYPE_FILE, Target, UploadResult, normalise_guid

log = structlog.get_logger()

#: bytes read, hashed and sent per step of a body, whatever size the HTTP library asks for
#: (urllib3 asks for 16 KiB: a Python round per 16 KiB costs more CPU than hashing it)
BLOCK = 256 * 1024
DEFAULT_MIME = "application/octet-stream"
#: how often a chunked upload may start over at byte 0 after a refused chunk
MAX_RESTARTS = 2

Progress = Callable[[int], None]
#: opens the file to send (binary, readable); the default is ``Path.open("rb")``. The daemon
#: passes its own, which follows no symlink below an inbox (``confine``); what it raises
#: (a ``FileProblem``) passes through as it is.
Opener = Callable[[Path], BinaryIO]


class RangeReader:
    """A request body over ``[start, start + length)`` of an open file, read in blocks.

    ``len()`` gives the transport the ``Content-Length`` (never chunked transfer); every block
    (``BLOCK`` bytes, whatever ``read`` is asked for) updates ``hasher`` and calls
    ``progress``. A file that ends early or fails to read raises ``LocalReadError`` (not an
    OSError, which urllib3 would report as a network failure).
    """

    def __init__(
        self,
        fh: BinaryIO,
        start: int,
        length: int,
        hasher: Any,
        progress: Progress | None,
        path: Path,
    ) -> None:
        self._fh = fh
        self._left = length
        self._length = length
        self._hasher = hasher
        self._progress = progress
        self._path = path
        self._start = start
        self._positioned = False

    def __len__(self) -> int:
        return self._length

    def read(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            return b""
        # ``size`` is a hint: a larger block is fine for ``sendall`` and keeps memory flat
        want = min(BLOCK, self._left)
        try:
            if not self._positioned:
                self._fh.seek(self._start)
                self._positioned = True
            block = self._fh.read(want)
        except FileNotFoundError as exc:
            raise LocalReadError(FileGone(f"vanished while uploading: {exc.strerror}")) from exc
        except OSError as exc:
            raise LocalReadError(
                FileUnreadable(f"read failed while uploading: {exc.strerror}", path=str(self._path))
            ) from exc
        if not block:
            raise LocalReadError(
                FileUnreadable(
                    "the file got shorter while it was being uploaded",
                    path=str(self._path),
                    hint="write files elsewhere and move them in when complete",
                )
            )
        self._left -= len(block)
        self._hasher.update(block)
        if self._progress is not None:
            self._progress(len(block))
        return block


def content_disposition(name: str) -> str:
    """``attachment; filename=<name>`` unquoted (contract 4.1). A name that is not plain
    printable ASCII, or holds ``;`` ``"`` ``\\``, is percent-encoded (UTF-8): HTTP headers
    cannot carry it raw; the exact name also travels in the ``fileName`` query parameter."""
    plain = name.isascii() and name.isprintable() and not any(c in name for c in ';"\\%')
    return f"attachment; filename={name if plain else quote(name, safe=' ._-()[]+,~!$&=@')}"


class Uploader:
    def __init__(
        self,
        conn: Connection,
        retrier: Retrier,
        records: Records,
        downloads: Downloads,
        metadata: Callable[[], Metadata],
        settings: CreatioSettings,
    ) -> None:
        self.conn = conn
        self.retrier = retrier
        self.records = records
        self.downloads = downloads
        self.metadata = metadata
        self.settings = settings

    # ------------------------------------------------------------------------- entry
    def upload(
        self,
        path: Path,
        target: Target,
        *,
        name: str | None = None,
        mime: str | None = None,
        record_id: str | None = None,
        progress: Progress | None = None,
        opener: Opener | None = None,
        on_record: Callable[[str], None] | None = None,
        may_exist: bool = False,
    ) -> UploadResult:
        """``on_record(id)`` is called with the record's Id once it exists, before any
        content is sent (the Id Creatio gave, if it ignored ours; the daemon writes it down).
        ``may_exist``: ``record_id`` may already be taken by a record of an earlier attempt,
        which is then completed (read first, never created twice)."""
        name = name or path.name
        mime = mime or DEFAULT_MIME
        fo = self.metadata().require(target.file_object)
        values = self._create_values(fo, target, name)
        wanted_id = normalise_guid(record_id) if record_id else str(uuid.uuid4())
        try:
            fh = opener(path) if opener is not None else path.open("rb")
        except FileNotFoundError as exc:
            raise FileGone(f"vanished before upload: {exc.strerror}", path=str(path)) from exc
        except OSError as exc:
            raise FileUnreadable(f"cannot open: {exc.strerror}", path=str(path)) from exc
        with fh:
            try:
                size = _size_of(fh)
            except OSError as exc:
                raise FileUnreadable(f"cannot stat: {exc.strerror}", path=str(path)) from exc
            values.update({k: size for k in ("Size", "TotalSize") if k in fo.columns})
            created = self.records.create(
                target.file_object, values, wanted_id, check_first=may_exist
            )
            rid = str(created.get("Id") or wanted_id).lower()
            adopted = rid != wanted_id
            if adopted:
                log.warning(
                    "creatio.upload.adopted_server_id",
                    file_object=target.file_object,
                    sent_id=wanted_id,
                    server_id=rid,
                )
            if on_record is not None:
                try:
                    on_record(rid)
                except BaseException:
                    self.records.discard(target.file_object, rid, reason="not recorded")
                    raise
            chunked = size > self.settings.chunk_threshold
            try:
                if chunked:
                    digest = self._send_chunks(fh, path, size, target, rid, name, mime, progress)
                else:
                    digest = self._send_whole(fh, path, size, target.file_object, rid, progress)
                self._verify(target.file_object, rid, size, digest)
            except CreatioAttachError as exc:  # local read errors arrive translated (session.py)
                self.records.discard(target.file_object, rid, reason=exc.reason)
                raise
        # debug: the daemon logs ``file.uploaded`` with more, and the CLI prints its result
        log.debug(
            "creatio.upload.done",
            file_object=target.file_object,
            id=rid,
            bytes=size,
            chunked=chunked,
        )
        return UploadResult(
            record_id=rid,
            file_object=target.file_object,
            parent_schema=target.parent_schema,
            parent_id=target.parent_id,
            name=name,
            bytes=size,
            mime=mime,
            sha256=digest,
            chunked=chunked,
            adopted_server_id=adopted,
        )

    def _create_values(self, fo: EntityInfo, target: Target, name: str) -> dict[str, Any]:
        """Create body minus Id/Size; every column checked against ``$metadata`` first."""
        values: dict[str, Any] = {"Name": name}
        if target.is_sys_file:
            missing = [c for c in ("RecordSchemaName", "RecordId") if c not in fo.columns]
            if missing:
                raise CreatioRejected(f"{fo.name} has no column {missing[0]}")
        elif target.lookup_column not in fo.columns and target.lookup_name not in fo.lookups:
            raise CreatioRejected(
                f"{fo.name} has no parent column {target.lookup_column}",
                hint=f"lookups of {fo.name}: {', '.join(sorted(fo.lookups)) or 'none'}",
            )
        values.update(target.parent_values())
        if "TypeId" in fo.columns or "Type" in fo.lookups:
            values["TypeId"] = FILE_TYPE_FILE
        return values

    # ---------------------------------------------------------------------- content
    def _send_whole(
        self,
        fh: BinaryIO,
        path: Path,
        size: int,
        file_object: str,
        rid: str,
        progress: Progress | None,
    ) -> str:
        """One streamed ``PUT .../Data``; a retry or a re-login starts a fresh pass."""
        url = f"{self.records.url(file_object, rid)}/Data"
        passes: list[Any] = []

        def body() -> RangeReader:
            passes.append(hashlib.sha256())
            return RangeReader(fh, 0, size, passes[-1], progress, path)

        def step() -> None:
            self.conn.request(
                "PUT",
                url,
                headers={"Content-Type": "application/octet-stream"},
                body=body,
                ok=(200, 201, 204),
            ).close()

        self.retrier.call(step, what=f"PUT {file_object} content")
        return str(passes[-1].hexdigest())

    def _send_chunks(
        self,
        fh: BinaryIO,
        path: Path,
        size: int,
        target: Target,
        rid: str,
        name: str,
        mime: str,
        progress: Progress | None,
    ) -> str:
        """FileApiService ``UploadFile``, ``chunk_size`` bytes per request (contract 4.1)."""
        params: dict[str, str | int] = {
            "fileId": rid,
            "totalFileLength": size,
            "mimeType": mime,
            "fileName": name,
            "columnName": "Data",
            "entitySchemaName": target.file_object,
        }
        if target.is_sys_file:
            params.update(parentColumnName="RecordId", parentColumnValue=target.parent_id)
        else:
            params.update(parentColumnName=target.lookup_name, parentColumnValue=target.parent_id)
        url = f"{self.conn.ws}/rest/FileApiService/UploadFile?{query_string(params)}"
        chunk = max(1, self.settings.chunk_size)
        restarts = 0
        while True:
            hasher = hashlib.sha256()
            try:
                for start in range(0, size, chunk):
                    hasher = self._send_chunk(
                        fh,
                        path,
                        url,
                        start,
                        min(chunk, size - start),
                        size,
                        hasher,
                        name,
                        mime,
                        progress,
                    )
                return str(hasher.hexdigest())
            except _ChunkRefused as refused:
                restarts += 1
                if refused.start == 0 or restarts > MAX_RESTARTS:
                    raise refused.error from None
                log.warning(
                    "creatio.upload.restart",
                    id=rid,
                    at=refused.start,
                    error=refused.error.message,
                )

    def _send_chunk(
        self,
        fh: BinaryIO,
        path: Path,
        url: str,
        start: int,
        length: int,
        size: int,
        hasher: Any,
        name: str,
        mime: str,
        progress: Progress | None,
    ) -> Any:
        """Send one chunk (retried); returns the hash state after the bytes Creatio took."""
        before = hasher.copy()
        current: list[Any] = []
        headers = {
            "Content-Type": mime,
            "Content-Range": f"bytes {start}-{start + length - 1}/{size}",
            "Content-Disposition": content_disposition(name),
        }

        def body() -> RangeReader:
            current[:] = [before.copy()]
            return RangeReader(fh, start, length, current[0], progress, path)

        def step() -> None:
            with self.conn.request("POST", url, headers=headers, body=body) as response:
                reply = json_body(response, where("POST", url))
            if not isinstance(reply, dict) or reply.get("success") is False or reply.get("error"):
                said = creatio_message(reply) or "no reason given"
                raise CreatioRejected(
                    f"FileApiService refused bytes {start}-{start + length - 1}: {said}",
                    status=response.status_code,
                    creatio_message=said,
                )

        try:
            self.retrier.call(step, what=f"chunk at {start}")
        except CreatioRejected as exc:
            raise _ChunkRefused(start, exc) from None
        return current[0]  # the pass that Creatio accepted

    # ----------------------------------------------------------------------- verify
    def _verify(self, file_object: str, rid: str, size: int, digest: str) -> None:
        row = self.records.get(file_object, rid, select=("Id", "Size"))
        if row is None:
            raise VerificationFailed(f"{file_object} {rid} is gone right after its upload")
        stored = row.get("Size")
        if stored is not None and int(stored) != size:
            raise VerificationFailed(
                f"{file_object} {rid} holds {stored} bytes, the file has {size}",
            )
        if self.settings.verify == "download":
            got = self.downloads.sha256(file_object, rid)
            if got != digest:
                raise VerificationFailed(
                    f"the content of {file_object} {rid} differs from the file (SHA-256)",
                )


class _ChunkRefused(Exception):
    def __init__(self, start: int, error: CreatioRejected) -> None:
        super().__init__(error.message)
        self.start = start
        self.error = error


def _size_of(fh: BinaryIO) -> int:
    return os.fstat(fh.fileno()).st_size
