"""How a file's way ends: archived, deleted or kept after its upload, a duplicate, waiting
for a retry or its parent, failed with a note, or gone.

The base of ``pipeline.Pipeline``: the constructor, the shared helpers (logging a file event,
finding its inbox policy) and every outcome, each written to the journal before or right after
the file is moved. Policy only, like the pipeline: folders, Creatio and the clock come in
through ``ports``; imports no I/O library (no requests, magic, sqlite3, watchdog, socket,
subprocess).

Every ``file.*`` log event carries the same fields, built from the journal row in hand (no
extra journal read; ``file_fields``):

- ``inbox``, ``file`` (the path relative to the inbox folder), ``state`` (the row's state
  after the step the event reports), ``entity`` (the file object, None until the file is
  routed and claimed), ``record_id`` (None until the record Id is claimed, just before the
  create call), ``bytes`` (the file's size), ``mime`` (the detected type, None before
  detection);
- ``attempt``: which try at this file the event belongs to, 1-based: the first try is attempt 1
  for every outcome. The journal's ``attempts`` column counts the tries that ended waiting
  (``retry_wait``, ``unmatched``), so an event on a row in one of those states reports
  ``attempts`` (the try that just ended), any other event ``attempts + 1`` (the try under way);
- ``duration``: whole milliseconds since the journal first recorded the file (``created_at``:
  it was found and had settled) until the event; on ``file.done`` that is the file's way from
  the inbox into Creatio, on ``file.unmatched`` how long it has been waiting. It is never
  negative (a wall clock set back gives 0). ``file.uploaded`` adds ``upload_ms``, the time of
  the upload itself.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from creatio_attach.errors import (
    CreatioAttachError,
    CreatioAuthFailed,
    CreatioUnavailable,
    FileGone,
    FileProblem,
    ParentNotFound,
)
from creatio_attach.journal.backoff import next_retry_delay
from creatio_attach.journal.rows import ErrorNote, FileRow
from creatio_attach.journal.states import State
from creatio_attach.routing import SIDECAR_SUFFIX

from .ports import (
    Clock,
    Creatio,
    EngineObserver,
    Folders,
    InboxPolicy,
    Inspector,
    ParentMatcher,
)

if TYPE_CHECKING:
    from creatio_attach.journal import Journal

log = structlog.get_logger(component="engine")
#: the standard library logger structlog's ``filter_by_level`` consults for this module
_stdlib_log = logging.getLogger(__name__)

#: the states a file waits in for a worker
WAITING = (State.READY, State.RETRY_WAIT, State.UNMATCHED)
#: an archiving or deletion that failed is tried again after retry_cap, at most this long
DISPOSE_RETRY_CAP = 300.0
#: names looked at per folder for a file a crash may have moved (``x.pdf``, ``x (1).pdf``...)
FIND_NAMES = 20


class Outcomes:
    """What happens to a file at the end of its way; shared by every worker thread."""

    def __init__(
        self,
        *,
        journal: Journal,
        inspector: Inspector,
        folders: Folders,
        creatio: Creatio,
        clock: Clock,
        policies: Callable[[], Mapping[str, InboxPolicy]],
        matchers: Callable[[], Mapping[str, ParentMatcher]],
        observer: EngineObserver,
        resettle: Callable[[str, str, int | None], None],
        retry_base: float = 2.0,
        retry_cap: float = 600.0,
    ) -> None:
        self.journal = journal
        self.inspector = inspector
        self.folders = folders
        self.creatio = creatio
        self.clock = clock
        self._policies = policies
        self._matchers = matchers
        self.observer = observer
        self._resettle = resettle  # (inbox, absolute path, row id or None): settle again
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        #: found parents, reused for a while (``Pipeline._find_parent``)
        self._parents: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]] = {}
        self._parents_lock = threading.Lock()

    # -- helpers -----------------------------------------------------------------------------

    def _event(self, event: str, row: FileRow, level: str = "info", **extra: Any) -> None:
        if level == "debug" and not _stdlib_log.isEnabledFor(logging.DEBUG):
            return  # two per file: not even built (structlog binds a logger on every call)
        fields = file_fields(row, self.clock.now())
        fields.update(extra)
        getattr(log, level)(event, **fields)

    def _policy(self, row: FileRow) -> InboxPolicy | None:
        return self._policies().get(row.inbox)

    # -- after the upload --------------------------------------------------------------------

    def dispose(self, row: FileRow, after: str, policy: InboxPolicy | None) -> None:
        """uploaded -> done: archive, delete or keep the file (and its sidecar)."""
        now = self.clock.now()
        path = Path(row.location)
        sidecar = Path(row.location + SIDECAR_SUFFIX)  # deleted with its file
        old_note = Path(row.location + ".error.json")
        try:
            if after == "archive" and policy is not None:
                dest = policy.folder_for(policy.archive_dir, now) / row.path
                final = self.folders.move(path, dest)
                self._move_sidecar(row, row.location, final)
                row = self.journal.mark_done(
                    row.id, now=self.clock.now(), disposition="archived", final_path=str(final)
                )
            elif after == "delete":
                self.journal.plan_disposal(row.id, now=now, disposition="deleted", final_path=None)
                self.folders.delete(path)
                self.folders.delete(sidecar)
                row = self.journal.mark_done(
                    row.id, now=self.clock.now(), disposition="deleted", final_path=None
                )
            else:
                row = self.journal.mark_done(
                    row.id, now=self.clock.now(), disposition="kept", final_path=None
                )
        except FileGone:
            row = self.journal.mark_done(
                row.id, now=self.clock.now(), disposition="deleted", final_path=None
            )
        except FileProblem as exc:
            # uploaded and recorded: it stays in the inbox, the journal keeps it from a second
            # upload, and the archiving (or deletion) is tried again when due
            wait = min(self.retry_cap, DISPOSE_RETRY_CAP)
            row = self.journal.defer_disposal(
                row.id,
                now=self.clock.now(),
                next_attempt_at=self.clock.now() + wait,
                error=ErrorNote.from_exception(exc),
            )
            self._event(
                "file.dispose_failed", row, level="error", error=str(exc), wait_s=round(wait, 3)
            )
            return
        try:
            if self.folders.exists(old_note):
                self.folders.delete(old_note)  # a retried file from the failed folder
        except FileProblem as exc:
            self._event("file.move_failed", row, level="warning", error=str(exc))
        self._event("file.done", row, disposition=row.disposition, final_path=row.final_path)
        self.observer.progress()

    def _duplicate(self, row: FileRow, policy: InboxPolicy, original: FileRow) -> None:
        """A duplicate (same content, same parent): archived with a note, deleted or kept.

        A record this file got before (its content changed during an upload into the content
        of another file, or a retry after the create) is deleted: the parent keeps one copy.
        The file is moved (or deleted) first, then recorded ``duplicate`` with its new place in
        one commit: after a crash in between, the row is looked at again and its file found
        in the archive folder (``_find_moved``).
        """
        if row.record_id and row.target and original.record_id != row.record_id:
            self._discard(row.target, row.record_id)
        note = {
            "duplicate_of": original.path,
            "original_record_id": original.record_id,
            "original_archived_as": original.final_path,
            "sha256": row.sha256,
            "parent": {"schema": row.parent_schema, "id": row.parent_id},
            "entity": row.target,
            "note": "the same content is already attached to this record; not uploaded again",
        }
        final: str | None = None
        try:
            if policy.after == "archive":
                folder = policy.folder_for(policy.archive_dir, self.clock.now())
                place = row.location
                if not inside_folder(row.location, folder):
                    place = str(self.folders.move(Path(row.location), folder / row.path))
                final = place  # recorded only once the file is there
                self.folders.write_json(Path(place + ".duplicate.json"), note)
            elif policy.after == "delete":
                self.folders.delete(Path(row.location))
        except FileProblem as exc:
            self._event("file.dispose_failed", row, level="warning", error=str(exc))
        row = self.journal.mark_duplicate(
            row.id, now=self.clock.now(), original_id=original.id, location=final
        )
        self._event("file.duplicate", row, duplicate_of=original.path)

    # -- waiting, failing --------------------------------------------------------------------

    def _retry(self, row: FileRow, exc: CreatioAttachError) -> None:
        retry_after = exc.retry_after if isinstance(exc, CreatioUnavailable) else None
        delay = next_retry_delay(
            row.attempts + 1, base=self.retry_base, cap=self.retry_cap, retry_after=retry_after
        )
        if isinstance(exc, CreatioUnavailable | CreatioAuthFailed):
            self.observer.creatio_contact(False)
        now = self.clock.now()
        row = self.journal.mark_retry(
            row.id, now=now, next_attempt_at=now + delay, error=ErrorNote.from_exception(exc)
        )
        level = "error" if isinstance(exc, CreatioAuthFailed) else "warning"
        self._event("file.retry_wait", row, level=level, error=exc.message, wait_s=round(delay, 3))
        self.observer.file_retry(row.inbox, reason=exc.reason)

    def internal_error(self, row_id: int, exc: BaseException) -> None:
        """A bug met this file: it waits out a backoff (so it cannot spin), the log has the
        traceback, and the reason ``internal`` shows in ``status``."""
        try:
            row = self.journal.get(row_id)
            delay = next_retry_delay(row.attempts + 1, base=self.retry_base, cap=self.retry_cap)
            now = self.clock.now()
            if row.state is State.UPLOADED:  # due again for its disposal: not at once
                row = self.journal.defer_disposal(
                    row.id,
                    now=now,
                    next_attempt_at=now + delay,
                    error=ErrorNote.from_exception(exc),
                )
                self._event("file.dispose_failed", row, level="error", error=str(exc))
                return
            if row.state not in (*WAITING, State.UPLOADING):
                return
            row = self.journal.mark_retry(
                row.id, now=now, next_attempt_at=now + delay, error=ErrorNote.from_exception(exc)
            )
            self._event("file.retry_wait", row, level="error", error=str(exc), reason="internal")
        except CreatioAttachError:
            log.exception("journal.error", row=row_id)

    def _unmatched(self, row: FileRow, policy: InboxPolicy, exc: ParentNotFound) -> None:
        """-> unmatched: looked at again every ``unmatched_every`` until ``unmatched_for`` has
        passed since the first miss, then failed. When the finder says when another look can
        change the answer (``exc.retry_after``: a recording waiting for its Call record until
        ``call_wait`` ends), the next look is no later than that, and the file is not given
        up before that moment plus one ``unmatched_every``, however short ``unmatched_for``."""
        # reachability was reported where Creatio answered (``Pipeline._find_parent``/``_match``)
        now = self.clock.now()
        give_up = row.give_up_at if row.give_up_at is not None else now + policy.unmatched_for
        next_look = now + policy.unmatched_every
        if exc.retry_after is not None:
            wait = max(0.0, exc.retry_after)
            next_look = now + min(policy.unmatched_every, wait)
            give_up = max(give_up, now + wait + policy.unmatched_every)
        note = ErrorNote.from_exception(exc)
        if now >= give_up:
            waited = ErrorNote(
                note.reason,
                f"{note.message}; still no parent after {policy.unmatched_for:g} s",
                note.status,
                note.creatio_message,
                note.details,
            )
            self.fail(row, waited)
            return
        row = self.journal.mark_unmatched(
            row.id,
            now=now,
            next_attempt_at=min(next_look, give_up),
            give_up_at=give_up,
            error=note,
        )
        folder = policy.folder_for(policy.unmatched_dir, now)
        if not inside_folder(row.location, folder):
            try:
                final = self.folders.move(Path(row.location), folder / row.path)
                self._move_sidecar(row, row.location, final)
                row = self.journal.set_location(row.id, now=self.clock.now(), location=str(final))
            except FileProblem as exc2:
                self._event("file.move_failed", row, level="warning", error=str(exc2))
        self._event("file.unmatched", row, error=note.message, location=row.location)
        self.observer.file_retry(row.inbox, reason=note.reason)

    def fail(self, row: FileRow, note: ErrorNote) -> None:
        """-> failed: the file goes to the failed folder with ``<name>.error.json`` beside it.

        The move comes first and its place is written with the ``failed`` state in one commit:
        a crash in between leaves the row in its earlier state, and its file is found in the
        failed folder by ``_find_moved`` when it is looked at again (then fails again, here)."""
        policy = self._policy(row)
        final = Path(row.location)
        moved: str | None = None
        problem: FileProblem | None = None
        if policy is not None:
            folder = policy.folder_for(policy.failed_dir, self.clock.now())
            try:
                if not inside_folder(row.location, folder) and self.folders.exists(final):
                    final = self.folders.move(final, folder / row.path)
                    moved = str(final)
                    self._move_sidecar(row, row.location, final)
            except FileProblem as exc:
                problem = exc
        row = self.journal.mark_failed(row.id, now=self.clock.now(), error=note, location=moved)
        if row.record_id and row.target:
            self._discard(row.target, row.record_id)
        if policy is not None and problem is None:
            try:
                if self.folders.exists(final):
                    self.folders.write_json(Path(str(final) + ".error.json"), row.error_report())
            except FileProblem as exc:
                problem = exc
        if problem is not None:
            self._event("file.move_failed", row, level="warning", error=str(problem))
        self._event("file.failed", row, level="warning", reason=note.reason, error=note.message)
        self.observer.file_failed(row.inbox, reason=note.reason)

    def _move_sidecar(self, row: FileRow, old_location: str, final: Path) -> None:
        """The sidecar of the file that was at ``old_location`` goes beside it at ``final``.
        One that vanished meanwhile is none (the file's own fate stands); one that cannot be
        moved is said in the log and stays."""
        sidecar = Path(old_location + SIDECAR_SUFFIX)
        try:
            if self.folders.exists(sidecar):
                self.folders.move(sidecar, Path(str(final) + SIDECAR_SUFFIX))
        except FileGone:
            pass
        except FileProblem as exc:
            self._event("file.move_failed", row, level="warning", error=str(exc))

    def _gone(self, row: FileRow) -> None:
        if row.state in (State.SEEN, *WAITING):
            row = self.journal.mark_gone(row.id, now=self.clock.now())
        self._event("file.gone", row)

    def _find_moved(self, row: FileRow) -> FileRow | None:
        """The row, its location corrected, when its file is not where the row says but where
        a crash may have left it: moved into the unmatched, failed or archive folder (a
        duplicate), or still in the inbox, just before its new place was written down.

        Looked for under its name and the names a move takes when that one is taken
        (``x (1).pdf``...), in the dated folders of the row's last change, today and
        yesterday; ``_is_that_file`` says whether a candidate is that very file. None when it
        is nowhere to be found.
        """
        policy = self._policy(row)
        if policy is None:
            return None
        now = self.clock.now()
        try:  # "/." : the inbox's own file system, also when its folder is a symlink
            home = self.inspector.snapshot(policy.folder / ".").device
        except FileProblem:
            return None
        places = [Path(row.source_path)] if row.source_path else []
        for template in (policy.unmatched_dir, policy.failed_dir, policy.archive_dir):
            # the day of the row's last change (the move came right after it), today, yesterday
            days = (row.updated_at, now, now - 86_400)
            for folder in dict.fromkeys(policy.folder_for(template, t) for t in days):
                places += self.folders.names_for(folder / row.path, FIND_NAMES)
        for place in places:
            if str(place) == row.location:
                continue
            if self._is_that_file(row, place, home):
                self._event("file.found_moved", row, level="warning", location=str(place))
                return self.journal.set_location(row.id, now=now, location=str(place))
        return None

    def _is_that_file(self, row: FileRow, place: Path, home: int) -> bool:
        """On the inbox's file system only the very file counts (a move keeps its inode and
        mtime; a copy of it, ``cp -p`` included, has another inode). On another file system a
        move copies: the same size, mtime and SHA-256."""
        try:
            snap = self.inspector.snapshot(place)
        except FileProblem:
            return False
        if (snap.size, snap.mtime_ns) != (row.size, row.mtime_ns):
            return False
        if snap.device == home:
            return snap.inode == row.inode
        if row.sha256 is None:
            return False
        try:
            return self.inspector.sha256(place) == row.sha256
        except FileProblem:
            return False

    def _discard(self, file_object: str, record_id: str) -> None:
        """Best effort: delete a record we claimed but will not use (the next claim for this
        file takes a new Id). A record left behind is empty, never a duplicate attachment."""
        try:
            self.creatio.delete_record(file_object, record_id)
        except CreatioAttachError as exc:
            log.info(
                "record.discard_failed", entity=file_object, record_id=record_id, error=str(exc)
            )


def file_fields(row: FileRow, now: float) -> dict[str, Any]:
    """The fields of every ``file.*`` log event (see the module docstring), from ``row`` alone;
    ``now`` is epoch seconds, the clock of the row's ``created_at``."""
    counted = row.state in (State.RETRY_WAIT, State.UNMATCHED)
    return {
        "inbox": row.inbox,
        "file": row.path,
        "state": row.state.value,
        "entity": row.target,
        "record_id": row.record_id,
        "bytes": row.size,
        "mime": row.mime,
        "duration": max(0, round((now - row.created_at) * 1000)),
        "attempt": max(1, row.attempts) if counted else row.attempts + 1,
    }


def inside_folder(location: str, folder: Path) -> bool:
    loc = os.path.normpath(location)
    base = os.path.normpath(folder)
    return loc == base or loc.startswith(base.rstrip(os.sep) + os.sep)
