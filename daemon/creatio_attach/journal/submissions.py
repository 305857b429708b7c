"""The ``submit`` channel of call recordings, and a row's key=value metadata.

``creatio-attach submit`` inserts a submission from its own process; the daemon takes pending
ones and merges their metadata into the file's row. Imports sqlite3 (its errors are translated
here); from the project only ``errors``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from creatio_attach.errors import JournalError

from .codec import SUBMISSION_SELECT, decode_submission, encode_path, metadata_json
from .rows import FileRow, Submission
from .store import Store, translate_error


class Submissions(Store):
    """Submissions in, metadata merged into rows."""

    # -- the submit channel (call recordings) ----------------------------------------------

    def submit(
        self, *, path: str, inbox: str | None, metadata: Mapping[str, str], now: float
    ) -> int:
        """Record that ``path`` (absolute) is complete, with metadata; works while the daemon
        runs (it polls ``pending_submissions``) and while it is stopped (taken at start)."""
        text = metadata_json(metadata)
        with self._write() as conn:
            cursor = conn.execute(
                "INSERT INTO submissions (inbox, path, metadata, submitted_at) VALUES (?, ?, ?, ?)",
                (inbox, encode_path(path), text, now),
            )
            return int(cursor.lastrowid or 0)

    def pending_submissions(self, limit: int = 100) -> list[Submission]:
        """Submissions not taken yet, oldest first."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    SUBMISSION_SELECT + " WHERE taken_at IS NULL ORDER BY id LIMIT ?", (limit,)
                ).fetchall()
            except sqlite3.Error as exc:
                raise translate_error(exc, self.path) from exc
        return [decode_submission(r) for r in rows]

    def take_submission(self, submission_id: int, *, now: float, file_id: int | None) -> None:
        """Mark a submission handled; with ``file_id`` its metadata is merged into that row."""
        with self._write() as conn:
            found = conn.execute(SUBMISSION_SELECT + " WHERE id = ?", (submission_id,)).fetchone()
            if found is None:
                raise JournalError(f"no submission #{submission_id}", path=str(self.path))
            conn.execute(
                "UPDATE submissions SET taken_at = ?, file_id = ? WHERE id = ?",
                (now, file_id, submission_id),
            )
            if file_id is not None:
                self._merge_metadata(conn, file_id, decode_submission(found).metadata, now)

    def set_metadata(self, file_id: int, *, now: float, metadata: Mapping[str, str]) -> FileRow:
        """Merge key=value pairs into a row's metadata (later values win)."""
        with self._write() as conn:
            return self._merge_metadata(conn, file_id, metadata, now)

    def _merge_metadata(
        self, conn: sqlite3.Connection, file_id: int, metadata: Mapping[str, str], now: float
    ) -> FileRow:
        merged = {**self._get(conn, file_id).metadata, **metadata}
        found = self._update(conn, file_id, now, metadata=metadata_json(merged))
        assert found is not None  # read in this transaction
        return found
