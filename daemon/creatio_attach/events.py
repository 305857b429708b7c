"""What counts as an inbox file, and which file events matter: the watcher's watchdog-free half.

Holds the value types the engine consumes (``WatchSpec``, ``FileEvent``), the candidate filter
(``in_scope``, ``is_candidate``), the walk that finds candidates already present
(``walk_candidates``), ``collapse``, which keeps one event per path, and the pure choice of a
watch mode for a file system type (``parse_mountinfo``, ``fstype_at``, ``mode_for_fstype``).
It never opens a file (only ``lstat``/``scandir``/``realpath``), so a FIFO cannot block it.

Must not import watchdog (only ``watcher.py`` does) nor any project module but ``errors``: the
engine imports its types from here without loading watchdog.

Rules, documented once (the README repeats them):

* A candidate is a *regular file* (``lstat``: not a directory, FIFO, socket or device) whose
  path lies inside the inbox folder, outside every ``excluded`` folder, with no path component
  (folder or file name, from the inbox down) matching an ``ignore`` glob, and, when
  ``recursive`` is false, directly in the inbox folder.
* Globs match case-insensitively (Windows shares write ``THUMBS.DB`` and ``X.TMP`` too).
* Symlinks are never candidates, wherever they point: a link is not the file. A link to a file
  inside the inbox is refused because the target is found under its own name (taking both would
  upload the file twice and archive a link); one pointing out of the inbox would leak a file
  nobody dropped. Symlinked folders are not descended into, and a path whose real location
  (after resolving the folders on the way) is outside the inbox or in an excluded folder is
  not a candidate.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from creatio_attach.errors import ConfigError

EventKind = Literal["closed", "moved_in", "changed", "deleted", "found"]
WatchMode = Literal["auto", "inotify", "poll"]

#: Office lock files, temporary and partial downloads, dotfiles, Windows and macOS litter
DEFAULT_IGNORE: tuple[str, ...] = (
    "~$*",
    "*.tmp",
    "*.part",
    "*.crdownload",
    ".*",
    "Thumbs.db",
    "desktop.ini",
    ".DS_Store",
)


@dataclass(frozen=True)
class WatchSpec:
    """One inbox as the watcher sees it. Paths are made absolute (not resolved) on creation.

    ``excluded`` are the archive, failed and unmatched folders: never input, inside the inbox or
    not. Pass concrete folders: for ``archive_dir = "{folder}/.archive/{date}"`` pass
    ``{folder}/.archive`` (the part before the first template field) so every day is excluded.
    ``rescan_every`` <= 0 turns the periodic rescan off for this inbox.
    """

    inbox: str
    folder: Path
    recursive: bool = True
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    excluded: tuple[Path, ...] = ()
    mode: WatchMode = "auto"
    poll_interval: float = 2.0
    rescan_every: float = 300.0

    def __post_init__(self) -> None:
        # frozen: normalise through object.__setattr__, as dataclasses document
        object.__setattr__(self, "folder", Path(_abs(self.folder)))
        object.__setattr__(self, "excluded", tuple(Path(_abs(p)) for p in self.excluded))
        object.__setattr__(self, "ignore", tuple(self.ignore))
        problems = []
        if self.mode not in ("auto", "inotify", "poll"):
            problems.append(f'watch: must be "auto", "inotify" or "poll", got {self.mode!r}')
        if not self.poll_interval > 0:
            problems.append(f"poll_interval: must be more than 0 seconds, got {self.poll_interval}")
        if problems:
            raise ConfigError(
                f"inbox {self.inbox!r} cannot be watched",
                problems=[f"inbox {self.inbox}: {p}" for p in problems],
            )

    # Computed once per spec (a reload builds new specs). Not dataclass fields: no effect on
    # equality or hashing.
    @cached_property
    def real_folder(self) -> str:
        return os.path.realpath(self.folder)

    @cached_property
    def real_excluded(self) -> tuple[str, ...]:
        return tuple(os.path.realpath(p) for p in self.excluded)

    @cached_property
    def _excluded_str(self) -> tuple[str, ...]:
        return tuple(str(p) for p in self.excluded)


@dataclass(frozen=True)
class FileEvent:
    """Something happened to a file in an inbox. ``at`` is the watcher's injected clock.

    ``closed``: closed after writing (inotify only); ``moved_in``: renamed into place;
    ``changed``: created, written or its metadata changed (wait until it settles);
    ``deleted``: gone, or moved out of the inbox or into an excluded folder;
    ``found``: present at start or seen by a rescan.
    """

    inbox: str
    path: Path
    kind: EventKind
    at: float


# ---------------------------------------------------------------------------------------------
# the filter


@lru_cache(maxsize=64)
def _ignore_regex(globs: tuple[str, ...]) -> re.Pattern[str] | None:
    if not globs:
        return None
    return re.compile("|".join(fnmatch.translate(g) for g in globs), re.IGNORECASE)


def is_ignored_name(spec: WatchSpec, name: str) -> bool:
    """True when ``name`` (one path component) matches one of the inbox's ignore globs."""
    regex = _ignore_regex(spec.ignore)
    return regex is not None and regex.match(name) is not None


# Paths are handled as strings with os.path here on purpose: these run once per watchdog event
# in the observer's single dispatch thread and once per file in a rescan, and abspath (unlike
# Path.resolve) normalises without touching the disk.


def _abs(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(path)  # noqa: PTH100 - lexical on purpose: no symlink resolution


def _within(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or below it (both absolute, normalised strings)."""
    if path == folder:
        return True
    prefix = folder if folder.endswith(os.sep) else folder + os.sep
    return path.startswith(prefix)


def _relative_parts(spec: WatchSpec, path: str) -> list[str] | None:
    """The components of ``path`` below the inbox folder (as written or as resolved)."""
    for root in (str(spec.folder), spec.real_folder):
        if path != root and _within(path, root):
            return path[len(root) :].lstrip(os.sep).split(os.sep)  # noqa: PTH206 - see above
    return None


def in_scope(spec: WatchSpec, path: str | os.PathLike[str]) -> bool:
    """The location and name rules alone, without touching the disk (used for deletions)."""
    p = _abs(path)
    parts = _relative_parts(spec, p)
    if parts is None:
        return False
    if not spec.recursive and len(parts) != 1:
        return False
    if any(is_ignored_name(spec, part) for part in parts):
        return False
    return not any(_within(p, ex) for ex in (*spec._excluded_str, *spec.real_excluded))


def is_candidate(spec: WatchSpec, path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file this inbox should take (see the module docstring).

    Uses ``lstat`` and ``realpath`` only; never opens the file.
    """
    if not in_scope(spec, path):
        return False
    p = _abs(path)
    try:
        st = os.lstat(p)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    folder, name = os.path.split(p)
    real = os.path.realpath(folder) + os.sep + name  # the file itself is no symlink (lstat)
    if not _within(real, spec.real_folder) or real == spec.real_folder:
        return False
    return not any(_within(real, ex) for ex in spec.real_excluded)


def _dir_allowed(spec: WatchSpec, path: str, real: str) -> bool:
    """May the walk descend into this folder (``path`` as written, ``real`` resolved)?"""
    if not _within(real, spec.real_folder):
        return False
    return not any(_within(path, ex) for ex in spec._excluded_str) and not any(
        _within(real, ex) for ex in spec.real_excluded
    )


def walk_candidates(spec: WatchSpec, stop: threading.Event | None = None) -> Iterator[Path]:
    """Every candidate now in the inbox, folder by folder; the same set ``is_candidate`` accepts.

    Ignored, excluded and symlinked folders are not descended into. An error on the inbox
    folder itself (missing, unreadable) is raised; a subfolder that vanishes or cannot be read
    during the walk is skipped. The walk ends early once ``stop`` is set (looked at before
    each entry).
    """
    root = str(spec.folder)
    if not _dir_allowed(spec, root, spec.real_folder):  # the inbox itself is excluded
        return
    stack: list[str] = [root]
    while stack:
        if stop is not None and stop.is_set():
            return
        folder = stack.pop()
        try:
            scan = os.scandir(folder)
        except OSError:
            if folder == root:
                raise
            continue
        subfolders: list[str] = []
        with scan:
            for entry in scan:
                if stop is not None and stop.is_set():
                    return  # also inside one folder: an inbox may hold all its files in one
                if is_ignored_name(spec, entry.name):
                    continue
                try:
                    # DirEntry answers from d_type where it can; no open() either way
                    if entry.is_dir(follow_symlinks=False):
                        if spec.recursive:
                            subfolders.append(entry.path)
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        continue  # symlink, FIFO, socket, device
                except OSError:
                    continue
                yield Path(entry.path)
        for path in reversed(subfolders):
            if _dir_allowed(spec, path, os.path.realpath(path)):
                stack.append(path)


# ---------------------------------------------------------------------------------------------
# which file system, which watch mode (pure; watcher.py reads /proc/self/mountinfo)

_NFS = {"nfs", "nfs4"}
_SMB = {"cifs", "smb3", "smbfs"}
#: network, cluster and VM-share file systems: inotify sees only this host's changes, if any
_REMOTE = {
    "9p", "afs", "beegfs", "ceph", "coda", "davfs", "gfs2", "glusterfs", "gpfs", "lustre",
    "ncpfs", "ocfs2", "panfs", "vboxsf", "virtiofs", "vmhgfs",
}  # fmt: skip


def _unescape_mount(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """``(mount point, file system type)`` for each line of ``/proc/self/mountinfo``, in order.

    Line format (proc(5)): ``id parent major:minor root mount-point options [optional...] -
    fstype source super-options``.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        if separator + 1 >= len(fields):
            continue
        mounts.append((_unescape_mount(fields[4]), fields[separator + 1]))
    return mounts


def fstype_at(path: str, mounts: Sequence[tuple[str, str]]) -> str:
    """The type of the mount holding ``path`` (absolute, resolved): the longest mount point
    that is a prefix of it; among equal ones the last (a later mount hides an earlier one)."""
    best, best_type = -1, ""
    for mount_point, fstype in mounts:
        prefix = mount_point.rstrip("/") + "/"
        if (path == mount_point or path.startswith(prefix) or mount_point == "/") and len(
            mount_point
        ) >= best:
            best, best_type = len(mount_point), fstype
    return best_type


def mode_for_fstype(fstype: str, requested: str) -> tuple[str, str]:
    """``(mode, reason)`` for an inbox on a file system of type ``fstype``; pure."""
    if fstype in _NFS:
        blind = f"{fstype} does not deliver inotify events for changes made on other hosts"
    elif fstype in _SMB:
        blind = (
            f"{fstype} (SMB) does not deliver inotify events for changes made on the server "
            "or by other clients"
        )
    elif fstype == "fuse" or fstype.startswith(("fuse.", "fuseblk")):
        blind = (
            f"{fstype} is a FUSE file system: inotify does not see changes made behind it "
            "(on the server or other hosts)"
        )
    elif fstype in _REMOTE:
        blind = (
            f"{fstype} is a network or shared file system: inotify does not see changes "
            "made on other hosts"
        )
    else:
        blind = ""
    if requested == "poll":
        return "poll", 'watch = "poll" is configured'
    if requested == "inotify":
        reason = 'watch = "inotify" is configured'
        return "inotify", f"{reason}, although {blind}" if blind else reason
    if blind:
        return "poll", blind
    if not fstype:
        return "inotify", "file system type unknown; assuming a local one"
    return "inotify", f"{fstype} is a local file system; inotify sees every change"


# ---------------------------------------------------------------------------------------------
# collapsing


def collapse(events: Iterable[FileEvent]) -> list[FileEvent]:
    """Keep the one event per (inbox, path) that matters, ordered by time (ties: input order).

    The result is a subset of the input events. Folding each path's events in time order:

    * the later event wins (``changed`` -> ``closed`` is ``closed``; ``closed`` -> ``deleted``
      is ``deleted``; ``deleted`` -> ``moved_in`` is ``moved_in``: a new file took the name);
    * except ``found``: a rescan adds no news to a watch event, so ``found`` replaces only
      ``deleted`` or another ``found`` (``closed`` -> ``found`` stays ``closed``);
    * a write after a completion signal demotes it: ``closed`` or ``moved_in`` followed by
      ``changed`` is ``changed``, because someone is writing the file again and it must settle
      once more before it is taken.
    """
    indexed = sorted(enumerate(events), key=lambda item: (item[1].at, item[0]))
    kept: dict[tuple[str, Path], tuple[int, FileEvent]] = {}
    for index, event in indexed:
        key = (event.inbox, event.path)
        previous = kept.get(key)
        if (
            previous is not None
            and event.kind == "found"
            and previous[1].kind not in ("found", "deleted")
        ):
            continue
        kept[key] = (index, event)
    return [event for _, event in sorted(kept.values(), key=lambda ie: (ie[1].at, ie[0]))]
