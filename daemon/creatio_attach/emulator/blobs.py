"""Content on disk for the emulator's file records: temp files, committed blobs, partial uploads.

One job: the files under ``data_dir/blobs`` and their bookkeeping rows in the ``_blob`` table
(bytes received, declared total, complete, SHA-256). Content is never held in memory: callers
stream bodies into files handed out here, and the store commits them. The records themselves
(and the ``Size`` on them) are ``store.py``'s, which shares its connection and lock with this.
Must not import anything from the rest of ``creatio_attach`` nor starlette.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import threading
import uuid
from pathlib import Path

from .values import normalise_guid


class Blobs:
    """Blob files and the ``_blob`` table; the caller's re-entrant lock guards both."""

    def __init__(self, blob_dir: Path, conn: sqlite3.Connection, lock: threading.RLock) -> None:
        self.blob_dir = blob_dir
        self.tmp_dir = blob_dir / ".tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # bodies cut off by a crash
            leftover.unlink(missing_ok=True)
        self._conn = conn
        self._lock = lock

    def create_table(self) -> None:
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS _blob (entity TEXT NOT NULL, id TEXT NOT NULL, "
            "received INTEGER NOT NULL, total INTEGER NOT NULL, complete INTEGER NOT NULL, "
            "sha256 TEXT, PRIMARY KEY (entity, id))"
        )

    # ------------------------------------------------------------------ paths

    def final_path(self, entity: str, rid: str) -> Path:
        return self.blob_dir / entity / rid

    def partial_path(self, entity: str, record_id: str) -> Path:
        """Where a chunked upload (FileApiService) accumulates bytes."""
        path = self.blob_dir / entity / f"{normalise_guid(record_id)}.part"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def new_temp_path(self) -> Path:
        """A fresh file name for streaming a body into (renamed on commit)."""
        return self.tmp_dir / uuid.uuid4().hex

    def content_path(self, entity: str, record_id: str) -> Path | None:
        """The complete content's file, or None (no content, or an upload still in progress)."""
        try:
            rid = normalise_guid(record_id)
        except ValueError:
            return None
        with self._lock:
            found = self._conn.execute(
                "SELECT complete FROM _blob WHERE entity = ? AND id = ?", (entity, rid)
            ).fetchone()
        path = self.final_path(entity, rid)
        return path if found is not None and found[0] and path.exists() else None

    # ------------------------------------------------------------------ whole bodies

    def install(self, entity: str, rid: str, temp: Path, size: int, sha256: str | None) -> None:
        """Make ``temp`` the complete content of ``entity``/``rid`` (replacing any before)."""
        with self._lock:
            final = self.final_path(entity, rid)
            final.parent.mkdir(parents=True, exist_ok=True)
            self.drop(entity, rid)
            temp.replace(final)
            self._conn.execute(
                "INSERT OR REPLACE INTO _blob (entity, id, received, total, complete, sha256) "
                "VALUES (?, ?, ?, ?, 1, ?)",
                (entity, rid, size, size, sha256),
            )

    def drop(self, entity: str, rid: str) -> None:
        """Forget the content, complete or partial (the caller holds the lock)."""
        self._conn.execute("DELETE FROM _blob WHERE entity = ? AND id = ?", (entity, rid))
        self.final_path(entity, rid).unlink(missing_ok=True)
        (self.blob_dir / entity / f"{rid}.part").unlink(missing_ok=True)

    def drop_all(self) -> None:
        """Every blob row and file goes (the temp directory stays)."""
        with self._lock:
            self._conn.execute("DELETE FROM _blob")
            for child in self.blob_dir.iterdir():
                if child != self.tmp_dir:
                    shutil.rmtree(child, ignore_errors=True)

    # ------------------------------------------------------------------ chunked uploads

    def upload_state(self, entity: str, record_id: str) -> tuple[int, int, bool] | None:
        """(bytes received, declared total, complete) of the record's content, or None."""
        rid = normalise_guid(record_id)
        with self._lock:
            found = self._conn.execute(
                "SELECT received, total, complete FROM _blob WHERE entity = ? AND id = ?",
                (entity, rid),
            ).fetchone()
        return None if found is None else (int(found[0]), int(found[1]), bool(found[2]))

    def start_upload(self, entity: str, record_id: str, total: int) -> Path:
        """Forget any content (complete or partial) and start a chunked upload from byte 0."""
        rid = normalise_guid(record_id)
        with self._lock:
            self.drop(entity, rid)
            self._conn.execute(
                "INSERT INTO _blob (entity, id, received, total, complete, sha256) "
                "VALUES (?, ?, 0, ?, 0, NULL)",
                (entity, rid, total),
            )
            path = self.partial_path(entity, rid)
            path.write_bytes(b"")
        return path

    def record_progress(self, entity: str, rid: str, received: int) -> tuple[bool, int] | None:
        """Note bytes received; when all arrived, the partial file becomes the content.

        Returns (complete, declared total), or None when no upload was started.
        """
        with self._lock:
            state = self.upload_state(entity, rid)
            if state is None:
                return None
            _, total, _ = state
            complete = received == total
            if complete:
                self.partial_path(entity, rid).replace(self.final_path(entity, rid))
            self._conn.execute(
                "UPDATE _blob SET received = ?, complete = ? WHERE entity = ? AND id = ?",
                (received, 1 if complete else 0, entity, rid),
            )
        return complete, total

    # ------------------------------------------------------------------ checksums

    def sha256(self, entity: str, rid: str) -> str | None:
        """The complete content's SHA-256 (computed once from the file when not yet known)."""
        path = self.content_path(entity, rid)
        if path is None:
            return None
        with self._lock:
            found = self._conn.execute(
                "SELECT sha256 FROM _blob WHERE entity = ? AND id = ?", (entity, rid)
            ).fetchone()
        if found is not None and found[0]:
            return str(found[0])
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        value = digest.hexdigest()
        with self._lock:
            self._conn.execute(
                "UPDATE _blob SET sha256 = ? WHERE entity = ? AND id = ? AND complete = 1",
                (value, entity, rid),
            )
        return value
