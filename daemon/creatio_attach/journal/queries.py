"""Reading the journal: what is due, what a crash interrupted, counts for ``status``.

Read-only queries, safe on a journal opened with ``open_readonly``. From the project imports
only ``errors`` (through ``store``); needs no sqlite3 of its own.
"""

from __future__ import annotations

from typing import Any

from .codec import SELECT
from .rows import FileRow
from .states import State
from .store import Store


class Queries(Store):
    """Lists and counts of rows; nothing here changes the journal."""

    # -- queries ---------------------------------------------------------------------------

    def due(self, now: float, limit: int = 100) -> list[FileRow]:
        """Rows waiting for a worker whose time has come, oldest first.

        Reading does not lease: a scheduler must remember what it already handed out.
        """
        return self._query(
            SELECT + " WHERE state IN ('ready', 'retry_wait', 'unmatched')"
            " AND coalesce(next_attempt_at, 0) <= ?"
            # an uploaded file whose archiving (or deletion) failed is tried again when due
            " UNION ALL " + SELECT + " WHERE state = 'uploaded' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (now, now, limit),
        )

    def next_due_at(self) -> float | None:
        """When the earliest waiting row becomes due (None: nothing waits)."""
        with self._lock:
            value = self._conn.execute(
                "SELECT min(coalesce(next_attempt_at, 0)) FROM files"
                " WHERE state IN ('ready', 'retry_wait', 'unmatched')"
                " OR (state = 'uploaded' AND next_attempt_at IS NOT NULL)"
            ).fetchone()[0]
        return None if value is None else float(value)

    def in_flight(self) -> list[FileRow]:
        """Rows a crash may have interrupted: ``uploading`` (record may or may not exist) and
        ``uploaded`` (verified, not yet disposed of)."""
        return self._query(SELECT + " WHERE state IN ('uploading', 'uploaded') ORDER BY id")

    def by_state(
        self, *states: State, inbox: str | None = None, limit: int | None = None
    ) -> list[FileRow]:
        marks = ", ".join("?" for _ in states)
        sql = SELECT + f" WHERE state IN ({marks})"
        params: list[Any] = [s.value for s in states]
        if inbox is not None:
            sql += " AND inbox = ?"
            params.append(inbox)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._query(sql, params)

    def counts(self) -> dict[str, dict[str, int]]:
        """{inbox: {state: number of rows}}."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            rows = self._conn.execute(
                "SELECT inbox, state, count(*) FROM files GROUP BY inbox, state ORDER BY inbox"
            ).fetchall()
        for inbox, state, n in rows:
            out.setdefault(inbox, {})[state] = n
        return out

    def recent(self, limit: int = 20) -> list[FileRow]:
        """The last files done (uploaded and disposed of), newest first."""
        return self._query(
            SELECT + " WHERE state = 'done' ORDER BY done_at DESC, id DESC LIMIT ?", (limit,)
        )

    def failures(self, inbox: str | None = None) -> list[FileRow]:
        """Every failed file with its ``last_error``, oldest first."""
        return self.by_state(State.FAILED, inbox=inbox)

    def matched_by_counts(self) -> dict[str, dict[str, int]]:
        """{inbox: {matching step: uploaded files}} (call recordings)."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            rows = self._conn.execute(
                "SELECT inbox, matched_by, count(*) FROM files WHERE matched_by IS NOT NULL"
                " AND state IN ('uploaded', 'done') GROUP BY inbox, matched_by ORDER BY inbox"
            ).fetchall()
        for inbox, step, n in rows:
            out.setdefault(inbox, {})[step] = n
        return out
