"""The daemon's engine: settles watched files, hands them and due journal rows to workers.

Threads (all owned here, all stoppable):

* the watcher's threads call ``sink`` (a queue put, nothing else);
* one *intake* thread owns the ``SettleTracker``: it drains the event queue, stats the files
  whose quiet period is over, polls the journal for rows that are due (retries, unmatched
  files, ``creatio-attach retry``) and for ``creatio-attach submit`` signals, and queues jobs;
* ``concurrency`` *worker* threads run the jobs through ``pipeline.Pipeline``.

A job holds a *lease* on its file (inbox + path) and, once it has one, its journal row: the
intake never queues a leased file or row, so no two workers touch the same file. ``start``
first queues the rows a crash left in ``uploading``/``uploaded`` (``Journal.in_flight``);
``stop`` stops taking files and lets running jobs finish within the grace period.

Policy only, no I/O library (no requests, magic, sqlite3, watchdog, socket, subprocess): files,
detection, Creatio and time come in through ``ports``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from creatio_attach.errors import CreatioAttachError, FileGone, FileProblem
from creatio_attach.events import FileEvent
from creatio_attach.journal.rows import FileRow
from creatio_attach.journal.states import State
from creatio_attach.settle import Key, Settled, SettleTracker, Stat

from .pipeline import Pipeline
from .ports import (
    Clock,
    Creatio,
    EngineObserver,
    Folders,
    InboxPolicy,
    Inspector,
    ObserverFanout,
    ParentMatcher,
    SystemClock,
)

if TYPE_CHECKING:
    from creatio_attach.journal import Journal

log = structlog.get_logger(component="engine")

DUE_POLL = 0.25  # seconds between looks at the journal for due rows
SUBMIT_POLL = 1.0  # seconds between looks for ``creatio-attach submit`` signals
IDLE_WAIT = 0.2  # longest wait of the intake for an event
BUSY_DELAY = 0.5  # a settled file whose path is leased is looked at again after this


@dataclass(frozen=True)
class _Resettle:
    inbox: str
    path: str
    row_id: int | None  # None: a file without a row yet (a sidecar waiting for its file)


@dataclass(frozen=True)
class _NewFile:
    key: Key
    settled: Settled
    submission: int | None


@dataclass(frozen=True)
class _Row:
    key: Key
    row: FileRow
    recover: bool = False


_Job = _NewFile | _Row


@dataclass(frozen=True)
class EngineStatus:
    """A look at the engine for sd_notify STATUS, the watchdog and metrics."""

    settling: int  # files waiting to be complete
    queued: int  # jobs waiting for a worker
    working: int  # jobs a worker is running
    workers_alive: bool
    intake_alive: bool
    last_progress: float  # monotonic time a thread last finished something
    creatio_down_since: float | None  # epoch; None while Creatio answers


class Engine:
    """Settles, schedules and runs the daemon's work; see the module docstring."""

    def __init__(
        self,
        *,
        inboxes: Sequence[InboxPolicy],
        journal: Journal,
        inspector: Inspector,
        folders: Folders,
        creatio: Creatio,
        clock: Clock | None = None,
        concurrency: int = 4,
        retry_base: float = 2.0,
        retry_cap: float = 600.0,
        matchers: Mapping[str, ParentMatcher] | None = None,
        observers: Sequence[EngineObserver] = (),
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.journal = journal
        self._policies: dict[str, InboxPolicy] = {p.name: p for p in inboxes}
        self._matchers: dict[str, ParentMatcher] = dict(matchers or {})
        self.concurrency = max(1, concurrency)
        self._events: queue.Queue[FileEvent | _Resettle] = queue.Queue()
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._leased_paths: set[Key] = set()
        self._leased_rows: set[int] = set()
        self._working = 0
        self._idle = threading.Condition(self._lock)
        self._taking = threading.Event()  # set while new work is taken
        self._closed = threading.Event()  # threads end
        self._threads: list[threading.Thread] = []
        self._tracker = SettleTracker()
        self._submitted: dict[Key, int] = {}
        self._next_submit_poll = 0.0
        self._last_progress = self.clock.monotonic()
        self._down_since: float | None = None
        self.observer = ObserverFanout(observers, touch=self._touch, contact=self._contact)
        self.pipeline = Pipeline(
            journal=journal,
            inspector=inspector,
            folders=folders,
            creatio=creatio,
            clock=self.clock,
            policies=lambda: self._policies,
            matchers=lambda: self._matchers,
            observer=self.observer,
            resettle=self._resettle,
            retry_base=retry_base,
            retry_cap=retry_cap,
        )
        self.inspector = inspector

    # -- the watcher's side ------------------------------------------------------------------

    def sink(self, event: FileEvent) -> None:
        """The watcher's sink: only queues (called from watchdog's threads)."""
        self._events.put(event)

    def _resettle(self, inbox: str, path: str, row_id: int | None) -> None:
        self._events.put(_Resettle(inbox, path, row_id))

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Queue what a crash interrupted and what is due, then start the threads."""
        if self._threads:
            raise RuntimeError("the engine is already running")
        self._taking.set()
        self._closed.clear()
        for row in self.journal.in_flight():
            self._lease_row(row, recover=True)
        for row in self.journal.by_state(State.SEEN):
            # settling when the daemon stopped (or changed during an upload): settle again
            self._resettle(row.inbox, row.location, row.id)
        intake = threading.Thread(target=self._intake, name="creatio-attach-intake", daemon=True)
        self._threads.append(intake)
        for n in range(self.concurrency):
            worker = threading.Thread(
                target=self._work, name=f"creatio-attach-worker-{n + 1}", daemon=True
            )
            self._threads.append(worker)
        for thread in self._threads:
            thread.start()
        log.info("engine.started", workers=self.concurrency, inboxes=sorted(self._policies))

    def stop(self, grace: float = 30.0) -> bool:
        """Stop taking files, let running jobs finish within ``grace`` seconds, stop the
        threads. True when nothing was cut short (a cut-short upload is recovered at the next
        start: its record Id is in the journal)."""
        self._taking.clear()
        deadline = self.clock.monotonic() + grace
        with self._idle:
            while self._working and self.clock.monotonic() < deadline:
                self._idle.wait(min(0.2, max(0.0, deadline - self.clock.monotonic())))
            unfinished = self._working
        self._closed.set()
        for thread in self._threads:
            thread.join(timeout=1.0 if not unfinished else 0.1)
        self._threads = []
        waiting = self._jobs.qsize() + len(self._tracker)
        log.info(
            "engine.stopped",
            cut_short=unfinished,
            left_for_next_start=waiting,
            note="files not finished stay in the inbox or the journal",
        )
        return unfinished == 0

    def reload(
        self,
        inboxes: Sequence[InboxPolicy],
        matchers: Mapping[str, ParentMatcher] | None = None,
    ) -> None:
        """New inbox policies (SIGHUP); jobs running keep the policy they started with."""
        self._policies = {p.name: p for p in inboxes}
        if matchers is not None:
            self._matchers = dict(matchers)
        log.info("engine.reloaded", inboxes=sorted(self._policies))

    def status(self) -> EngineStatus:
        with self._lock:
            working = self._working
        alive = [t.is_alive() for t in self._threads]
        return EngineStatus(
            settling=len(self._tracker),
            queued=self._jobs.qsize(),
            working=working,
            workers_alive=bool(alive) and all(alive[1:]),
            intake_alive=bool(alive) and alive[0],
            last_progress=self._last_progress,
            creatio_down_since=self._down_since,
        )

    def is_idle(self) -> bool:
        """Nothing settling, queued or running (tests, the demo)."""
        with self._lock:
            working = self._working
        return not working and self._jobs.empty() and self._events.empty() and not self._tracker

    def _touch(self) -> None:
        self._last_progress = self.clock.monotonic()

    def _contact(self, ok: bool) -> None:
        if ok and self._down_since is not None:
            self._down_since = None
            log.info("creatio.reachable_again")
            self._drain_backlog()
        elif not ok and self._down_since is None:
            self._down_since = self.clock.now()
            log.warning("creatio.unreachable", note="files wait in the journal and are retried")

    def _drain_backlog(self) -> None:
        """Creatio answers again: files waiting out a backoff for it are due now."""
        now = self.clock.now()
        for row in self.journal.by_state(State.RETRY_WAIT):
            if row.last_error and row.last_error.reason in ("creatio_unavailable", "creatio_auth"):
                try:
                    self.journal.requeue(row.id, now=now)
                except CreatioAttachError:
                    continue  # a worker moved it meanwhile

    # -- leases ------------------------------------------------------------------------------

    def _lease_row(self, row: FileRow, *, recover: bool = False) -> bool:
        key = (row.inbox, row.location)
        with self._lock:
            if row.id in self._leased_rows or key in self._leased_paths:
                return False
            self._leased_rows.add(row.id)
            self._leased_paths.add(key)
        self._jobs.put(_Row(key, row, recover))
        return True

    def _lease_path(self, key: Key, settled: Settled) -> bool:
        with self._lock:
            if key in self._leased_paths or (
                settled.row_id is not None and settled.row_id in self._leased_rows
            ):
                return False
            self._leased_paths.add(key)
            if settled.row_id is not None:
                self._leased_rows.add(settled.row_id)
        self._jobs.put(_NewFile(key, settled, self._submitted.pop(key, None)))
        return True

    def _release(self, job: _Job) -> None:
        with self._lock:
            self._leased_paths.discard(job.key)
            if isinstance(job, _Row):
                self._leased_rows.discard(job.row.id)
            elif job.settled.row_id is not None:
                self._leased_rows.discard(job.settled.row_id)

    # -- the intake thread -------------------------------------------------------------------

    def _intake(self) -> None:
        next_poll = 0.0
        while not self._closed.is_set():
            try:
                now = self.clock.monotonic()
                due = self._tracker.next_due()
                wait = IDLE_WAIT if due is None else min(IDLE_WAIT, max(0.0, due - now))
                wait = min(wait, max(0.0, next_poll - now))
                try:
                    item = self._events.get(timeout=wait)
                    self._note(item)
                    while True:  # drain what is there without waiting
                        self._note(self._events.get_nowait())
                except queue.Empty:
                    pass
                if not self._taking.is_set():
                    continue
                self._settle_due()
                now = self.clock.monotonic()
                if now >= next_poll:
                    next_poll = now + DUE_POLL
                    self._poll_journal()
                self._touch()
            except Exception:  # the intake must outlive any one bad file or journal hiccup
                log.exception("engine.intake_error")
                self._closed.wait(0.5)

    def _stat(self, path: str) -> Stat | None:
        try:
            snap = self.inspector.snapshot(Path(path))
        except FileGone:
            return None
        except FileProblem:
            return None
        return Stat(snap.size, snap.mtime_ns, snap.inode)

    def _note(self, item: FileEvent | _Resettle) -> None:
        if isinstance(item, _Resettle):
            policy = self._policies.get(item.inbox)
            stat = self._stat(item.path)
            if stat is None:
                if item.row_id is not None:
                    self._jobs_for_gone_row(item.row_id)
                return
            settle = policy.settle if policy else 2.0
            self._tracker.note(
                (item.inbox, item.path),
                "changed",
                stat,
                now=self.clock.monotonic(),
                epoch=0.0,  # not "quiet": a file that changed must settle for real
                settle=settle,
                row_id=item.row_id,
            )
            return
        policy = self._policies.get(item.inbox)
        if policy is None:
            return
        key = (item.inbox, str(item.path))
        stat = None if item.kind == "deleted" else self._stat(key[1])
        if stat is None and key in self._submitted:
            self._tracker.forget(key)
            self._submission_gone(key)
            return
        self._tracker.note(
            key,
            item.kind,
            stat,
            now=self.clock.monotonic(),
            epoch=self.clock.now(),
            settle=policy.settle,
        )

    def _jobs_for_gone_row(self, row_id: int) -> None:
        """A file to settle again is gone: its row ends as gone."""
        try:
            row = self.journal.get(row_id)
            if row.state is State.SEEN:
                self.journal.mark_gone(row_id, now=self.clock.now())
                log.info("file.gone", inbox=row.inbox, file=row.path, state="gone")
        except CreatioAttachError:
            log.exception("journal.error", row=row_id)

    def _settle_due(self) -> None:
        now = self.clock.monotonic()
        for key in self._tracker.due(now):
            stat = self._stat(key[1])
            settled = self._tracker.check(key, stat, now=now)
            if settled is None:
                if stat is None and key in self._submitted:
                    self._submission_gone(key)
                continue
            if not self._lease_path(key, settled):
                # being worked on: look again shortly (it may have changed under the upload)
                policy = self._policies.get(key[0])
                self._tracker.note(
                    key,
                    "changed",
                    settled.stat,
                    now=now,
                    epoch=0.0,
                    settle=policy.settle if policy else 2.0,
                    row_id=settled.row_id,
                )
                self._tracker.postpone(key, now=now, delay=BUSY_DELAY)

    def _poll_journal(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_submit_poll:
            self._next_submit_poll = now + SUBMIT_POLL
            self._take_submissions()
        for row in self.journal.due(self.clock.now(), limit=max(100, 4 * self.concurrency)):
            if self._jobs.qsize() >= 4 * self.concurrency:
                break
            if row.inbox in self._policies:
                self._lease_row(row)

    def _take_submissions(self) -> None:
        for sub in self.journal.pending_submissions():
            self._take_submission(sub.id, sub.inbox, sub.path)

    def _take_submission(self, sub_id: int, inbox: str | None, path: str) -> None:
        """``creatio-attach submit``: the file is complete now, and its metadata belongs in its
        row. A file the journal knows gets the metadata at once (an unmatched one is tried
        again at once); a new one is settled now and the worker that takes it merges the
        metadata, so a crash in between loses nothing (the submission stays pending)."""
        if sub_id in self._submitted.values():
            return
        policy = self._policies.get(inbox) if inbox else None
        if policy is None:
            policy = next((p for p in self._policies.values() if p.relative(path)), None)
        key = (policy.name if policy else inbox or "", path)
        with self._lock:
            if key in self._leased_paths:
                return  # a worker has it right now: look again at the next poll
        now = self.clock.now()
        row = self._row_for_path(path)
        if row is not None:
            self.journal.take_submission(sub_id, now=now, file_id=row.id)
            with self._lock:
                leased = row.id in self._leased_rows
            if row.state in (State.UNMATCHED, State.RETRY_WAIT) and not leased:
                self.journal.requeue(row.id, now=now)
            elif row.state is State.SEEN:
                self._resettle(row.inbox, row.location, row.id)
            log.info("submit.taken", inbox=row.inbox, file=row.path, state=row.state.value)
            return
        stat = self._stat(path)
        if policy is None or stat is None:
            self.journal.take_submission(sub_id, now=now, file_id=None)
            log.warning(
                "submit.ignored",
                file=path,
                inbox=inbox,
                reason="no such file" if stat is None else "not in any inbox",
            )
            return
        self._submitted[key] = sub_id
        self._tracker.note(
            key, "closed", stat, now=self.clock.monotonic(), epoch=0.0, settle=policy.settle
        )

    def _row_for_path(self, path: str) -> FileRow | None:
        """The journal's row of the file at ``path``: one still on its way, or one just done."""
        active = (State.SEEN, State.READY, State.RETRY_WAIT, State.UNMATCHED, State.UPLOADING)
        for row in self.journal.by_state(*active, State.UPLOADED):
            if path in (row.source_path, row.location):
                return row
        for row in self.journal.recent(50):
            if row.source_path == path:
                return row
        return None

    def _submission_gone(self, key: Key) -> None:
        """A submitted file left the tracker without being taken by a worker here."""
        sub_id = self._submitted.pop(key, None)
        if sub_id is None:
            return
        row = self._row_for_path(key[1])
        self.journal.take_submission(sub_id, now=self.clock.now(), file_id=row.id if row else None)

    # -- the workers -------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._closed.is_set():
            try:
                job = self._jobs.get(timeout=IDLE_WAIT)
            except queue.Empty:
                self._touch()
                continue
            if not self._taking.is_set():
                self._release(job)  # stopping: it stays in the inbox or the journal
                continue
            with self._lock:
                self._working += 1
            try:
                self._run(job)
            except Exception as exc:
                log.exception("engine.job_failed", inbox=job.key[0], file=job.key[1])
                self._after_bug(job, exc)
            finally:
                self._release(job)
                with self._idle:
                    self._working -= 1
                    self._idle.notify_all()
                self._touch()

    def _after_bug(self, job: _Job, exc: Exception) -> None:
        """A job died of a bug: its row (if it has one yet) waits out a backoff."""
        try:
            if isinstance(job, _Row):
                row_id: int | None = job.row.id
            else:
                found = self._row_for_path(job.key[1])
                row_id = found.id if found is not None else job.settled.row_id
        except CreatioAttachError:
            return
        if row_id is not None:
            self.pipeline.internal_error(row_id, exc)

    def _run(self, job: _Job) -> None:
        if isinstance(job, _NewFile):
            self.pipeline.take(job.key[0], job.key[1], job.settled, job.submission)
            return
        row = self.journal.get(job.row.id)  # fresh: the intake's copy may be old
        if job.recover:
            self.pipeline.recover(row)
        elif row.state in (State.READY, State.RETRY_WAIT, State.UNMATCHED):
            self.pipeline.process(row)
