"""When a file is complete: the settle tracker, pure bookkeeping over snapshots and a clock.

A file counts as complete on its close-after-write (``closed``) or rename-into-place
(``moved_in``) event, or, where neither comes (polling, NFS, a writer that keeps the file open),
when its size and mtime have not changed for the inbox's ``settle`` period. The tracker never
touches the file system: the caller stats the files it names (``due``) and reports what it saw
(``check``). Times are the caller's monotonic clock; the epoch clock is only used to compare
with a file's mtime (a file whose mtime is already older than ``settle`` has been quiet that
long, so a file present at start or seen by a rescan need not wait again).

Imports nothing from the project and no I/O library.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

Key = tuple[str, str]  # (inbox, absolute path as the watcher reports it)


@dataclass(frozen=True)
class Stat:
    """What the tracker compares: a file's size, mtime and inode."""

    size: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class Settled:
    """A complete file: its key, the stat it settled at, and its journal row if it has one."""

    key: Key
    stat: Stat
    row_id: int | None


@dataclass
class _Entry:
    stat: Stat
    due_at: float  # monotonic: when to look again
    settle: float
    row_id: int | None = None  # the journal row this file already has (changed while uploading)
    generation: int = 0


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    key: Key = field(compare=False)
    generation: int = field(compare=False)


class SettleTracker:
    """Files seen but not complete yet. Not thread-safe: one thread (the intake) owns it."""

    def __init__(self) -> None:
        self._entries: dict[Key, _Entry] = {}
        self._heap: list[_Due] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def _schedule(self, key: Key, entry: _Entry, at: float) -> None:
        entry.due_at = at
        entry.generation += 1
        self._seq += 1
        heapq.heappush(self._heap, _Due(at, self._seq, key, entry.generation))

    def note(
        self,
        key: Key,
        kind: str,
        stat: Stat | None,
        *,
        now: float,
        epoch: float,
        settle: float,
        row_id: int | None = None,
    ) -> None:
        """Record an event. ``stat`` None means the file is not there (any more)."""
        if kind == "deleted" or stat is None:
            self._entries.pop(key, None)
            return
        entry = self._entries.get(key)
        complete = kind in ("closed", "moved_in")
        quiet = epoch - stat.mtime_ns / 1e9 >= settle
        if entry is None:
            entry = _Entry(stat, now, settle, row_id)
            self._entries[key] = entry
            self._schedule(key, entry, now if complete or quiet else now + settle)
            return
        if row_id is not None:
            entry.row_id = row_id
        entry.settle = settle
        if stat != entry.stat:
            entry.stat = stat
            self._schedule(key, entry, now if complete else now + settle)
        elif complete or quiet:
            self._schedule(key, entry, now)

    def forget(self, key: Key) -> None:
        self._entries.pop(key, None)

    def next_due(self) -> float | None:
        """The monotonic time of the next look (None: nothing is waiting)."""
        while self._heap:
            head = self._heap[0]
            entry = self._entries.get(head.key)
            if entry is not None and entry.generation == head.generation:
                return head.at
            heapq.heappop(self._heap)
        return None

    def due(self, now: float, limit: int = 1000) -> list[Key]:
        """Files whose time has come: stat them and call ``check`` for each."""
        out: list[Key] = []
        while self._heap and len(out) < limit:
            head = self._heap[0]
            entry = self._entries.get(head.key)
            if entry is None or entry.generation != head.generation:
                heapq.heappop(self._heap)
                continue
            if head.at > now:
                break
            heapq.heappop(self._heap)
            out.append(head.key)
        return out

    def check(self, key: Key, stat: Stat | None, *, now: float) -> Settled | None:
        """After a ``due`` look: None while still settling (or gone); otherwise the file is
        complete and leaves the tracker."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if stat is None:
            del self._entries[key]
            return None
        if stat != entry.stat:
            entry.stat = stat
            self._schedule(key, entry, now + entry.settle)
            return None
        del self._entries[key]
        return Settled(key, stat, entry.row_id)

    def postpone(self, key: Key, *, now: float, delay: float) -> None:
        """Look again later (the file is being worked on right now)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._schedule(key, entry, now + delay)
