"""A file's life in the journal: record it, target it, claim its record Id, move it along.

Every method here is one short write transaction that goes through ``Store._transition``, so
the state table in ``states`` is enforced on each step (in the UPDATE's WHERE: one statement per
step, the row coming back through RETURNING); ``claim_upload``/``target_and_claim`` are the only
durable (``synchronous=FULL``) commits. Imports sqlite3 (a transaction's connection is
passed between steps); from the project only ``errors``.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from typing import Any

from creatio_attach.errors import JournalError

from .codec import RETURNING, SELECT, decode_row, encode_path
from .rows import Claim, Disposition, ErrorNote, FileRow, RetryResult
from .states import State
from .store import Raw, Store, translate_error

_COLUMNS_IN = (
    "inbox, path, source_path, location, size, mtime_ns, inode, state, created_at, updated_at"
)
_CONFLICT = " ON CONFLICT (inbox, path, size, mtime_ns, inode) DO NOTHING"
_VALUES = " VALUES (?, ?, ?, ?, ?, ?, ?, 'seen', ?, ?)"
_INSERT = f"INSERT INTO files ({_COLUMNS_IN}){_VALUES}{_CONFLICT}{RETURNING}"


# The claim's questions (``_twin_check``); each is answered from an index (test_journal checks
# the plans): the same content on the parent; a file of the same size on the parent uploading
# without a hash yet; for a large file without a hash, a hashed file of its size on the parent.
_ON_PARENT = " AND parent_schema = ? AND parent_id = ? AND target = ? AND id != ?"
TWIN_SQL = (
    SELECT + " WHERE sha256 = ?" + _ON_PARENT + " AND state IN ('uploading', 'uploaded', 'done')"
    " ORDER BY state = 'uploading', id LIMIT 1"
)
UNHASHED_UPLOADING_SQL = (
    SELECT + " WHERE size = ? AND sha256 IS NULL" + _ON_PARENT + " AND state = 'uploading'"
    " ORDER BY id LIMIT 1"
)
HASHED_SAME_SIZE_SQL = (
    SELECT
    + " WHERE size = ? AND sha256 IS NOT NULL"
    + _ON_PARENT
    + " AND state IN ('uploaded', 'done') LIMIT 1"
)


class Lifecycle(Store):
    """The transitions of one row, from ``add`` to ``done`` (or ``failed``, ``gone``...)."""

    # -- recording a file ------------------------------------------------------------------

    def add(
        self,
        *,
        inbox: str,
        path: str,
        source_path: str,
        size: int,
        mtime_ns: int,
        inode: int,
        now: float,
    ) -> tuple[FileRow, bool]:
        """Record a discovered file in ``seen``; returns (row, created).

        The same instance (inbox, path, size, mtime_ns, inode) is never inserted twice: a second
        add returns the existing row with ``created`` False.
        """
        key = (inbox, encode_path(path), size, mtime_ns, inode)
        with self._write() as conn:
            # the new row comes back through RETURNING, none on a conflict
            inserted = conn.execute(
                _INSERT,
                (*key[:2], encode_path(source_path), encode_path(source_path), *key[2:], now, now),
            ).fetchall()
            if inserted:
                return decode_row(inserted[0]), True
            found = conn.execute(
                SELECT + " WHERE inbox = ? AND path = ? AND size = ? AND mtime_ns = ?"
                " AND inode = ?",
                key,
            ).fetchone()
            if found is None:  # pruned between the two statements: record it again
                raise JournalError(f"file {path!r} vanished from the journal", path=str(self.path))
            return decode_row(found), False

    def get(self, file_id: int) -> FileRow:
        with self._lock:
            try:
                return self._get(self._conn, file_id)
            except sqlite3.Error as exc:
                raise translate_error(exc, self.path) from exc

    def find_by_identity(
        self, inbox: str, path: str, size: int, mtime_ns: int, sha256: str | None = None
    ) -> FileRow | None:
        """The newest row for this instance (and this content, when ``sha256`` is given)."""
        sql = SELECT + " WHERE inbox = ? AND path = ? AND size = ? AND mtime_ns = ?"
        params: list[Any] = [inbox, encode_path(path), size, mtime_ns]
        if sha256 is not None:
            sql += " AND sha256 = ?"
            params.append(sha256)
        rows = self._query(sql + " ORDER BY id DESC LIMIT 1", params)
        return rows[0] if rows else None

    def find_uploaded(
        self, sha256: str, parent_schema: str, parent_id: str, target: str
    ) -> FileRow | None:
        """The first row whose content is already on this parent (uploaded or done)."""
        rows = self._query(
            SELECT + " WHERE sha256 = ? AND parent_schema = ? AND parent_id = ? AND target = ?"
            " AND state IN ('uploaded', 'done') ORDER BY id LIMIT 1",
            (sha256, parent_schema, parent_id, target),
        )
        return rows[0] if rows else None

    def update_stat(
        self, file_id: int, *, size: int, mtime_ns: int, inode: int, now: float
    ) -> FileRow:
        """The file grew or was rewritten while ``seen``: record its new size/mtime/inode."""
        with self._write() as conn:
            stat = dict(size=size, mtime_ns=mtime_ns, inode=inode)
            found = self._update(conn, file_id, now, (State.SEEN,), **stat)
            if found is None:
                raise JournalError(
                    f"file #{file_id} is {self._get(conn, file_id).state}; only a seen file's"
                    " stat can change here",
                    path=str(self.path),
                )
            return found

    def mark_ready(
        self, file_id: int, *, now: float, sha256: str | None, mime: str | None = None
    ) -> FileRow:
        """seen -> ready: settled; its detected type is known, and its hash unless the file is
        large (None: hashed while it uploads, see ``_claim``). Due at ``now``."""
        return self._move(file_id, State.READY, now, sha256=sha256, mime=mime, next_attempt_at=now)

    def set_hash(self, file_id: int, *, now: float, sha256: str) -> FileRow:
        """Record the SHA-256 of a large file hashed before its claim (outcome "hash_first");
        only while it waits to be claimed (ready, retry_wait, unmatched)."""
        with self._write() as conn:
            waiting = (State.READY, State.RETRY_WAIT, State.UNMATCHED)
            found = self._update(conn, file_id, now, waiting, sha256=sha256)
            if found is None:
                raise JournalError(
                    f"file #{file_id} is {self._get(conn, file_id).state}; its hash is fixed",
                    path=str(self.path),
                )
            return found

    def set_target(
        self,
        file_id: int,
        *,
        now: float,
        target: str,
        parent_schema: str,
        parent_id: str,
        record_name: str,
        matched_by: str | None = None,
    ) -> str | None:
        """Store where the file goes. Returns a record Id released by this change, else None.

        A record Id claimed for another target is released (the row gets a fresh one at the next
        claim) so a retry can never put the content on the wrong parent; the caller may delete
        the released record in Creatio.
        """
        with self._write() as conn:
            row = self._get(conn, file_id)
            released, _ = self._set_target(
                conn, row, now, (target, parent_schema, parent_id, record_name, matched_by)
            )
            return released

    def _set_target(
        self,
        conn: sqlite3.Connection,
        row: FileRow,
        now: float,
        where: tuple[str, str, str, str, str | None],
    ) -> tuple[str | None, FileRow]:
        """(released record Id or None, the row after the change); see ``set_target``."""
        if row.state not in (State.READY, State.RETRY_WAIT, State.UNMATCHED):
            raise JournalError(
                f"file #{row.id} is {row.state}; its target is fixed", path=str(self.path)
            )
        target, parent_schema, parent_id, record_name, matched_by = where
        released = None
        if row.record_id and (row.target, row.parent_schema, row.parent_id) != (
            target,
            parent_schema,
            parent_id,
        ):
            released = row.record_id
        updated = self._update(
            conn,
            row.id,
            now,
            target=target,
            parent_schema=parent_schema,
            parent_id=parent_id,
            record_name=record_name,
            matched_by=matched_by,
            record_id=None if released else row.record_id,
        )
        assert updated is not None  # the row was read in this transaction
        return released, updated

    # -- the upload ------------------------------------------------------------------------

    def claim_upload(self, file_id: int, *, now: float, skip_duplicates: bool = True) -> Claim:
        """Atomically: refuse a duplicate, or claim a record Id and go to ``uploading``.

        With ``skip_duplicates`` a row whose content is already uploaded/done on the same parent
        is a duplicate (outcome "duplicate", the row left as it is: the caller moves the file
        and then records it with ``mark_duplicate``, its new place in the same commit, so a
        crash in between leaves a row that is looked at again); one whose twin is
        ``uploading`` right now is left alone (outcome "busy": try again shortly). A row
        without a hash yet (a large file, hashed while it uploads) is claimed only when no
        other file of its size is on the parent (else outcome "hash_first"), and waits
        ("busy") while a file of its size without a hash uploads. Otherwise a record Id is
        generated (or the one from an earlier attempt kept), committed durably, and returned
        (outcome "claimed").
        """
        with self._write(durable=True) as conn:
            return self._claim(conn, self._get(conn, file_id), now, skip_duplicates)

    def target_and_claim(
        self,
        file_id: int,
        *,
        now: float,
        target: str,
        parent_schema: str,
        parent_id: str,
        record_name: str,
        matched_by: str | None = None,
        skip_duplicates: bool = True,
    ) -> tuple[str | None, Claim]:
        """``set_target`` then ``claim_upload`` in ONE durable transaction (one commit, one
        fsync): (record Id released by the new target or None, the claim). The record Id is
        committed with ``synchronous=FULL`` before this returns, exactly as ``claim_upload``."""
        with self._write(durable=True) as conn:
            row = self._get(conn, file_id)
            where = (target, parent_schema, parent_id, record_name, matched_by)
            released, row = self._set_target(conn, row, now, where)
            return released, self._claim(conn, row, now, skip_duplicates)

    def _claim(
        self, conn: sqlite3.Connection, row: FileRow, now: float, skip_duplicates: bool
    ) -> Claim:
        file_id = row.id
        if row.state not in (State.READY, State.RETRY_WAIT, State.UNMATCHED):
            raise JournalError(
                f"file #{file_id} ({row.path}) cannot go from {row.state} to uploading",
                path=str(self.path),
            )
        if not (row.target and row.parent_schema and row.parent_id):
            raise JournalError(
                f"file #{file_id} has no target yet; call set_target first",
                path=str(self.path),
            )
        if skip_duplicates:
            early = self._twin_check(conn, row, now)
            if early is not None:
                return early
        record_id = row.record_id or str(uuid.uuid4())
        row = self._transition(
            conn, file_id, State.UPLOADING, now, record_id=record_id, next_attempt_at=None
        )
        return Claim("claimed", record_id=record_id, row=row)

    def _twin_check(self, conn: sqlite3.Connection, row: FileRow, now: float) -> Claim | None:
        """The outcome when the same content (or, for a row without a hash, a file of the same
        size) is on the row's parent; None when the row may be claimed."""
        where = (row.parent_schema, row.parent_id, row.target, row.id)
        if row.sha256 is not None:
            twin = conn.execute(TWIN_SQL, (row.sha256, *where)).fetchone()
            if twin is not None:
                original = decode_row(twin)
                if original.state is State.UPLOADING:
                    return Claim("busy", original=original, row=row)
                return Claim("duplicate", original=original, row=row)
        # a large file of this size uploads without a hash yet: it may be the same content
        pending = conn.execute(UNHASHED_UPLOADING_SQL, (row.size, *where)).fetchone()
        if pending is not None:
            return Claim("busy", original=decode_row(pending), row=row)
        if row.sha256 is None:
            same_size = conn.execute(HASHED_SAME_SIZE_SQL, (row.size, *where)).fetchone()
            if same_size is not None:
                return Claim("hash_first", original=decode_row(same_size), row=row)
        return None

    def claim_record_id(self, file_id: int, *, now: float) -> str:
        """Claim a record Id (kept from an earlier attempt, else a new uuid4) and commit it
        durably before returning: the create call may only follow this."""
        claim = self.claim_upload(file_id, now=now, skip_duplicates=False)
        assert claim.record_id is not None
        return claim.record_id

    def set_record_id(self, file_id: int, *, now: float, record_id: str) -> FileRow:
        """An ``uploading`` row's record got another Id than the one claimed (a Creatio that
        ignores the client's Id): written down durably before any content is sent, so a
        crash leads to that record being completed, not to a second one."""
        with self._write(durable=True) as conn:
            found = self._update(conn, file_id, now, (State.UPLOADING,), record_id=record_id)
            if found is None:
                self._get(conn, file_id)  # no such row: says so
                raise JournalError(f"file #{file_id} is not uploading", path=str(self.path))
            return found

    def mark_uploaded(self, file_id: int, *, now: float, sha256: str | None = None) -> FileRow:
        """uploading -> uploaded: the content in Creatio is verified. ``sha256``: the hash of
        a large file taken while it was sent (its row had none)."""
        known = {} if sha256 is None else {"sha256": sha256}
        return self._move(file_id, State.UPLOADED, now, last_error=None, **known)

    def mark_done(
        self, file_id: int, *, now: float, disposition: Disposition, final_path: str | None
    ) -> FileRow:
        """uploaded -> done: archived (final_path = archive copy), deleted (None) or kept."""
        columns: dict[str, Any] = dict(
            disposition=disposition, done_at=now, final_path=final_path, next_attempt_at=None
        )
        if final_path is not None:
            columns["location"] = final_path
        return self._move(file_id, State.DONE, now, **columns)

    def defer_disposal(
        self, file_id: int, *, now: float, next_attempt_at: float, error: ErrorNote
    ) -> FileRow:
        """An ``uploaded`` row whose archiving or deletion failed: it stays ``uploaded`` and is
        due again at ``next_attempt_at`` (``due``), with the reason in ``last_error``."""
        with self._write() as conn:
            columns = dict(next_attempt_at=next_attempt_at, last_error=error.to_json())
            found = self._update(conn, file_id, now, (State.UPLOADED,), **columns)
            if found is None:
                self._get(conn, file_id)  # no such row: says so
                raise JournalError(f"file #{file_id} is not uploaded", path=str(self.path))
            return found

    def plan_disposal(
        self, file_id: int, *, now: float, disposition: Disposition, final_path: str | None
    ) -> FileRow:
        """Note, on an ``uploaded`` row, what is about to happen to the file (before moving it),
        so a restart after a crash between the move and ``mark_done`` knows where it went."""
        with self._write() as conn:
            plan = dict(disposition=disposition, final_path=final_path)
            found = self._update(conn, file_id, now, (State.UPLOADED,), **plan)
            if found is None:
                self._get(conn, file_id)  # no such row: says so
                raise JournalError(f"file #{file_id} is not uploaded", path=str(self.path))
            return found

    def mark_changed(
        self, file_id: int, *, now: float, size: int, mtime_ns: int, inode: int
    ) -> FileRow:
        """The file changed under us: back to ``seen`` to settle again; the record Id is kept."""
        stat = dict(size=size, mtime_ns=mtime_ns, inode=inode)
        forget = dict.fromkeys(("sha256", "mime", "next_attempt_at"))
        return self._move(file_id, State.SEEN, now, **stat, **forget)

    # -- waiting and failing ---------------------------------------------------------------

    def mark_retry(
        self, file_id: int, *, now: float, next_attempt_at: float, error: ErrorNote
    ) -> FileRow:
        """-> retry_wait after a retryable error; counts an attempt."""
        note = error.to_json()
        return self._move(
            file_id,
            State.RETRY_WAIT,
            now,
            next_attempt_at=next_attempt_at,
            last_error=note,
            attempts=Raw("attempts + 1"),
        )

    def mark_unmatched(
        self,
        file_id: int,
        *,
        now: float,
        next_attempt_at: float,
        give_up_at: float,
        error: ErrorNote,
    ) -> FileRow:
        """-> unmatched: no parent yet; counts an attempt. ``give_up_at`` is kept from the
        first time."""
        return self._move(
            file_id,
            State.UNMATCHED,
            now,
            next_attempt_at=next_attempt_at,
            last_error=error.to_json(),
            give_up_at=Raw("coalesce(give_up_at, ?)", (give_up_at,)),
            attempts=Raw("attempts + 1"),
        )

    def mark_failed(
        self, file_id: int, *, now: float, error: ErrorNote, location: str | None = None
    ) -> FileRow:
        """-> failed: permanent for this file until ``retry``. ``location``: where the file was
        just moved (the failed folder), written in the same commit."""
        columns: dict[str, Any] = dict(
            last_error=error.to_json(), next_attempt_at=None, done_at=now
        )
        if location is not None:
            columns.update(location=location, final_path=location)
        return self._move(file_id, State.FAILED, now, **columns)

    def mark_duplicate(
        self, file_id: int, *, now: float, original_id: int, location: str | None = None
    ) -> FileRow:
        """-> duplicate of ``original_id`` (``claim_upload`` says when). ``location``: where
        the file was just moved (the archive folder), written in the same commit."""
        self.get(original_id)
        columns: dict[str, Any] = dict(duplicate_of=original_id, next_attempt_at=None, done_at=now)
        if location is not None:
            columns.update(location=location, final_path=location)
        return self._move(file_id, State.DUPLICATE, now, **columns)

    def mark_gone(self, file_id: int, *, now: float) -> FileRow:
        """-> gone: the file vanished before it was uploaded."""
        return self._move(file_id, State.GONE, now, next_attempt_at=None, done_at=now)

    def requeue(self, file_id: int, *, now: float) -> FileRow:
        """retry_wait/unmatched/failed -> ready, due now (failed: attempts start again)."""
        with self._write() as conn:
            row = self._get(conn, file_id)
            return self._requeue(conn, row, now)

    def _requeue(self, conn: sqlite3.Connection, row: FileRow, now: float) -> FileRow:
        columns: dict[str, Any] = {"next_attempt_at": now}
        if row.state is State.FAILED:
            columns.update(attempts=0, give_up_at=None, done_at=None)
        return self._transition(conn, row.id, State.READY, now, **columns)

    def set_location(self, file_id: int, *, now: float, location: str) -> FileRow:
        """The file was moved (to the unmatched or failed folder); any state."""
        ended = "CASE WHEN state IN ('failed', 'duplicate', 'done') THEN ? ELSE final_path END"
        with self._write() as conn:
            found = self._update(
                conn,
                file_id,
                now,
                location=location,
                final_path=Raw(ended, (encode_path(location),)),
            )
            if found is None:
                return self._get(conn, file_id)  # raises: no such row
            return found

    def prune(self, *, before: float) -> int:
        """Forget rows that ended (done, duplicate, gone) before ``before``; returns how many.

        Failed and waiting rows are kept. A forgotten done row no longer stops a second upload
        of the same content: dedupe remembers what the journal holds.
        """
        final = "state IN ('done', 'duplicate', 'gone') AND done_at < :before"
        with self._write() as conn:
            cursor = conn.execute(
                f"DELETE FROM files WHERE {final} AND id NOT IN (SELECT duplicate_of FROM files"  # noqa: S608
                f" WHERE duplicate_of IS NOT NULL AND NOT ({final}))",
                {"before": before},
            )
            return int(cursor.rowcount)

    def retry_failed(
        self, paths: Sequence[str] | None = None, *, now: float, all_failed: bool = False
    ) -> RetryResult:
        """Put failed files back in the queue (and unmatched ones named in ``paths``, at once).

        A path matches a row's relative path, discovery path, current location or final path.
        """
        if all_failed == (paths is not None):
            raise ValueError("give either paths or all_failed=True")
        requeued: list[FileRow] = []
        not_found: list[str] = []
        with self._write() as conn:
            if all_failed:
                rows = [decode_row(r) for r in conn.execute(SELECT + " WHERE state = 'failed'")]
                requeued = [self._requeue(conn, row, now) for row in rows]
                return RetryResult(requeued, [])
            for path in paths or ():
                p = encode_path(path)
                found = conn.execute(
                    SELECT + " WHERE state IN ('failed', 'unmatched') AND (path = ?"
                    " OR source_path = ? OR location = ? OR final_path = ?) ORDER BY id",
                    (p, p, p, p),
                ).fetchall()
                if not found:
                    not_found.append(path)
                for r in found:
                    requeued.append(self._requeue(conn, decode_row(r), now))
        return RetryResult(requeued, not_found)
