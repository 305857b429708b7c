"""The daemon's engine: settles watched files, hands them and due journal rows to workers.

Threads (all owned here, all stoppable):

* the watcher's threads call ``sink`` (a queue put, nothing else);
* one *intake* thread owns the ``SettleTracker``: it drains the event queue, stats the files
  whose quiet period is over, polls the journal for rows that are due (retries, unmatched
  files, ``creatio-attach retry``) and for ``creatio-attach submit`` signals, and queues jobs;
* ``concurrency`` *worker* threads run the jobs through ``pipeline.Pipeline``.

A job holds a *lease* on its file (inbox + path) and, once it has one, its journal row: the
intake never queues a leased file or row, so no two workers touch the same file (``intake``
keeps the leases, the job types and each worker's liveness: a worker inside one job with no
sign of life for ``stuck_after`` seconds is stuck, which stops the systemd watchdog). ``start``
first queues the rows a crash left in ``uploading``/``uploaded`` (``Journal.in_flight``);
``stop`` stops taking files and lets running jobs finish within the grace period.

Must not import an I/O library (requests, magic, sqlite3, watchdog, socket, subprocess) nor
``adapters``, ``service`` or ``cli``: files, detection, Creatio and time come in through the
Protocols of ``ports``; the composition root (``service``) passes the real adapters in.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from creatio_attach.errors import CreatioAttachError, FileGone, FileProblem
from creatio_attach.events import FileEvent
from creatio_attach.journal.states import State
from creatio_attach.settle import SettleTracker, Stat

from .intake import (
    EngineStatus,
    Job,
    Leases,
    Liveness,
    NewFile,
    Resettle,
    RowJob,
    Submissions,
    WatchedCreatio,
    drain_backlog,
    mark_gone,
    row_for_path,
)
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
#: events the intake notes in one pass before it hands on what is due: a burst (the first scan
#: of a large inbox) must not hold back the first upload, nor the watchdog's view of a pass,
#: until all of it is noted
NOTE_BATCH = 1000
BUSY_DELAY = 0.5  # a settled file whose path is leased is looked at again after this
#: a worker inside one job this long without a sign of life is stuck (``service`` passes a
#: bound from the Creatio timeouts; this default is for engines built elsewhere)
STUCK_AFTER = 600.0


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
        stuck_after: float = STUCK_AFTER,
    ) -> None:
        self.clock: Clock = clock or SystemClock()
        self.journal = journal
        self._policies: dict[str, InboxPolicy] = {p.name: p for p in inboxes}
        self._matchers: dict[str, ParentMatcher] = dict(matchers or {})
        self.concurrency = max(1, concurrency)
        self._events: queue.Queue[FileEvent | Resettle] = queue.Queue()
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._lock = threading.RLock()
        self._leases = Leases(self._lock, self._jobs)
        self.liveness = Liveness(self.clock.monotonic, stuck_after)
        self._working = 0
        self._idle = threading.Condition(self._lock)
        self._taking = threading.Event()  # set while new work is taken
        self._closed = threading.Event()  # threads end
        self._threads: list[threading.Thread] = []
        self._tracker = SettleTracker()
        self._subs = Submissions(
            journal,
            self._leases,
            self.clock,
            lambda: self._policies,
            self._resettle,
            self._stat,
            self._tracker,
        )
        self._next_submit_poll = 0.0
        self._last_progress = self.clock.monotonic()
        self._intake_pass = self._last_progress
        self._down_since: float | None = None
        self.observer = ObserverFanout(observers, touch=self._touch, contact=self._contact)
        self.pipeline = Pipeline(
            journal=journal,
            inspector=inspector,
            folders=folders,
            creatio=WatchedCreatio(creatio, self.liveness),
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
        self._events.put(Resettle(inbox, path, row_id))

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Queue what a crash interrupted and what is due, then start the threads."""
        if self._threads:
            raise RuntimeError("the engine is already running")
        self._taking.set()
        self._closed.clear()
        for row in self.journal.in_flight():
            self._leases.row(row, recover=True)
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
            events_waiting=self._events.qsize(),
            queued=self._jobs.qsize(),
            working=working,
            workers_alive=bool(alive) and all(alive[1:]),
            intake_alive=bool(alive) and alive[0],
            last_progress=self._last_progress,
            intake_pass=self._intake_pass,
            stuck=tuple(self.liveness.stuck()),
            creatio_down_since=self._down_since,
        )

    def alive(self, intake_limit: float = 120.0) -> bool:
        """Every thread runs, the intake passed over its work within ``intake_limit`` seconds,
        and no worker is stuck (the systemd watchdog's view of the engine)."""
        st = self.status()
        recent = self.clock.monotonic() - st.intake_pass < intake_limit
        return st.workers_alive and st.intake_alive and recent and not st.stuck

    def is_idle(self) -> bool:
        """Nothing to note, settling, queued or running (tests, the demo). An event counts
        until the intake has noted it and settled what was due (``task_done``), and a file
        moves from the tracker to its lease under the lock read here: no gap looks idle."""
        with self._lock:
            return not (self._events.unfinished_tasks or self._tracker or self._leases)

    def _touch(self) -> None:
        self._last_progress = self.clock.monotonic()
        self.liveness.sign_of_life()

    def _contact(self, ok: bool) -> None:
        if ok and self._down_since is not None:
            self._down_since = None
            log.info("creatio.reachable_again")
            drain_backlog(self.journal, self.clock.now())
        elif not ok and self._down_since is None:
            self._down_since = self.clock.now()
            log.warning("creatio.unreachable", note="files wait in the journal and are retried")

    # -- the intake thread -------------------------------------------------------------------

    def _intake(self) -> None:
        next_poll = 0.0
        while not self._closed.is_set():
            noted = 0  # events taken in this pass: done (``task_done``) once it is over
            try:
                now = self.clock.monotonic()
                due = self._tracker.next_due()
                wait = IDLE_WAIT if due is None else min(IDLE_WAIT, max(0.0, due - now))
                wait = min(wait, max(0.0, next_poll - now))
                try:
                    item = self._events.get(timeout=wait)
                    noted += 1
                    self._note(item)
                    while noted < NOTE_BATCH:  # what is there, without waiting
                        item = self._events.get_nowait()
                        noted += 1
                        self._note(item)
                except queue.Empty:
                    pass
                if self._taking.is_set():
                    self._settle_due()
                    now = self.clock.monotonic()
                    if now >= next_poll:
                        next_poll = now + DUE_POLL
                        self._poll_journal()
                self._touch()
                self._intake_pass = self._last_progress
            except Exception:  # the intake must outlive any one bad file or journal hiccup
                log.exception("engine.intake_error")
                self._closed.wait(0.5)
            finally:
                for _ in range(noted):
                    self._events.task_done()

    def _stat(self, path: str) -> Stat | None:
        try:
            snap = self.inspector.snapshot(Path(path))
        except FileGone:
            return None
        except FileProblem:
            return None
        return Stat(snap.size, snap.mtime_ns, snap.inode)

    def _note(self, item: FileEvent | Resettle) -> None:
        if isinstance(item, Resettle):
            policy = self._policies.get(item.inbox)
            stat = self._stat(item.path)
            if stat is None:
                if item.row_id is not None:
                    mark_gone(self.journal, item.row_id, self.clock.now())
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
        if stat is None and key in self._subs.pending:
            self._tracker.forget(key)
            self._subs.gone(key)
            return
        self._tracker.note(
            key,
            item.kind,
            stat,
            now=self.clock.monotonic(),
            epoch=self.clock.now(),
            settle=policy.settle,
        )

    def _settle_due(self) -> None:
        now = self.clock.monotonic()
        for key in self._tracker.due(now):
            stat = self._stat(key[1])
            with self._lock:  # from the tracker to a lease in one step (see ``is_idle``)
                settled = self._tracker.check(key, stat, now=now)
                leased = settled is not None and self._leases.free(key, settled.row_id)
                if leased:
                    assert settled is not None
                    self._leases.path(key, settled, self._subs.pending.pop(key, None))
            if settled is None:
                if stat is None and key in self._subs.pending:
                    self._subs.gone(key)
                continue
            if not leased:
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
            self._subs.take_all()
        for row in self.journal.due(self.clock.now(), limit=max(100, 4 * self.concurrency)):
            if self._jobs.qsize() >= 4 * self.concurrency:
                break
            if row.inbox in self._policies:
                self._leases.row(row)

    # -- the workers -------------------------------------------------------------------------

    def _work(self) -> None:
        self.liveness.register()
        while not self._closed.is_set():
            try:
                job = self._jobs.get(timeout=IDLE_WAIT)
            except queue.Empty:
                self._touch()
                continue
            if not self._taking.is_set():
                self._leases.release(job)  # stopping: it stays in the inbox or the journal
                continue
            with self._lock:
                self._working += 1
            self.liveness.begin()
            try:
                self._run(job)
            except Exception as exc:
                log.exception("engine.job_failed", inbox=job.key[0], file=job.key[1])
                self._after_bug(job, exc)
            finally:
                self.liveness.end()
                self._leases.release(job)
                with self._idle:
                    self._working -= 1
                    self._idle.notify_all()
                self._touch()

    def _after_bug(self, job: Job, exc: Exception) -> None:
        """A job died of a bug: its row (if it has one yet) waits out a backoff."""
        try:
            if isinstance(job, RowJob):
                row_id: int | None = job.row.id
            else:
                found = row_for_path(self.journal, job.key[1])
                row_id = found.id if found is not None else job.settled.row_id
        except CreatioAttachError:
            return
        if row_id is not None:
            self.pipeline.internal_error(row_id, exc)

    def _run(self, job: Job) -> None:
        if isinstance(job, NewFile):
            self.pipeline.take(job.key[0], job.key[1], job.settled, job.submission)
            return
        row = self.journal.get(job.row.id)  # fresh: the intake's copy may be old
        if job.recover or row.state is State.UPLOADED:  # a crash, or a disposal tried again
            self.pipeline.recover(row)
        elif row.state in (State.READY, State.RETRY_WAIT, State.UNMATCHED):
            self.pipeline.process(row)
