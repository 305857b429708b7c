"""The engine's bookkeeping between its threads: jobs, leases and worker liveness.

* the jobs the intake queues for the workers (``NewFile``, ``RowJob``) and the requests to
  settle a file again (``Resettle``);
* ``Leases``: which files (inbox + path) and journal rows a job holds, so the intake never
  queues a file or row twice and no two workers touch the same file;
* ``Liveness``: per worker, since when it is inside a job and when it last showed life (a
  step done, a Creatio call returned, bytes sent); a worker busy without a sign of life for
  longer than ``stuck_after`` is stuck, and the systemd watchdog stops (``service.alive``);
* ``WatchedCreatio``: the ``ports.Creatio`` the pipeline gets, which reports those signs of
  life (every call that returns, every block of an upload that moves);
* ``Submissions``: ``creatio-attach submit`` signals as the intake takes them;
* ``EngineStatus``, what the service reads for STATUS, the watchdog and metrics, and the few
  journal look-ups the intake makes on its own (``row_for_path``, ``drain_backlog``,
  ``mark_gone``).

Policy only, like ``engine``: imports no I/O library (no requests, magic, sqlite3, watchdog,
socket, subprocess); from the project only ``errors``, ``ports``, ``settle`` and ``journal``'s
rows and states (the ``Journal`` itself comes in from the engine).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from creatio_attach.errors import CreatioAttachError
from creatio_attach.journal.states import State
from creatio_attach.outcomes import file_fields
from creatio_attach.ports import Clock, Creatio, InboxPolicy, Uploaded
from creatio_attach.settle import Key, Settled, SettleTracker, Stat

if TYPE_CHECKING:
    import queue

    from creatio_attach.journal import Journal
    from creatio_attach.journal.rows import FileRow

log = structlog.get_logger(component="engine")


@dataclass(frozen=True)
class Resettle:
    """Settle this file again (it changed, or its sidecar waits for it)."""

    inbox: str
    path: str
    row_id: int | None  # None: a file without a row yet (a sidecar waiting for its file)


@dataclass(frozen=True)
class NewFile:
    """A settled file for a worker to take."""

    key: Key
    settled: Settled
    submission: int | None


@dataclass(frozen=True)
class RowJob:
    """A journal row that is due (a retry, an unmatched file, a crash to recover)."""

    key: Key
    row: FileRow
    recover: bool = False


Job = NewFile | RowJob


class Leases:
    """The files and rows held by queued or running jobs. Thread-safe (one lock, shared with
    the caller so that "nothing leased" can be read together with other state)."""

    def __init__(self, lock: threading.RLock, jobs: queue.Queue[Job]) -> None:
        self._lock = lock
        self._jobs = jobs
        self._paths: set[Key] = set()
        self._rows: set[int] = set()

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._paths)

    def has_path(self, key: Key) -> bool:
        with self._lock:
            return key in self._paths

    def has_row(self, row_id: int) -> bool:
        with self._lock:
            return row_id in self._rows

    def free(self, key: Key, row_id: int | None) -> bool:
        """Neither the file nor its row is held."""
        with self._lock:
            return key not in self._paths and (row_id is None or row_id not in self._rows)

    def row(self, row: FileRow, *, recover: bool = False) -> bool:
        """Queue a job for ``row`` unless its row or file is held; True when queued."""
        key = (row.inbox, row.location)
        with self._lock:
            if row.id in self._rows or key in self._paths:
                return False
            self._rows.add(row.id)
            self._paths.add(key)
            self._jobs.put(RowJob(key, row, recover))
        return True

    def path(self, key: Key, settled: Settled, submission: int | None) -> bool:
        """Queue a job for a settled file unless it (or its row) is held; True when queued."""
        with self._lock:
            if key in self._paths or (settled.row_id is not None and settled.row_id in self._rows):
                return False
            self._paths.add(key)
            if settled.row_id is not None:
                self._rows.add(settled.row_id)
            self._jobs.put(NewFile(key, settled, submission))
        return True

    def release(self, job: Job) -> None:
        with self._lock:
            self._paths.discard(job.key)
            if isinstance(job, RowJob):
                self._rows.discard(job.row.id)
            elif job.settled.row_id is not None:
                self._rows.discard(job.settled.row_id)


@dataclass
class _Worker:
    name: str
    busy_since: float | None = None  # monotonic; None while idle
    last_sign: float = 0.0  # monotonic: the last sign of life inside the current job


@dataclass(frozen=True)
class StuckWorker:
    name: str
    busy_for: float  # seconds inside the current job
    quiet_for: float  # seconds since its last sign of life


class Liveness:
    """Per worker thread: busy since when, and the last sign of life in its job.

    A worker is *stuck* when it has been inside one job for longer than ``stuck_after``
    seconds without any sign of life. Signs of life are cheap (a dict lookup and a float
    store), so the upload's per-block progress callback may give one for every block.
    """

    def __init__(self, monotonic: Callable[[], float], stuck_after: float) -> None:
        self._monotonic = monotonic
        self.stuck_after = stuck_after
        self._workers: dict[int, _Worker] = {}
        self._lock = threading.Lock()

    def register(self) -> None:
        """The calling thread is a worker."""
        with self._lock:
            self._workers[threading.get_ident()] = _Worker(threading.current_thread().name)

    def begin(self) -> None:
        """The calling worker starts a job."""
        worker = self._workers.get(threading.get_ident())
        if worker is not None:
            now = self._monotonic()
            worker.last_sign = now
            worker.busy_since = now

    def sign_of_life(self, *_: object) -> None:
        """The calling worker made progress (takes and ignores a byte count, so it can be an
        upload's ``progress`` callback). A no-op on any other thread."""
        worker = self._workers.get(threading.get_ident())
        if worker is not None:
            worker.last_sign = self._monotonic()

    def end(self) -> None:
        """The calling worker finished its job."""
        worker = self._workers.get(threading.get_ident())
        if worker is not None:
            worker.busy_since = None

    def stuck(self) -> list[StuckWorker]:
        """The workers stuck right now (empty when all are idle or making progress)."""
        now = self._monotonic()
        with self._lock:
            workers = list(self._workers.values())
        out = []
        for w in workers:
            since = w.busy_since
            if since is None:
                continue
            quiet = now - max(since, w.last_sign)
            if quiet > self.stuck_after:
                out.append(StuckWorker(w.name, now - since, quiet))
        return out

    def busy(self) -> dict[str, float]:
        """Seconds each busy worker has been inside its current job."""
        now = self._monotonic()
        with self._lock:
            workers = list(self._workers.values())
        return {w.name: now - w.busy_since for w in workers if w.busy_since is not None}


class WatchedCreatio:
    """A ``ports.Creatio`` that gives the calling worker a sign of life whenever a call to
    Creatio returns or fails, and for every block an upload sends."""

    def __init__(self, inner: Creatio, liveness: Liveness) -> None:
        self.inner = inner
        self._liveness = liveness

    def find_parent(self, schema: str, where: Mapping[str, str | int]) -> str:
        try:
            return self.inner.find_parent(schema, where)
        finally:
            self._liveness.sign_of_life()

    def upload(
        self,
        path: Path,
        *,
        file_object: str,
        parent_schema: str,
        parent_id: str,
        name: str,
        mime: str | None,
        record_id: str,
        progress: Callable[[int], None] | None = None,
        on_record: Callable[[str], None] | None = None,
        may_exist: bool = False,
    ) -> Uploaded:
        sign = self._liveness.sign_of_life

        def moved(n: int) -> None:
            sign()
            if progress is not None:
                progress(n)

        try:
            return self.inner.upload(
                path,
                file_object=file_object,
                parent_schema=parent_schema,
                parent_id=parent_id,
                name=name,
                mime=mime,
                record_id=record_id,
                progress=moved,
                on_record=on_record,
                may_exist=may_exist,
            )
        finally:
            sign()

    def record_size(self, file_object: str, record_id: str) -> int | None:
        try:
            return self.inner.record_size(file_object, record_id)
        finally:
            self._liveness.sign_of_life()

    def delete_record(self, file_object: str, record_id: str) -> None:
        try:
            self.inner.delete_record(file_object, record_id)
        finally:
            self._liveness.sign_of_life()


@dataclass(frozen=True)
class EngineStatus:
    """A look at the engine for sd_notify STATUS, the watchdog and metrics."""

    settling: int  # files waiting to be complete
    events_waiting: int  # watcher events the intake has not looked at yet
    queued: int  # jobs waiting for a worker
    working: int  # jobs a worker is running
    workers_alive: bool
    intake_alive: bool
    last_progress: float  # monotonic time a thread last finished something
    intake_pass: float  # monotonic time the intake last finished a pass over its work
    stuck: tuple[StuckWorker, ...]  # workers inside one job without a sign of life too long
    creatio_down_since: float | None  # epoch; None while Creatio answers


# ---------------------------------------------------------------------------------------------
# journal look-ups of the intake


def row_for_path(journal: Journal, path: str) -> FileRow | None:
    """The journal's row of the file at ``path``: one still on its way, or one just done."""
    active = (State.SEEN, State.READY, State.RETRY_WAIT, State.UNMATCHED, State.UPLOADING)
    for row in journal.by_state(*active, State.UPLOADED):
        if path in (row.source_path, row.location):
            return row
    for row in journal.recent(50):
        if row.source_path == path:
            return row
    return None


def drain_backlog(journal: Journal, now: float) -> None:
    """Creatio answers again: files waiting out a backoff for it are due now."""
    for row in journal.by_state(State.RETRY_WAIT):
        if row.last_error and row.last_error.reason in ("creatio_unavailable", "creatio_auth"):
            try:
                journal.requeue(row.id, now=now)
            except CreatioAttachError:
                continue  # a worker moved it meanwhile


def mark_gone(journal: Journal, row_id: int, now: float) -> None:
    """A file to settle again is gone: its row ends as gone."""
    try:
        row = journal.get(row_id)
        if row.state is State.SEEN:
            gone = journal.mark_gone(row_id, now=now)
            log.info("file.gone", **file_fields(gone, now))
    except CreatioAttachError:
        log.exception("journal.error", row=row_id)


class Submissions:
    """``creatio-attach submit`` signals, taken by the intake thread (which owns this object
    and the tracker). ``pending`` maps a submitted file, settled but not yet taken by a worker,
    to its submission."""

    def __init__(
        self,
        journal: Journal,
        leases: Leases,
        clock: Clock,
        policies: Callable[[], Mapping[str, InboxPolicy]],
        resettle: Callable[[str, str, int | None], None],
        stat: Callable[[str], Stat | None],
        tracker: SettleTracker,
    ) -> None:
        self.journal = journal
        self.pending: dict[Key, int] = {}
        self._leases = leases
        self._clock = clock
        self._policies = policies
        self._resettle = resettle
        self._stat = stat
        self._tracker = tracker

    def take_all(self) -> None:
        for sub in self.journal.pending_submissions():
            self.take(sub.id, sub.inbox, sub.path)

    def take(self, sub_id: int, inbox: str | None, path: str) -> None:
        """``creatio-attach submit``: the file is complete now, and its metadata belongs in its
        row. A file the journal knows gets the metadata at once (an unmatched one is tried
        again at once); a new one is settled now and the worker that takes it merges the
        metadata, so a crash in between loses nothing (the submission stays pending)."""
        if sub_id in self.pending.values():
            return
        policies = self._policies()
        policy = policies.get(inbox) if inbox else None
        if policy is None:
            policy = next((p for p in policies.values() if p.relative(path)), None)
        key = (policy.name if policy else inbox or "", path)
        if self._leases.has_path(key):
            return  # a worker has it right now: look again at the next poll
        now = self._clock.now()
        row = row_for_path(self.journal, path)
        if row is not None:
            self.journal.take_submission(sub_id, now=now, file_id=row.id)
            leased = self._leases.has_row(row.id)
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
        self.pending[key] = sub_id
        self._tracker.note(
            key, "closed", stat, now=self._clock.monotonic(), epoch=0.0, settle=policy.settle
        )

    def gone(self, key: Key) -> None:
        """A submitted file left the tracker without being taken by a worker here."""
        sub_id = self.pending.pop(key, None)
        if sub_id is None:
            return
        row = row_for_path(self.journal, key[1])
        self.journal.take_submission(sub_id, now=self._clock.now(), file_id=row.id if row else None)
