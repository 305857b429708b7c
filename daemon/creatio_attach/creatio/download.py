"""Download one file's content: streamed to a temporary file beside the target, then renamed.

``GET {ws}/odata/{FileObject}({id})/Data``, read in blocks; never the whole file in memory.
A failed download is retried from the start and never leaves a partial file under the
final name; a connection that breaks mid-body arrives as ``CreatioUnavailable`` (``Reply``
translates it), a body shorter than its ``Content-Length`` is one too. Calls go through
``session.Connection``; must not import ``requests`` or ``urllib3``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from creatio_attach.errors import CreatioUnavailable, FileUnreadable

from .http import where
from .retry import Retrier
from .session import Connection
from .types import normalise_guid

BLOCK = 256 * 1024


class Downloads:
    def __init__(self, conn: Connection, retrier: Retrier) -> None:
        self.conn = conn
        self.retrier = retrier

    def url(self, file_object: str, file_id: str) -> str:
        return f"{self.conn.ws}/odata/{file_object}({normalise_guid(file_id)})/Data"

    def _stream(self, url: str, sink: Callable[[bytes], None]) -> int:
        """One pass: every block of the body goes to ``sink``; returns the byte count."""
        total = 0
        with self.conn.request(
            "GET", url, headers={"Accept": "application/octet-stream"}, stream=True
        ) as response:
            expected = response.headers.get("Content-Length")
            for block in response.iter_content(BLOCK):  # a broken body: CreatioUnavailable
                sink(block)
                total += len(block)
            if expected is not None and expected.isdigit() and int(expected) != total:
                raise CreatioUnavailable(
                    f"the download of {where('GET', url)} ended after {total} of {expected} bytes"
                )
        return total

    def to_file(
        self,
        file_object: str,
        file_id: str,
        dest: Path,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write the content to ``dest``; returns the number of bytes written."""
        url = self.url(file_object, file_id)
        directory = dest.parent if str(dest.parent) else Path()

        def step() -> int:
            try:
                fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name[:50]}.", dir=directory)
            except OSError as exc:
                raise FileUnreadable(
                    f"cannot write into {directory}: {exc.strerror}", path=str(dest)
                ) from exc
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:

                    def sink(block: bytes) -> None:
                        out.write(block)
                        if progress is not None:
                            progress(len(block))

                    total = self._stream(url, sink)
                    out.flush()
                    os.fsync(out.fileno())
                tmp.replace(dest)
                return total
            except OSError as exc:
                raise FileUnreadable(f"cannot write: {exc.strerror}", path=str(dest)) from exc
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

        return self.retrier.call(step, what=f"download {file_object}")

    def sha256(self, file_object: str, file_id: str) -> str:
        """SHA-256 of the stored content, streamed (used by ``verify = "download"``)."""
        url = self.url(file_object, file_id)

        def step() -> str:
            hasher: Any = hashlib.sha256()
            self._stream(url, hasher.update)
            return str(hasher.hexdigest())

        return self.retrier.call(step, what=f"download {file_object}")
