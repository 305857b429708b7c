"""How to watch an inbox, and whether inotify can: the mode per folder and inotify's limits.

Decides ``inotify`` or ``poll`` for an inbox folder from its file system type (read from
``/proc/self/mountinfo``; the rule itself is ``events.mode_for_fstype``), reads the inotify
watch limit (``/proc/sys/fs/inotify/max_user_watches``), checks that the inotify inboxes' folders
fit under it, and turns inotify's limit errors (errno ENOSPC, EMFILE) into a ``ConfigError``
naming the sysctl to raise.

The watcher's watchdog-free half of choosing a mode: imports only ``errors`` and ``events`` from
the project, and never watchdog (only ``watcher.py`` does), ``engine``, ``service`` or ``cli``.
Logs as the ``watcher`` component, since that is what a reader of the log sees starting.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import structlog

from creatio_attach.errors import ConfigError
from creatio_attach.events import WatchSpec, fstype_at, mode_for_fstype, parse_mountinfo

__all__ = [
    "MAX_USER_WATCHES",
    "MOUNTINFO",
    "check_watch_limit",
    "choose_mode",
    "filesystem_type",
    "inotify_limit_error",
    "max_user_watches",
    "say_limit_unknown",
]

# the component the watcher logs as: these notes are part of starting to watch
log = structlog.get_logger(component="watcher")

MOUNTINFO = Path("/proc/self/mountinfo")
MAX_USER_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")

# ---------------------------------------------------------------------------------------------
# which file system, which mode


def filesystem_type(path: Path) -> str:
    """The file system type of ``path`` from ``/proc/self/mountinfo`` ("ext4", "nfs4", "cifs",
    "fuse.sshfs"...); "" when it cannot be told (no /proc)."""
    try:
        text = MOUNTINFO.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return ""
    return fstype_at(os.path.realpath(path), parse_mountinfo(text))


def choose_mode(path: Path, requested: str) -> tuple[str, str]:
    """``(mode, reason)`` for an inbox folder: ``mode_for_fstype`` of its file system."""
    return mode_for_fstype(filesystem_type(path), requested)


# ---------------------------------------------------------------------------------------------
# inotify's limits


_POLL_INSTEAD = 'or set watch = "poll" for this inbox'


def _watch_limit_error(folder: Path | str, message: str) -> ConfigError:
    return ConfigError(
        message,
        path=str(folder),
        hint=(
            "raise the sysctl fs.inotify.max_user_watches, e.g. "
            "`sysctl -w fs.inotify.max_user_watches=524288` and the same line in "
            f"/etc/sysctl.d/90-creatio-attach.conf, {_POLL_INSTEAD}"
        ),
    )


def inotify_limit_error(exc: OSError, folder: Path | str) -> ConfigError | None:
    """The ``ConfigError`` for an inotify limit (ENOSPC: watches, EMFILE: instances), else None."""
    if exc.errno == errno.ENOSPC:
        return _watch_limit_error(
            folder, "the inotify watch limit is reached (one watch per watched folder)"
        )
    if exc.errno == errno.EMFILE:
        return ConfigError(
            "the inotify instance limit (or the open-file limit) is reached",
            path=str(folder),
            hint=(
                "raise the sysctl fs.inotify.max_user_instances, e.g. "
                "`sysctl -w fs.inotify.max_user_instances=1024` and the same line in "
                "/etc/sysctl.d/90-creatio-attach.conf (or LimitNOFILE= in the unit), "
                f"{_POLL_INSTEAD}"
            ),
        )
    return None


def max_user_watches(path: Path = MAX_USER_WATCHES) -> int | None:
    """The inotify watch limit, None when it cannot be read: under the unit's
    ``ProcSubset=pid`` /proc/sys is hidden, and there is no /proc outside Linux."""
    try:
        return int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


#: the limit files already reported unreadable: the note is logged once per process, not on
#: every reload (each reload starts a new watcher)
_LIMIT_UNKNOWN_SAID: set[Path] = set()
_LIMIT_UNKNOWN_LOCK = threading.Lock()


def say_limit_unknown(path: Path, inotify_specs: Sequence[WatchSpec]) -> None:
    """Log once per process that the watch-limit pre-check is skipped.

    Info, not a warning: it is the normal state under the shipped unit (``ProcSubset=pid``), and
    a warning on every start that can be silenced only by loosening the sandbox would teach
    people to skip warnings. The inbox folder's own watch still fails loudly (ENOSPC becomes
    the sysctl ``ConfigError``); what goes unchecked is subfolders past the limit, which
    watchdog skips without a word, so the hint says how to check by hand.
    """
    with _LIMIT_UNKNOWN_LOCK:
        if path in _LIMIT_UNKNOWN_SAID:
            return
        _LIMIT_UNKNOWN_SAID.add(path)
    log.info(
        "inotify watch limit unknown, pre-check skipped",
        limit_file=str(path),
        inboxes=[s.inbox for s in inotify_specs],
        note=(
            "the limit cannot be read (/proc/sys is hidden by ProcSubset=pid under systemd); "
            "reaching it on an inbox folder still stops the start naming the sysctl to raise"
        ),
        hint=(
            "compare the folders under the inboxes (`find FOLDER -type d | wc -l`) with "
            "`sysctl fs.inotify.max_user_watches`; past it, files in unwatched subfolders "
            "are found only by the periodic rescan ([daemon] rescan_every)"
        ),
    )


def _count_folders(folder: Path, *, recursive: bool, limit: int) -> int:
    """Folders inotify will watch for this tree (symlinks not followed), counted up to
    ``limit + 1`` (so a huge tree is not walked for nothing)."""
    count, stack = 1, [str(folder)]
    while stack and recursive and count <= limit:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            count += 1
                            stack.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return count


def check_watch_limit(specs: Sequence[WatchSpec], limit: int) -> None:
    """Raise the watch-limit ``ConfigError`` when these inboxes hold more than ``limit`` folders.

    Needed because watchdog skips a subfolder it cannot watch without a word (only the inbox
    folder's own watch raises ENOSPC), so hitting the limit would otherwise go unnoticed.
    """
    needed = 0
    for spec in specs:
        needed += _count_folders(spec.folder, recursive=spec.recursive, limit=limit - needed)
        if needed > limit:
            raise _watch_limit_error(
                spec.folder, f"the inotify inboxes hold more than {limit} folders, the watch limit"
            )
