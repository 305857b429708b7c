"""The journal's connection: opening it, one write transaction at a time, guarded transitions.

``Store`` is the base of ``Journal``: it owns the single sqlite3 connection and its lock, the
pragmas (WAL, ``synchronous``, ``busy_timeout``), the ``synchronous=FULL`` commit of a record Id
claim, the state-table check on every transition, and the translation of sqlite3's errors into
``JournalError`` (cause chained). What the daemon does with rows lives in the mixins
(``lifecycle``, ``queries``, ``submissions``). Imports sqlite3; from the project only ``errors``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from creatio_attach.errors import JournalError

from .codec import PATH_COLUMNS, RETURNING, SELECT, decode_row, encode_path
from .rows import FileRow
from .schema import migrate, read_versions, unreadable
from .states import SOURCES, State

JOURNAL_FILE = "journal.sqlite3"
BUSY_TIMEOUT_MS = 10_000


class Store:
    """One journal connection and its plumbing; ``Journal`` adds what the daemon does with it."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = path
        self.readonly = readonly

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: str | os.PathLike[str]) -> Self:
        """Open (creating or migrating) ``<state_dir>/journal.sqlite3`` for the daemon."""
        directory = Path(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise JournalError(
                f"cannot create the state directory: {exc.strerror}",
                path=str(directory),
                hint="set [state] dir to a writable directory",
            ) from exc
        return cls.open_file(directory / JOURNAL_FILE)

    @classmethod
    def open_file(cls, path: str | os.PathLike[str]) -> Self:
        """Open a journal by its file name, read-write."""
        file = Path(path)
        try:
            conn = sqlite3.connect(
                file, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise translate_error(exc, file) from exc
        journal = cls(conn, file, readonly=False)
        try:
            with journal._lock:
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise JournalError(
                        f"the journal cannot use WAL mode (SQLite chose {mode!r})",
                        path=str(file),
                        hint="put [state] dir on a local file system",
                    )
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
                migrate(conn, file)
        except sqlite3.Error as exc:
            conn.close()
            raise translate_error(exc, file) from exc
        except JournalError:
            conn.close()
            raise
        return journal

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> Self:
        """Open for reading only (``status``), safe while the daemon writes.

        ``path`` is the journal file or the state directory holding it.
        """
        file = Path(path)
        if file.is_dir():
            file = file / JOURNAL_FILE
        if not file.is_file():
            raise JournalError(
                "there is no journal here",
                path=str(file),
                hint="has the daemon run yet with this [state] dir?",
            )
        uri = file.resolve().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(
                uri,
                uri=True,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            journal = cls(conn, file, readonly=True)
            version, app_id = read_versions(conn)
        except sqlite3.Error as exc:
            raise translate_error(exc, file) from exc
        refused = unreadable(file, version, app_id)
        if refused is not None:
            conn.close()
            raise refused
        return journal

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; ``durable`` commits with synchronous=FULL."""
        if self.readonly:
            raise JournalError("the journal is open read-only", path=str(self.path))
        with self._lock:
            conn = self._conn
            try:
                if durable:
                    conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise translate_error(exc, self.path) from exc
            finally:
                if durable:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("PRAGMA synchronous = NORMAL")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[FileRow]:
        with self._lock:
            try:
                return [decode_row(r) for r in self._conn.execute(sql, params).fetchall()]
            except sqlite3.Error as exc:
                raise translate_error(exc, self.path) from exc

    def _get(self, conn: sqlite3.Connection, file_id: int) -> FileRow:
        found = conn.execute(SELECT + " WHERE id = ?", (file_id,)).fetchone()
        if found is None:
            raise JournalError(f"no file #{file_id} in the journal", path=str(self.path))
        return decode_row(found)

    def _transition(
        self, conn: sqlite3.Connection, file_id: int, to: State, now: float, **columns: Any
    ) -> FileRow:
        """Move a row to ``to`` in ONE statement: the state table is checked in its WHERE
        (``state IN`` the states that may go to ``to``) and the new row comes back through
        RETURNING; only a refused move reads the row again, to say why."""
        found = self._update(conn, file_id, now, SOURCES[to], state=to.value, **columns)
        if found is None:
            row = self._get(conn, file_id)
            raise JournalError(
                f"file #{file_id} ({row.path}) cannot go from {row.state} to {to}",
                path=str(self.path),
            )
        return found

    @staticmethod
    def _update(
        conn: sqlite3.Connection,
        file_id: int,
        now: float,
        states: Sequence[State] | None = None,
        **columns: Any,
    ) -> FileRow | None:
        """UPDATE one row (only while in one of ``states``, when given) and return it as it is
        now; None when no row matched. A ``Raw`` value is an SQL expression (``attempts + 1``)."""
        assignments: list[str] = []
        params: list[Any] = []
        for name, value in columns.items():  # names are ours, never input
            if isinstance(value, Raw):
                assignments.append(f"{name} = {value.sql}")
                params.extend(value.params)
            else:
                assignments.append(f"{name} = ?")
                params.append(
                    encode_path(value) if name in PATH_COLUMNS and value is not None else value
                )
        assignments.append("updated_at = ?")
        params += [now, file_id]
        sql = f"UPDATE files SET {', '.join(assignments)} WHERE id = ?"  # noqa: S608
        if states is not None:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            params += [s.value for s in states]
        rows = conn.execute(sql + RETURNING, params).fetchall()
        return decode_row(rows[0]) if rows else None

    def _move(self, file_id: int, to: State, now: float, **columns: Any) -> FileRow:
        with self._write() as conn:
            return self._transition(conn, file_id, to, now, **columns)


@dataclass(frozen=True)
class Raw:
    """A column's new value as an SQL expression over the row, e.g. ``Raw("attempts + 1")``;
    ``params`` fill its ``?`` marks. Only ever built from constants in this package."""

    sql: str
    params: tuple[Any, ...] = ()


def translate_error(exc: sqlite3.Error, path: Path) -> JournalError:
    text = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "encrypted" in text
    ):
        return JournalError(
            f"the journal is damaged or not a database (SQLite: {text})",
            path=str(path),
            hint="stop the daemon, move the file aside (keep it for inspection) and start again",
        )
    if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
        return JournalError(
            f"the journal stayed locked by another process for {BUSY_TIMEOUT_MS // 1000} s",
            path=str(path),
            hint="is a second daemon running with the same [state] dir?",
        )
    if isinstance(exc, sqlite3.IntegrityError):
        return JournalError(f"the journal refused a change: {text}", path=str(path))
    return JournalError(f"the journal cannot be used: {text}", path=str(path))
