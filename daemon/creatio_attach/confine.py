"""Files and folders below the daemon's folders, reached without following a symlink out.

Anyone who may write into an inbox can swap a file or a folder for a symlink at any moment:
between the check that a file is a regular file of the inbox and the open that reads it for
its upload (the bytes of any file the daemon can read would go to Creatio), or before a move
(``.archive -> /elsewhere``, and the daemon would create folders and write files there with
its own rights). So every path the daemon opens, creates, moves or deletes below a *root* is
walked from that root one folder at a time (``openat`` with ``O_NOFOLLOW``), and the last
step is taken relative to the folder reached: a symlink anywhere below the root is refused
(``SymlinkRefused``), whatever is swapped meanwhile.

Roots are the inbox folders and, for an archive, failed or unmatched folder outside every
inbox, its fixed part (``/srv/archive`` for ``/srv/archive/{date}``). A root itself and the
folders above it belong to the administrator: a symlink there is followed. A path inside an
inbox is walked from that inbox's folder (so ``{folder}/.archive`` may not be a symlink
either; an inbox nested in another is walked from the outer one, so neither may its folder);
a path below no root (the one-shot commands) is used as given.

Raises ``OSError`` only: the callers (``detect``, ``dispose``) translate it into their own
errors, ``SymlinkRefused`` included. Imports nothing from the project.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class SymlinkRefused(OSError):
    """A symlink where a file or folder below a root was expected; it is not followed."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.ELOOP, "a symlink, which is not followed", path)


def _norm(path: str | Path) -> str:
    """Absolute and normalised, lexically: no symlink is resolved (that is the point)."""
    return os.path.normpath(os.path.abspath(path))  # noqa: PTH100


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class Roots:
    """The folders below which nothing is followed; ``replace`` swaps them (a reload)."""

    def __init__(self, inboxes: Iterable[str | Path] = (), others: Iterable[str | Path] = ()):
        self._lock = threading.Lock()
        self._inboxes: tuple[str, ...] = ()
        self._others: tuple[str, ...] = ()
        self.replace(inboxes, others)

    def replace(self, inboxes: Iterable[str | Path], others: Iterable[str | Path] = ()) -> None:
        """``inboxes``: inbox folders; ``others``: archive/failed/unmatched roots outside them."""
        # inboxes outermost first: an inbox nested in another is walked from the outer one
        # (whoever may write the outer inbox could swap the inner folder for a symlink);
        # other roots innermost first
        norm = sorted({_norm(p) for p in inboxes}, key=len)
        rest = sorted({_norm(p) for p in others}, key=len)
        with self._lock:
            self._inboxes, self._others = tuple(norm), tuple(reversed(rest))

    def root_of(self, path: str | Path) -> str | None:
        """The root a path is walked from: the outermost inbox folder holding it (an inbox
        nested in another is walked from the outer one), else the innermost other root, else
        None (the path is used as given)."""
        p = _norm(path)
        with self._lock:
            inboxes, others = self._inboxes, self._others
        for root in (*inboxes, *others):
            if _within(p, root):
                return root
        return None

    # -- folders ---------------------------------------------------------------------------

    def open_folder(self, folder: str | Path, *, create: bool = False) -> int:
        """A descriptor on ``folder`` (``O_RDONLY|O_DIRECTORY``), walked from its root with no
        symlink followed below it; ``create`` makes the missing folders on the way."""
        path = _norm(folder)
        root = self.root_of(path)
        if root is None:
            if create:
                Path(path).mkdir(parents=True, exist_ok=True)
            return os.open(path, _DIR_FLAGS)
        try:
            fd = os.open(root, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            # the root itself is the administrator's (a symlink there is followed): made as is
            Path(root).mkdir(parents=True, exist_ok=True)
            fd = os.open(root, _DIR_FLAGS)
        try:
            here = Path(root)
            for part in Path(os.path.relpath(path, root)).parts if path != root else ():
                here = here / part
                try:
                    fd = _step(fd, part, str(here), _DIR_FLAGS | os.O_NOFOLLOW)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):  # made meanwhile: fine
                        os.mkdir(part, dir_fd=fd)
                    fd = _step(fd, part, str(here), _DIR_FLAGS | os.O_NOFOLLOW)
        except BaseException:
            os.close(fd)
            raise
        return fd

    # -- files -----------------------------------------------------------------------------

    def open_file(self, path: str | Path, flags: int) -> int:
        """``os.open(path, flags)``; below a root the file itself is not followed if it is a
        symlink (``O_NOFOLLOW``) and nor is any folder on the way."""
        if self.root_of(path) is None:
            return os.open(path, flags)
        folder, name = os.path.split(_norm(path))
        dir_fd = self.open_folder(folder)
        try:
            try:
                return os.open(name, flags | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as exc:
                if _is_link(name, dir_fd):
                    raise SymlinkRefused(str(path)) from exc
                raise
        finally:
            os.close(dir_fd)


def _step(fd: int, part: str, shown: str, flags: int) -> int:
    """Open ``part`` relative to ``fd``, close ``fd``; SymlinkRefused when it is a symlink."""
    try:
        child = os.open(part, flags, dir_fd=fd)
    except OSError as exc:
        if _is_link(part, fd):
            raise SymlinkRefused(shown) from exc
        raise
    os.close(fd)
    return child


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False
