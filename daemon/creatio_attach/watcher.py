"""The watchdog adapter: watches the inboxes, filters events and hands them to a sink. Nothing else.

It does not decide when a file is complete (the engine settles files); it reports what it saw
as ``FileEvent``s (``events.py``) through ``sink``, which is expected to be a queue put: one
watchdog thread dispatches every event of an observer, so slow work there would stall all
inboxes (see watchdog ``observers/api.py``; maestral's ``FSEventHandler`` does the same).

The only module that imports watchdog. Imports only ``errors``, ``events`` and ``watch_mode``
from the project; never ``engine``, ``service`` or ``cli``. Which mode each inbox gets and
inotify's limits (errno ENOSPC/EMFILE become a ``ConfigError`` naming the sysctl to raise) are
decided in ``watch_mode``; this module applies them.

Modes: ``inotify`` (watchdog's inotify observer, one shared instance for every inotify inbox,
with full move events so a rename into the inbox is seen as one, and each folder's watch added
once: see ``_WatchGroup``) or ``poll`` (a ``PollingObserver`` per inbox, comparing directory
snapshots every ``poll_interval``).
``auto`` picks ``poll`` where inotify sees nothing: NFS, CIFS/SMB, FUSE and other network or
cluster file systems, detected from ``/proc/self/mountinfo`` (``watch_mode.choose_mode``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog
from watchdog.events import (
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyFullEmitter, InotifyObserver, InotifyWatchGroup
from watchdog.observers.inotify_c import WatchDescriptor
from watchdog.observers.polling import PollingObserver
from watchdog.utils import BaseThread

from creatio_attach.errors import ConfigError
from creatio_attach.events import (
    DEFAULT_IGNORE,
    EventKind,
    FileEvent,
    WatchSpec,
    collapse,
    fstype_at,
    in_scope,
    is_candidate,
    mode_for_fstype,
    parse_mountinfo,
    walk_candidates,
)
from creatio_attach.watch_mode import (
    MAX_USER_WATCHES,
    check_watch_limit,
    choose_mode,
    inotify_limit_error,
    max_user_watches,
    say_limit_unknown,
)

__all__ = [
    "DEFAULT_IGNORE",
    "FileEvent",
    "InboxWatcher",
    "WatchSpec",
    "collapse",
    "fstype_at",
    "is_candidate",
    "mode_for_fstype",
    "parse_mountinfo",
]

log = structlog.get_logger(component="watcher")

#: a scan reports its progress (``ScanProgress``) after every this many files
SCAN_PROGRESS_EVERY = 500
#: ``progress(inbox, files found so far)``
ScanProgress = Callable[[str, int], None]

#: what a rename into the inbox, a close-after-write etc. become; everything else is dropped
_WATCHED_EVENTS: list[type[FileSystemEvent]] = [
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,  # touch/chmod: e.g. a permission fix on an unreadable file
    FileMovedEvent,
    FileDeletedEvent,
]

# ---------------------------------------------------------------------------------------------
# the handler and the rescan thread


class _InboxHandler(FileSystemEventHandler):
    """Maps watchdog events of one inbox to ``FileEvent``s; filters, emits, nothing else."""

    def __init__(self, spec: WatchSpec, emit: Callable[[WatchSpec, str, EventKind], None]):
        self.spec = spec
        self._emit = emit
        # The watch is on the resolved folder (inotify on a symlink would watch the link);
        # events are reported under the folder as configured, like the rescans report them.
        self._real = spec.real_folder
        self._shown = str(spec.folder)

    def _configured(self, path: bytes | str) -> str:
        text = os.fsdecode(path)
        moved = self._real != self._shown and text.startswith(self._real)
        if moved and (len(text) == len(self._real) or text[len(self._real)] == os.sep):
            return self._shown + text[len(self._real) :]
        return text

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self._dispatch(event)
        except Exception:
            # the observer thread serves every inbox: it must outlive a bad event or sink
            log.exception("watch event dropped", inbox=self.spec.inbox, watch_event=repr(event))

    def _dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return  # files inside a moved or created folder get their own events
        spec, src = self.spec, self._configured(event.src_path)
        if isinstance(event, FileMovedEvent):
            dest = self._configured(event.dest_path)
            # "" is the unknown side of a move from/to outside the watched tree
            if src and in_scope(spec, src):
                self._emit(spec, src, "deleted")
            if dest and is_candidate(spec, dest):
                self._emit(spec, dest, "moved_in")
        elif isinstance(event, FileDeletedEvent):
            if in_scope(spec, src):
                self._emit(spec, src, "deleted")
        elif isinstance(event, FileClosedEvent):
            if is_candidate(spec, src):
                self._emit(spec, src, "closed")
        elif isinstance(
            event, FileCreatedEvent | FileModifiedEvent | FileAttribEvent
        ) and is_candidate(spec, src):
            self._emit(spec, src, "changed")
        # opened, closed-without-write: nothing changed


class _Rescanner(BaseThread):
    """Rescans each inbox every ``rescan_every`` seconds (real monotonic time) until stopped."""

    def __init__(self, every: dict[str, float], rescan: Callable[[str, threading.Event], int]):
        super().__init__()
        self.name = "creatio-attach-rescan"
        self._every = every
        self._rescan = rescan

    def run(self) -> None:
        due = {inbox: time.monotonic() + every for inbox, every in self._every.items()}
        while True:
            wait = max(0.0, min(due.values()) - time.monotonic())
            if self.stopped_event.wait(wait):
                return
            for inbox in sorted(due, key=due.__getitem__):
                if self.stopped_event.is_set():
                    return
                if due[inbox] > time.monotonic():
                    continue
                try:
                    self._rescan(inbox, self.stopped_event)
                except Exception:
                    log.exception("rescan failed", inbox=inbox)
                due[inbox] = time.monotonic() + self._every[inbox]


class _WatchGroup(InotifyWatchGroup):
    """watchdog's recursive inotify watch group, adding each folder's watch once.

    watchdog alone may add a new folder's watch twice: the parent's ``IN_CREATE`` makes it
    watch the new folder and walk it, watching every folder already below it; a child made
    after the parent got its watch but before that walk listed it also has its own
    ``IN_CREATE`` queued, which adds it again. That second ``add_callback`` on the same watch
    warns ``RuntimeWarning: Callback with id ... already exists for watch`` (``mkdir -p
    2024/11/28`` by a PBX, or our own ``.archive/2024-11-28`` folders). A folder is skipped here
    when this group already watches that very folder (the same device and inode under the same
    watch); a new folder of the same name (one deleted and made again) is a new inode and is
    watched as before.

    The archive, failed and unmatched folders inside an inbox stay watched, although their
    events are dropped (``events.in_scope``): watchdog holds every ``IN_MOVED_FROM`` for half
    a second to pair it with its ``IN_MOVED_TO``, in a FIFO, so an archive move whose
    destination were not watched would hold back every later event of the inbox (a new file
    included) for up to 0.5 s. Watched, the pair meets at once.
    """

    def __post_init__(self) -> None:
        #: watch descriptor -> (st_dev, st_ino) of the folder it was added for
        self._folders: dict[WatchDescriptor, tuple[int, int]] = {}
        super().__post_init__()  # adds the watches: needs ``_folders``

    def _add_callback(self, path: bytes) -> None:
        try:
            # watchdog's paths are bytes, which pathlib does not take
            st = os.stat(path, follow_symlinks=self.follow_symlink)  # noqa: PTH116
        except OSError:  # gone or unreadable: watchdog decides (it raises for the root only)
            super()._add_callback(path)
            return
        folder = (st.st_dev, st.st_ino)
        wd = self._active_callbacks_by_path.get(path)
        if wd is not None and self._folders.get(wd) == folder:
            return  # already watched: the walk after its parent's IN_CREATE added it
        super()._add_callback(path)
        wd = self._active_callbacks_by_path.get(path)
        if wd is not None:
            self._folders[wd] = folder

    def _remove_watch_internally(self, wd: WatchDescriptor) -> None:
        self._folders.pop(wd, None)
        super()._remove_watch_internally(wd)


class _FullEmitter(InotifyFullEmitter):
    """watchdog's inotify emitter with full move events, over a ``_WatchGroup``."""

    def on_thread_start(self) -> None:
        # watchdog's own ``on_thread_start``, with the group above
        self._inotify = _WatchGroup(
            self._inotify_fd,
            os.fsencode(self.watch.path),
            is_recursive=self.watch.is_recursive,
            event_mask=self.get_event_mask_from_filter(),
            follow_symlink=self.watch.follow_symlink,
        )


class _InotifyObserver(InotifyObserver):
    """One inotify instance for every inotify inbox, with full move events (a rename into the
    inbox is one event) and each folder watched once (``_WatchGroup``)."""

    def __init__(self) -> None:
        super().__init__(generate_full_events=True)
        self._emitter_class = _FullEmitter


# ---------------------------------------------------------------------------------------------
# the watcher


class InboxWatcher:
    """Watches inboxes and reports ``FileEvent``s to ``sink`` (from watchdog's threads and the
    rescan thread, so ``sink`` must be thread-safe and quick: a ``queue.Queue.put``)."""

    def __init__(
        self,
        specs: Sequence[WatchSpec],
        sink: Callable[[FileEvent], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        limit_file: Path = MAX_USER_WATCHES,
    ) -> None:
        names = [s.inbox for s in specs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError("inbox names must be unique", problems=[f"inbox {n}" for n in twice])
        self._specs = {s.inbox: s for s in specs}
        self._sink = sink
        self._clock = clock
        self._limit_file = limit_file
        #: inbox -> "inotify" | "poll", filled by start()
        self.modes: dict[str, str] = {}
        self._observers: list[BaseObserver] = []
        self._rescanner: _Rescanner | None = None
        self._scan_lock = threading.Lock()
        self._running = False

    # -- events -------------------------------------------------------------------------------

    def _emit(self, spec: WatchSpec, path: str, kind: EventKind) -> None:
        self._sink(FileEvent(spec.inbox, Path(path), kind, self._clock()))

    # -- life cycle ---------------------------------------------------------------------------

    def start(
        self, progress: ScanProgress | None = None, stop: threading.Event | None = None
    ) -> None:
        """Watch every inbox, then report the files already present as ``found``.

        Observers start first, so a file dropped during the initial scan is not missed (it may
        be reported twice; the engine settles and dedupes). Raises ``ConfigError`` when an inbox
        folder is missing or an inotify limit is hit; nothing is left running then.
        ``progress(inbox, found)`` is called every ``SCAN_PROGRESS_EVERY`` files of that scan;
        once ``stop`` is set the scan ends early (the rest is found by the next one).
        """
        if self._running:
            raise RuntimeError("the watcher is already running")
        for spec in self._specs.values():
            if not spec.folder.is_dir():
                raise ConfigError(
                    "the inbox folder does not exist or is not a folder",
                    path=str(spec.folder),
                    hint=f"create it, or fix the folder of inbox {spec.inbox!r}",
                )
        modes = {}
        for spec in self._specs.values():
            mode, reason = choose_mode(spec.folder, spec.mode)
            modes[spec.inbox] = mode
            log.info(
                "inbox watch mode",
                inbox=spec.inbox,
                folder=str(spec.folder),
                mode=mode,
                reason=reason,
                poll_interval=spec.poll_interval if mode == "poll" else None,
            )
        inotify_specs = [s for s in self._specs.values() if modes[s.inbox] == "inotify"]
        if inotify_specs:
            limit = max_user_watches(self._limit_file)
            if limit is None:
                say_limit_unknown(self._limit_file, inotify_specs)
            else:
                check_watch_limit(inotify_specs, limit)
        try:
            self._start_observers(modes)
        except BaseException:
            self._stop_observers(5.0)
            raise
        self.modes = modes
        self._running = True
        try:
            self.rescan(progress=progress, stop=stop)
        except BaseException:  # the sink failed: leave nothing running
            self.stop()
            raise
        every = {s.inbox: s.rescan_every for s in self._specs.values() if s.rescan_every > 0}
        if every:
            self._rescanner = _Rescanner(every, self._rescan_one)
            self._rescanner.start()

    def _start_observers(self, modes: dict[str, str]) -> None:
        inotify_specs = [s for s in self._specs.values() if modes[s.inbox] == "inotify"]
        if inotify_specs:
            folder = inotify_specs[0].folder
            try:
                observer: BaseObserver = _InotifyObserver()
                observer.name = "creatio-attach-inotify"
                self._observers.append(observer)
                for spec in inotify_specs:
                    folder = spec.folder
                    observer.schedule(
                        _InboxHandler(spec, self._emit),
                        spec.real_folder,
                        recursive=spec.recursive,
                        event_filter=_WATCHED_EVENTS,
                    )
                observer.start()  # adds the inotify watches, in this thread
            except OSError as e:
                raise (inotify_limit_error(e, folder) or self._unwatchable(e, folder)) from e
        for spec in self._specs.values():
            if modes[spec.inbox] != "poll":
                continue
            poller = PollingObserver(timeout=spec.poll_interval)
            poller.name = f"creatio-attach-poll-{spec.inbox}"
            self._observers.append(poller)
            poller.schedule(
                _InboxHandler(spec, self._emit),
                spec.real_folder,
                recursive=spec.recursive,
                event_filter=_WATCHED_EVENTS,
            )
            try:
                poller.start()  # takes the first snapshot, in this thread
            except OSError as e:
                raise self._unwatchable(e, spec.folder) from e

    @staticmethod
    def _unwatchable(e: OSError, folder: Path) -> ConfigError:
        return ConfigError(
            f"cannot watch the inbox folder: {e.strerror or e}",
            path=str(folder),
            hint="check that the folder exists and the service user may read it",
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the observers and the rescan thread and wait up to ``timeout`` for them."""
        deadline = time.monotonic() + timeout
        rescanner, self._rescanner = self._rescanner, None
        if rescanner is not None:
            rescanner.stop()
        self._stop_observers(timeout)
        if rescanner is not None:
            rescanner.join(max(0.0, deadline - time.monotonic()))
        self._running = False

    def _stop_observers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        observers, self._observers = self._observers, []
        for observer in observers:
            observer.stop()  # also stops its emitters (and the inotify reader)
        for observer in observers:
            if observer.is_alive():
                observer.join(max(0.0, deadline - time.monotonic()))

    def is_alive(self) -> bool:
        """True while every observer, its emitters and the rescan thread run (an emitter stops
        when its inbox folder is deleted)."""
        if not self._running:
            return False
        for observer in self._observers:
            if not observer.is_alive() or not all(e.is_alive() for e in list(observer.emitters)):
                return False
        return self._rescanner is None or self._rescanner.is_alive()

    # -- rescans ------------------------------------------------------------------------------

    def rescan(
        self,
        inbox: str | None = None,
        progress: ScanProgress | None = None,
        stop: threading.Event | None = None,
    ) -> int:
        """Report every candidate present as ``found``; returns how many. Works while stopped.
        ``progress(inbox, found)`` is called every ``SCAN_PROGRESS_EVERY`` files; the scan
        ends early once ``stop`` is set."""
        if inbox is not None and inbox not in self._specs:
            raise ValueError(f"unknown inbox {inbox!r}")
        names = [inbox] if inbox is not None else list(self._specs)
        return sum(self._rescan_one(name, stop, progress) for name in names)

    def _rescan_one(
        self, inbox: str, stop: threading.Event | None, progress: ScanProgress | None = None
    ) -> int:
        spec = self._specs[inbox]
        started = time.monotonic()
        count = 0
        with self._scan_lock:
            try:
                for path in walk_candidates(spec, stop):
                    self._emit(spec, str(path), "found")
                    count += 1
                    if progress is not None and count % SCAN_PROGRESS_EVERY == 0:
                        progress(inbox, count)
            except OSError as e:
                log.warning("inbox folder cannot be read", inbox=inbox, error=str(e))
        log.debug(
            "rescan done", inbox=inbox, files=count, duration_ms=_ms(time.monotonic() - started)
        )
        return count


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
