"""What the engine needs from the world, as small Protocols, and the inbox policy it applies.

The engine (``engine``, ``pipeline``) reaches the file system, the detector, Creatio and the
clock only through these Protocols; ``service`` passes the real adapters in, tests may pass
their own. ``InboxPolicy`` is one ``[[inbox]]`` as the engine applies it (built from the
config's ``InboxSettings`` by ``adapters.policy_from_settings``). Also the real clock
(``SystemClock``) and ``ObserverFanout``, which hands the engine's hooks to metrics/sd_notify.

Imports no I/O library (no requests, magic, sqlite3, watchdog, socket, subprocess); from the
project only ``routing`` and ``events``.
"""

from __future__ import annotations

import datetime
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from creatio_attach.events import DEFAULT_IGNORE
from creatio_attach.routing import Rule, expand_folder_template

log = structlog.get_logger(component="engine")

After = Literal["archive", "delete", "keep"]


# ---------------------------------------------------------------------------------------------
# the adapters


class Clock(Protocol):
    def now(self) -> float:
        """Epoch seconds (journal times, file ages)."""
        ...

    def monotonic(self) -> float:
        """Seconds for intervals (settling, durations)."""
        ...


class FileFacts(Protocol):
    """A file's snapshot: ``detect.Snapshot`` fits."""

    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def inode(self) -> int: ...
    @property
    def device(self) -> int: ...


class Detection(Protocol):
    """What the detector found: ``detect.Detected`` fits."""

    @property
    def mime(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str | None: ...


class Inspector(Protocol):
    """Looks at local files (``detect``). Raises FileGone / FileUnreadable / FileRefused.

    ``detect`` leaves the SHA-256 of a large file to its upload (None); ``sha256`` hashes a
    file when it is needed before all the same.
    """

    def snapshot(self, path: Path) -> FileFacts: ...
    def detect(self, path: Path) -> Detection: ...
    def sha256(self, path: Path) -> str: ...
    def record_name(self, file_name: str, detected: Detection) -> str: ...
    def mime_matches(self, mime: str, patterns: tuple[str, ...]) -> bool: ...


class Folders(Protocol):
    """Moves files between the inbox's folders (``dispose.LocalFolders``)."""

    def read_sidecar(self, path: Path) -> str | None: ...
    def exists(self, path: Path) -> bool: ...
    def move(self, src: Path, dest: Path) -> Path: ...
    def delete(self, path: Path) -> None: ...
    def write_json(self, path: Path, doc: Mapping[str, Any]) -> Path: ...
    def names_for(self, dest: Path, limit: int) -> list[Path]:
        """``dest`` and the first names ``move`` tries when it is taken (``dest (1)``...)."""
        ...


@dataclass(frozen=True)
class Uploaded:
    record_id: str
    bytes: int
    sha256: str  # of the bytes sent


class Creatio(Protocol):
    """The Creatio client as the engine uses it; raises the ``errors.Creatio*`` tree."""

    def find_parent(self, schema: str, where: Mapping[str, str | int]) -> str: ...
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
        """Create (or complete) the record and send the file; ``progress(n)`` is called as
        each block of ``n`` bytes goes out (the engine's sign of life during a long upload);
        ``on_record(id)`` once the record exists, before the content (its Id may be one
        Creatio chose); ``may_exist``: an earlier attempt may have made the record already."""
        ...

    def record_size(self, file_object: str, record_id: str) -> int | None:
        """The stored size of an attachment record, None when it does not exist."""
        ...

    def delete_record(self, file_object: str, record_id: str) -> None: ...


@dataclass(frozen=True)
class MatchRequest:
    """What a ``ParentMatcher`` (call recordings) gets for one file."""

    inbox: str
    path: str  # relative to the inbox folder
    fields: Mapping[str, str]  # path fields, date/time and the pattern's named groups
    metadata: Mapping[str, str]  # from ``creatio-attach submit --set``
    mime: str
    found_at: float  # epoch seconds


@dataclass(frozen=True)
class ParentMatch:
    file_object: str
    parent_schema: str
    parent_id: str
    matched_by: str  # the step that matched, e.g. "call_by_id"
    name: str | None = None  # the record Name, None: the inbox's template or the file name


class ParentMatcher(Protocol):
    """Finds the parent of a file of a preset inbox (``recordings``). Raises ParentNotFound
    (its message says what was tried), ParentAmbiguous or CreatioUnavailable."""

    def match(self, request: MatchRequest) -> ParentMatch: ...


class EngineObserver:
    """Hooks for metrics and sd_notify; every method is a no-op here. Called from worker
    threads: keep them quick and thread-safe."""

    def file_done(self, inbox: str, *, bytes: int, seconds: float) -> None:
        """A file was uploaded (and verified)."""

    def file_failed(self, inbox: str, *, reason: str) -> None:
        """A file went to the failed folder."""

    def file_retry(self, inbox: str, *, reason: str) -> None:
        """A file waits for another try (retry_wait or unmatched)."""

    def creatio_contact(self, ok: bool) -> None:
        """A call to Creatio succeeded (True) or found it unreachable (False)."""

    def progress(self) -> None:
        """A worker finished a step (the watchdog's sign of life)."""


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ObserverFanout(EngineObserver):
    """Fans every hook out to several observers (one failing observer never stops a file),
    telling the engine first: ``touch`` on any progress, ``contact`` on a Creatio answer."""

    def __init__(
        self,
        observers: Sequence[EngineObserver],
        *,
        touch: Callable[[], None],
        contact: Callable[[bool], None],
    ) -> None:
        self._observers = list(observers)
        self._touch = touch
        self._contact = contact

    def _each(self, name: str, *args: object, **kwargs: object) -> None:
        for o in self._observers:
            try:
                getattr(o, name)(*args, **kwargs)
            except Exception:
                log.exception("observer.failed", hook=name)

    def file_done(self, inbox: str, *, bytes: int, seconds: float) -> None:
        self._touch()
        self._each("file_done", inbox, bytes=bytes, seconds=seconds)

    def file_failed(self, inbox: str, *, reason: str) -> None:
        self._touch()
        self._each("file_failed", inbox, reason=reason)

    def file_retry(self, inbox: str, *, reason: str) -> None:
        self._touch()
        self._each("file_retry", inbox, reason=reason)

    def creatio_contact(self, ok: bool) -> None:
        self._contact(ok)
        self._each("creatio_contact", ok)

    def progress(self) -> None:
        self._touch()
        self._each("progress")


# ---------------------------------------------------------------------------------------------
# the policy of one inbox


def local_date(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d")  # local time, on purpose


def local_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%H-%M-%S")  # local time, on purpose


@dataclass(frozen=True)
class InboxPolicy:
    """One inbox as the engine applies it (values parsed: seconds, bytes, compiled regex)."""

    name: str
    folder: Path
    rule: Rule | None  # pattern, entity, parent and Name template; None for call recordings
    preset: str | None = None  # call recordings: the parent comes from a ParentMatcher
    pattern: re.Pattern[str] | None = None  # call recordings (the rule has its own)
    name_template: str | None = None  # call recordings (the rule has its own)
    after: After = "archive"
    recursive: bool = True
    archive_dir: str = "{folder}/.archive/{date}"
    failed_dir: str = "{folder}/.failed"
    unmatched_dir: str = "{folder}/.unmatched"
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    types: tuple[str, ...] = ()
    deny_types: tuple[str, ...] = ()
    max_size: int | None = None
    min_size: int = 1
    settle: float = 2.0
    watch: Literal["auto", "inotify", "poll"] = "auto"
    poll_interval: float = 2.0
    duplicates: Literal["skip", "upload"] = "skip"
    unmatched_every: float = 300.0
    unmatched_for: float = 86400.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(os.path.normpath(Path.cwd() / self.folder)))

    def folder_for(self, template: str, epoch: float) -> Path:
        """A folder template (``{folder}/.archive/{date}``) for the local date of ``epoch``."""
        return Path(
            expand_folder_template(template, folder=str(self.folder), date=local_date(epoch))
        )

    def relative(self, path: Path | str) -> str | None:
        """``path`` relative to the inbox folder with ``/`` separators; None when outside."""
        rel = os.path.relpath(path, self.folder)
        if rel == "." or rel.startswith(".." + os.sep) or rel == "..":
            return None
        return rel.replace(os.sep, "/")
