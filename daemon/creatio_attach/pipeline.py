"""One file's way through the daemon: take, type, route, claim, upload, verify, dispose.

Runs in the engine's worker threads, one file per call; the engine leases the file first, so
no two workers ever hold the same file or row. Every step is written to the journal before the
next one starts, in particular the record Id (``claim_upload``, a durable commit) before
Creatio is asked to create the record: a crash at any instant is repaired by ``recover``.
The outcomes (archive, duplicate, retry, unmatched, failed, gone) live in ``outcomes``.

Policy only: files, type detection, Creatio and the clock are reached through the Protocols of
``ports``; imports no I/O library (no requests, magic, sqlite3, watchdog, socket, subprocess).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from creatio_attach.errors import (
    CreatioAttachError,
    CreatioAuthFailed,
    CreatioRejected,
    CreatioUnavailable,
    FileGone,
    FileProblem,
    FileRefused,
    JournalError,
    ParentNotFound,
    VerificationFailed,
)
from creatio_attach.journal.rows import Claim, ErrorNote, FileRow
from creatio_attach.journal.states import State
from creatio_attach.routing import (
    SIDECAR_SUFFIX,
    clean_name,
    parse_sidecar,
    path_fields,
    render,
    route,
)
from creatio_attach.settle import Settled

from .outcomes import WAITING, Outcomes
from .ports import (
    Detection,
    FileFacts,
    InboxPolicy,
    MatchRequest,
    local_date,
    local_time,
)

log = structlog.get_logger(component="engine")

#: a lone ``x.pdf.json`` waits this long (from its mtime) for ``x.pdf`` before it is taken as
#: a file of its own: a sidecar written just before its file must not be uploaded itself
SIDECAR_WAIT = 5.0
PARENT_TTL = 30.0  # seconds a found parent Id is reused without asking Creatio again
PARENT_CACHE_SIZE = 10_000
TWIN_WAIT = 1.0  # seconds before a file whose twin is uploading right now is looked at again
VERIFY_ATTEMPTS = 5  # a verification that keeps failing is a permanent error after this many


@dataclass(frozen=True)
class Target:
    file_object: str
    parent_schema: str
    parent_id: str
    name: str
    matched_by: str | None = None


def _same(a: FileFacts, size: int, mtime_ns: int) -> bool:
    return a.size == size and a.mtime_ns == mtime_ns


class Pipeline(Outcomes):
    """The per-file steps; shared by every worker thread (it keeps no per-file state)."""

    # -- a settled file ----------------------------------------------------------------------

    def take(self, inbox: str, abspath: str, settled: Settled, submission: int | None) -> None:
        """A file in the inbox is complete: record it, type it, then ``process`` it."""
        policy = self._policies().get(inbox)
        if policy is None:
            return  # the inbox was removed by a reload; the file stays where it is
        rel = policy.relative(abspath)
        if rel is None:
            return
        now = self.clock.now()
        stat = settled.stat
        if abspath.endswith(SIDECAR_SUFFIX) and settled.row_id is None:
            if self.is_sidecar(abspath):
                return
            if now - stat.mtime_ns / 1e9 < SIDECAR_WAIT:
                # maybe the sidecar of a file still to come: look again later
                self._resettle(inbox, abspath, None)
                return
        row: FileRow | None = None
        if settled.row_id is not None:
            row = self.journal.get(settled.row_id)
            if row.state is State.SEEN:
                row = self.journal.update_stat(
                    row.id, size=stat.size, mtime_ns=stat.mtime_ns, inode=stat.inode, now=now
                )
        if row is None or row.state is not State.SEEN:
            row, created = self.journal.add(
                inbox=inbox,
                path=rel,
                source_path=abspath,
                size=stat.size,
                mtime_ns=stat.mtime_ns,
                inode=stat.inode,
                now=now,
            )
            if created:
                self._event("file.seen", row, level="debug")
        if submission is not None:
            self.journal.take_submission(submission, now=now, file_id=row.id)
            row = self.journal.get(row.id)
        if row.state in WAITING:
            # a rescan met a file that waits: only when its time has come (backoff holds)
            if row.next_attempt_at is None or row.next_attempt_at <= now:
                self.process(row)
            return
        if row.state is not State.SEEN:
            return  # done, failed, duplicate...: a rescan met a file the journal knows
        path = Path(abspath)
        try:
            detected = self.inspector.detect(path)
            after = self.inspector.snapshot(path)
        except FileGone:
            self._gone(row)
            return
        except FileProblem as exc:
            self.fail(row, ErrorNote.from_exception(exc))
            return
        if not _same(after, stat.size, stat.mtime_ns) or detected.size != stat.size:
            self._resettle(inbox, abspath, row.id)  # still being written: settle again
            return
        row = self.journal.mark_ready(
            row.id, now=self.clock.now(), sha256=detected.sha256, mime=detected.mime
        )
        self.process(row, detected)

    def is_sidecar(self, abspath: str) -> bool:
        """``x.pdf.json`` beside ``x.pdf`` is that file's sidecar, not a file of its own."""
        if not abspath.endswith(SIDECAR_SUFFIX):
            return False
        return self.folders.exists(Path(abspath[: -len(SIDECAR_SUFFIX)]))

    # -- a journal row that is due -----------------------------------------------------------

    def process(
        self, row: FileRow, detected: Detection | None = None, *, looked: bool = False
    ) -> None:
        """Route, claim and upload a ``ready``/``retry_wait``/``unmatched`` row. A file not at
        its row's location is looked for where a crash may have moved it (once: ``looked``)."""
        policy = self._policy(row)
        if policy is None:
            return
        path = Path(row.location)
        try:
            snap = self.inspector.snapshot(path)
            if not _same(snap, row.size, row.mtime_ns):
                self._settle_again(row, snap)
                return
            if detected is None or detected.sha256 != row.sha256:
                detected = self.inspector.detect(path)
            # a small file is checked against its hash again; a large one (not hashed by
            # ``detect``) by its size and mtime above, as while it uploads, even when it was
            # hashed for a claim: waiting behind a twin must not hash it again every second
            hash_differs = detected.sha256 is not None and detected.sha256 != row.sha256
            if hash_differs or detected.mime != row.mime:
                now = self.clock.now()
                self.journal.mark_changed(
                    row.id, now=now, size=snap.size, mtime_ns=snap.mtime_ns, inode=snap.inode
                )
                row = self.journal.mark_ready(
                    row.id, now=now, sha256=detected.sha256, mime=detected.mime
                )
            self._check_rules(policy, detected, row)
            target = self._route(policy, row, path, detected)
        except FileGone:
            moved = None if looked else self._find_moved(row)
            if moved is not None:
                self.process(moved, looked=True)
            else:
                self._gone(row)
            return
        except FileProblem as exc:
            self.fail(row, ErrorNote.from_exception(exc))
            return
        except ParentNotFound as exc:
            self._unmatched(row, policy, exc)
            return
        except CreatioUnavailable as exc:
            self._retry(row, exc)
            return
        except CreatioAuthFailed as exc:
            self._retry(row, exc)
            return
        except CreatioRejected as exc:
            self.fail(row, ErrorNote.from_exception(exc))
            return
        # no ``creatio_contact(True)`` here: the parent may have come from the cache or an
        # ``id =`` template without a request; only a real answer counts (``_find_parent``,
        # ``_match``, the upload), or a dead Creatio would look reachable and release the backlog
        # the target and the record Id claim: one durable commit before the create call
        released, claim = self.journal.target_and_claim(
            row.id,
            now=self.clock.now(),
            target=target.file_object,
            parent_schema=target.parent_schema,
            parent_id=target.parent_id,
            record_name=target.name,
            matched_by=target.matched_by,
            skip_duplicates=policy.duplicates == "skip",
        )
        if released and row.target:
            self._discard(row.target, released)
        if claim.outcome == "hash_first":
            # a large file not hashed yet, and a file of its size is already on the parent
            hashed = self._hash_and_claim(row, path, policy)
            if hashed is None:
                return  # gone, unreadable or changed while it was hashed: dealt with
            claim = hashed
        assert claim.row is not None
        if claim.outcome == "duplicate":
            assert claim.original is not None
            self._duplicate(claim.row, policy, claim.original)
            return
        if claim.outcome == "busy":
            note = ErrorNote("twin_uploading", "the same content is being uploaded right now")
            now = self.clock.now()
            row = self.journal.mark_retry(
                row.id, now=now, next_attempt_at=now + TWIN_WAIT, error=note
            )
            self._event("file.retry_wait", row, level="debug", reason=note.reason)
            return
        self.upload(claim.row, snap, may_exist=row.record_id is not None)

    def _hash_and_claim(self, row: FileRow, path: Path, policy: InboxPolicy) -> Claim | None:
        """Hash a large file before its claim after all (``Claim`` "hash_first") and claim again;
        None when it is gone or unreadable (recorded) or changed meanwhile (settling again)."""
        try:
            digest = self.inspector.sha256(path)
            snap = self.inspector.snapshot(path)
        except FileGone:
            self._gone(row)
            return None
        except FileProblem as exc:
            self.fail(row, ErrorNote.from_exception(exc))
            return None
        if not _same(snap, row.size, row.mtime_ns):
            self._settle_again(self.journal.get(row.id), snap)
            return None
        self.journal.set_hash(row.id, now=self.clock.now(), sha256=digest)
        return self.journal.claim_upload(
            row.id, now=self.clock.now(), skip_duplicates=policy.duplicates == "skip"
        )

    def _check_rules(self, policy: InboxPolicy, detected: Detection, row: FileRow) -> None:
        mime = detected.mime
        if policy.deny_types and self.inspector.mime_matches(mime, policy.deny_types):
            raise FileRefused(f"the type {mime} is denied in this inbox", reason="type_denied")
        if policy.types and not self.inspector.mime_matches(mime, policy.types):
            raise FileRefused(
                f"the type {mime} is not among the allowed types ({', '.join(policy.types)})",
                reason="type_not_allowed",
            )
        if detected.size < policy.min_size:
            raise FileRefused(
                f"{detected.size} bytes is less than min_size ({policy.min_size})",
                reason="too_small",
            )
        if policy.max_size is not None and detected.size > policy.max_size:
            raise FileRefused(
                f"{detected.size} bytes is more than max_size ({policy.max_size})",
                reason="too_large",
            )

    def _route(self, policy: InboxPolicy, row: FileRow, path: Path, detected: Detection) -> Target:
        """Where the file goes (finds the parent in Creatio); raises on every failure."""
        file_name = row.path.rpartition("/")[2]
        corrected = self.inspector.record_name(file_name, detected)
        builtins = {"date": local_date(row.created_at), "time": local_time(row.created_at)}
        if corrected != file_name:
            stem, dot, ext = corrected.rpartition(".")
            builtins.update(file=corrected, stem=stem if dot else corrected, ext=ext if dot else "")
        if policy.rule is None:
            return self._match(policy, row, detected, builtins)
        text = self.folders.read_sidecar(Path(str(path) + SIDECAR_SUFFIX))
        sidecar = parse_sidecar(text) if text is not None else None
        decided = route(policy.rule, row.path, sidecar=sidecar, builtins=builtins)
        parent_id = decided.parent_id
        if parent_id is None:
            assert decided.parent_where is not None
            parent_id = self._find_parent(decided.parent_schema, decided.parent_where)
        return Target(decided.entity, decided.parent_schema, parent_id, decided.name)

    def _find_parent(self, schema: str, where: Mapping[str, str]) -> str:
        """``find_parent``, remembering a found parent for PARENT_TTL seconds (a batch of files
        for one record asks Creatio once). Not found is never remembered: the record often
        appears after the file."""
        key = (schema, tuple(sorted(where.items())))
        now = self.clock.monotonic()
        with self._parents_lock:
            hit = self._parents.get(key)
        if hit is not None and now - hit[1] < PARENT_TTL:
            return hit[0]  # no request: says nothing about whether Creatio is reachable
        try:
            parent_id = self.creatio.find_parent(schema, where)
        except CreatioRejected:
            self.observer.creatio_contact(True)  # an answer (not found, ambiguous, refused)
            raise
        self.observer.creatio_contact(True)
        with self._parents_lock:
            if len(self._parents) > PARENT_CACHE_SIZE:
                self._parents.clear()
            self._parents[key] = (parent_id, now)
        return parent_id

    def _match(
        self,
        policy: InboxPolicy,
        row: FileRow,
        detected: Detection,
        builtins: Mapping[str, str],
    ) -> Target:
        """A call-recording inbox: the ParentMatcher finds the parent (issue 5)."""
        matcher = self._matchers().get(policy.name)
        if matcher is None:
            raise FileRefused(
                f"inbox {policy.name!r} has no entity/parent and no matcher", reason="no_route"
            )
        fields = {**path_fields(row.path, row.inbox), **builtins}
        if policy.pattern is not None:
            found = policy.pattern.search(row.path)
            if found is None:
                raise FileRefused(
                    f"the path does not match the inbox pattern {policy.pattern.pattern}",
                    reason="no_match",
                )
            fields.update({k: v for k, v in found.groupdict().items() if v is not None})
        request = MatchRequest(
            row.inbox, row.path, fields, row.metadata, detected.mime, row.created_at
        )
        try:
            match = matcher.match(request)
        except ParentNotFound as exc:
            # an answer from Creatio, unless every step was skipped and nothing was asked
            if exc.asked_creatio:
                self.observer.creatio_contact(True)
            raise
        except CreatioRejected:
            # the chain asked Creatio before it says "ambiguous" or Creatio refused a query
            self.observer.creatio_contact(True)
            raise
        self.observer.creatio_contact(True)  # every match comes from a Creatio answer
        name = match.name
        if name is None and policy.name_template is not None:
            try:
                name = render(policy.name_template, fields)
            except KeyError:
                name = None
        name = clean_name(name or fields["file"])
        return Target(
            match.file_object, match.parent_schema, match.parent_id, name, match.matched_by
        )

    # -- the upload --------------------------------------------------------------------------

    def upload(self, row: FileRow, before: FileFacts, *, may_exist: bool = True) -> None:
        """Upload a row in ``uploading`` (its record Id is committed) and finish it.
        ``may_exist``: the record Id comes from an earlier attempt (a retry, a crash), so its
        record may exist and is then completed; False only for an Id claimed just now."""
        assert row.record_id and row.target and row.parent_schema and row.parent_id
        path = Path(row.location)
        started = self.clock.monotonic()
        self._event("file.uploading", row, level="debug")
        claimed = row.record_id

        def recorded(record_id: str) -> None:
            if record_id != claimed:  # Creatio chose the Id: the journal must know it first
                self.journal.set_record_id(row.id, now=self.clock.now(), record_id=record_id)

        try:
            result = self.creatio.upload(
                path,
                file_object=row.target,
                parent_schema=row.parent_schema,
                parent_id=row.parent_id,
                name=row.record_name or row.path.rpartition("/")[2],
                mime=row.mime,
                record_id=row.record_id,
                on_record=recorded,
                may_exist=may_exist,
            )
        except FileGone:
            row = self.journal.mark_changed(
                row.id, now=self.clock.now(), size=row.size, mtime_ns=row.mtime_ns, inode=row.inode
            )
            self._gone(row)
            return
        except VerificationFailed as exc:
            if self._changed(row, path, before):
                return
            if row.attempts + 1 >= VERIFY_ATTEMPTS:
                self.fail(row, ErrorNote.from_exception(exc))
            else:
                self._retry(row, exc)
            return
        except (CreatioUnavailable, CreatioAuthFailed) as exc:
            self._retry(row, exc)
            return
        except CreatioAttachError as exc:
            if isinstance(exc, FileProblem) and self._changed(row, path, before):
                return
            self.fail(row, ErrorNote.from_exception(exc))
            return
        self.observer.creatio_contact(True)
        seconds = self.clock.monotonic() - started
        # a file hashed before must have sent the same bytes; a large one hashed while it was
        # sent (no hash before) relies on its size, mtime and inode before and after
        hashed_before = row.sha256 is not None
        if (
            hashed_before
            and result.sha256 != row.sha256
            and self._changed(row, path, before, force=True)
        ):
            return
        if self._changed(row, path, before):
            return
        row = self.journal.mark_uploaded(
            row.id, now=self.clock.now(), sha256=None if hashed_before else result.sha256
        )
        self._event("file.uploaded", row, bytes=result.bytes, upload_ms=round(seconds * 1000))
        self.observer.file_done(row.inbox, bytes=result.bytes, seconds=seconds)
        policy = self._policy(row)
        self.dispose(row, policy.after if policy else "keep", policy)

    def _settle_again(self, row: FileRow, snap: FileFacts, *, event: str | None = None) -> None:
        """The file differs from its row: back to ``seen`` (keeping its record Id), settle again."""
        row = self.journal.mark_changed(
            row.id, now=self.clock.now(), size=snap.size, mtime_ns=snap.mtime_ns, inode=snap.inode
        )
        if event is not None:
            self._event(event, row, level="warning")
        self._resettle(row.inbox, row.location, row.id)

    def _changed(self, row: FileRow, path: Path, before: FileFacts, force: bool = False) -> bool:
        """True (and the row is back in ``seen``, keeping its record Id) when the file changed
        during its upload: it settles again and is uploaded onto the same record."""
        try:
            after = self.inspector.snapshot(path)
        except FileGone:
            return False
        if not force and _same(after, before.size, before.mtime_ns) and after.inode == before.inode:
            return False
        self._settle_again(row, after, event="file.changed_during_upload")
        return True

    # -- after a crash -----------------------------------------------------------------------

    def recover(self, row: FileRow) -> None:
        """Finish a row a crash left in ``uploading`` or ``uploaded``."""
        try:
            if row.state is State.UPLOADED:
                policy = self._policy(row)
                if self.folders.exists(Path(row.location)):
                    self.dispose(row, policy.after if policy else "keep", policy)
                else:
                    self._finish_disposal(row, policy.after if policy else "keep")
                return
            if row.state is not State.UPLOADING:
                return
            self._event("file.recovering", row)
            path = Path(row.location)
            try:
                snap = self.inspector.snapshot(path)
            except FileGone:
                self._recover_without_file(row)
                return
            if not _same(snap, row.size, row.mtime_ns):
                self._settle_again(row, snap)
                return
            self.upload(row, snap)  # same record Id: an existing record is completed
        except JournalError:
            log.exception("journal.error", inbox=row.inbox, file=row.path)

    def _finish_disposal(self, row: FileRow, after: str) -> None:
        """An ``uploaded`` row whose file was moved or deleted just before a crash: where it
        went is found again (the archive, by its inode), its sidecar follows it (a sidecar
        left alone would be taken as a file of its own), and the row is ``done``."""
        old_location = row.location
        final_path = row.final_path
        if after == "archive" and final_path is None:
            moved = self._find_moved(row)
            if moved is not None:
                final_path = moved.location
        if after == "archive" and final_path is not None:
            self._move_sidecar(row, old_location, Path(final_path))
        elif after == "delete":
            try:
                self.folders.delete(Path(old_location + SIDECAR_SUFFIX))
            except FileProblem as exc:
                self._event("file.move_failed", row, level="warning", error=str(exc))
        done = {"archive": "archived", "delete": "deleted"}.get(after, "kept")
        row = self.journal.mark_done(
            row.id,
            now=self.clock.now(),
            disposition=row.disposition or done,  # type: ignore[arg-type]
            final_path=final_path,
        )
        self._event("file.done", row, disposition=row.disposition, final_path=row.final_path)

    def _recover_without_file(self, row: FileRow) -> None:
        moved = self._find_moved(row)  # e.g. into the failed folder just before the crash
        if moved is not None:
            try:
                snap = self.inspector.snapshot(Path(moved.location))
            except FileProblem:
                snap = None  # gone again meanwhile: as if not found
            if snap is not None:
                self.upload(moved, snap)  # same record Id: an existing record is completed
                return
            row = moved
        target, record_id = row.target, row.record_id
        assert target is not None and record_id is not None
        try:
            stored = self.creatio.record_size(target, record_id)
        except CreatioAttachError as exc:
            self._retry(row, exc)
            return
        if stored is not None and stored == row.size:
            row = self.journal.mark_uploaded(row.id, now=self.clock.now())
            row = self.journal.mark_done(
                row.id, now=self.clock.now(), disposition="deleted", final_path=None
            )
            self._event("file.done", row, note="file gone after a complete upload")
            return
        if stored is not None:
            self._discard(target, record_id)
        row = self.journal.mark_changed(
            row.id, now=self.clock.now(), size=row.size, mtime_ns=row.mtime_ns, inode=row.inode
        )
        self._gone(row)
