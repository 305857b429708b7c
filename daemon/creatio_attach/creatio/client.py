"""``CreatioClient``: the facade the CLI and the daemon use; wires the parts together.

No network in ``__init__``; the first call logs in (and resolves ``runtime = auto``).
Thread-safe: one client serves every upload thread. Must not import ``urllib3`` (the
transport does), nor anything above the adapters (engine, service, cli).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from creatio_attach.config import CreatioSettings

from .download import Downloads
from .http import json_dumps
from .literals import check_columns
from .metadata import Metadata, parse_metadata
from .query import PAGE_SIZE, Queries
from .records import JSON_WRITE, Records, json_ready
from .retry import Retrier, RetryPolicy
from .session import Connection, Runtime
from .types import Attachment, Target, UploadResult, normalise_guid
from .upload import Uploader


class CreatioClient:
    """One Creatio site, one session, shared by all threads.

    ``retry`` bounds the retries inside one operation (tests pass a fast policy); after
    that ``CreatioUnavailable`` escapes and the caller retries later.
    """

    def __init__(self, settings: CreatioSettings, *, retry: RetryPolicy | None = None) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._retrier = Retrier(retry or RetryPolicy(), self._stop)
        self._conn = Connection(settings, self._retrier)
        self._metadata: Metadata | None = None
        self._metadata_lock = threading.Lock()
        self._records = Records(self._conn, self._retrier)
        self._downloads = Downloads(self._conn, self._retrier)
        self._queries = Queries(self._conn, self._retrier, self.metadata)
        self._uploader = Uploader(
            self._conn, self._retrier, self._records, self._downloads, self.metadata, settings
        )

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> CreatioClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CreatioClient(url={self.settings.url!r}, auth={self.settings.auth!r})"

    def login(self) -> None:
        """Log in (forms or OAuth 2.0) and resolve the runtime; a no-op when logged in."""
        self._conn.login()

    def close(self) -> None:
        """Stop retry waits, log out (best effort) and close the connection pool."""
        self._stop.set()
        self._conn.close()

    @property
    def runtime(self) -> Runtime:
        """``netframework`` or ``netcore`` (probed once when configured as ``auto``)."""
        return self._conn.runtime

    @property
    def logins(self) -> int:
        """How many logins this client made (the first one included)."""
        return self._conn.logins

    # ------------------------------------------------------------------- metadata
    def metadata(self) -> Metadata:
        """``$metadata``, parsed once and cached (the runtime probe's copy when it has one)."""
        if self._metadata is not None:
            return self._metadata
        with self._metadata_lock:
            if self._metadata is None:
                self._conn.login()
                raw = self._conn.probe_metadata
                if raw is None:
                    raw = self._retrier.call(self._fetch_metadata, what="read $metadata")
                self._metadata = parse_metadata(raw)
                self._conn.probe_metadata = None
            return self._metadata

    def _fetch_metadata(self) -> bytes:
        url = f"{self._conn.ws}/odata/$metadata"
        with self._conn.request("GET", url, headers={"Accept": "application/xml"}) as response:
            return response.content

    # ---------------------------------------------------------------------- queries
    def find_parent(self, schema: str, where: Mapping[str, str | int]) -> str:
        return self._queries.find_parent(schema, where)

    def find_records(
        self,
        schema: str,
        where: Mapping[str, Any],
        *,
        select: Sequence[str] = ("Id",),
        top: int = 100,
        order_by: Sequence[str] = (),
    ) -> list[dict[str, Any]]:
        return self._queries.find_records(schema, where, select=select, top=top, order_by=order_by)

    def list_attachments(
        self, schema: str, record_id: str, *, page_size: int = PAGE_SIZE
    ) -> list[Attachment]:
        """Files of one record from its file object and ``SysFile``, in pages of
        ``page_size`` rows (at most 20,000, Creatio's cap), ordered by CreatedOn, Id."""
        return self._queries.list_attachments(schema, record_id, page_size)

    def record_exists(self, file_object: str, record_id: str) -> dict[str, Any] | None:
        self.metadata().require(file_object)
        return self._records.get(file_object, record_id)

    # ---------------------------------------------------------------------- writes
    def create_record(
        self, schema: str, values: Mapping[str, Any], *, record_id: str | None = None
    ) -> dict[str, Any]:
        """Create one record (e.g. an Activity); lookups may be given as ``Contact`` or
        ``ContactId``. Idempotent for the same ``record_id``."""
        entity = self.metadata().require(schema)
        body: dict[str, Any] = {}
        for name, value in values.items():
            (column,) = check_columns(entity, [name])
            body[column] = value
        body.pop("Id", None)
        rid = normalise_guid(record_id) if record_id else str(uuid.uuid4())
        return self._records.create(schema, body, rid)

    def upload(
        self,
        path: Path,
        target: Target,
        *,
        name: str | None = None,
        mime: str | None = None,
        record_id: str | None = None,
        progress: Callable[[int], None] | None = None,
        opener: Callable[[Path], BinaryIO] | None = None,
        on_record: Callable[[str], None] | None = None,
        may_exist: bool = False,
    ) -> UploadResult:
        """One file as one attachment (``upload.Uploader.upload`` says what the keywords do)."""
        return self._uploader.upload(
            path,
            target,
            name=name,
            mime=mime,
            record_id=record_id,
            progress=progress,
            opener=opener,
            on_record=on_record,
            may_exist=may_exist,
        )

    def download(
        self,
        file_object: str,
        file_id: str,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        return self._downloads.to_file(file_object, file_id, dest, progress)

    def delete_record(self, file_object: str, record_id: str) -> None:
        self._records.delete(file_object, record_id)

    def patch_record(self, schema: str, record_id: str, values: Mapping[str, Any]) -> None:
        """PATCH some columns of one record (idempotent, retried)."""
        entity = self.metadata().require(schema)
        body = {check_columns(entity, [k])[0]: json_ready(v) for k, v in values.items()}
        url = self._records.url(schema, normalise_guid(record_id))
        data = json_dumps(body)

        def step() -> None:
            self._conn.request("PATCH", url, headers=JSON_WRITE, body=data, ok=(200, 204)).close()

        self._retrier.call(step, what=f"update {schema}")
