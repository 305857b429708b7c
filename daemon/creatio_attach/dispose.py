"""The inbox's folders: moving files to archive/failed/unmatched, notes beside them, sidecars.

The local file-system adapter the engine reaches through its ``Folders`` Protocol. Nothing is
ever overwritten: a taken name gets `` (1)``, `` (2)``... before its extension, and the move
itself refuses to replace (``link`` + ``unlink`` on one file system, an ``O_EXCL`` copy across
file systems), so two threads or a person cannot race a file away. Names too long for the file
system (255 bytes per component) are shortened before the suffix, never cut inside a character.

Durability of a move: the folder is fsynced at most once per ``DIR_SYNC_EVERY`` seconds
(the first move into it in that interval), not after every move, which cost a worker ~5 ms of
waiting per file in a burst. Nothing is lost by this; the journal is the record of truth:

- the journal's ``done`` commit (fsynced) comes after the move; a power cut can undo a move
  whose folder was not synced yet only as a whole suffix of metadata operations (ext4 and
  xfs journal them in order: the ``link`` into the archive is never lost while the
  ``unlink`` from the inbox survives), so the file is then back in the inbox, or in both
  places; never in neither. (A same-file-system ``fsync`` of the journal also commits the
  file system journal on ext4 and xfs, which usually persists the move anyway.)
- a file the journal knows as ``done`` is never uploaded again: a rescan meets it, sees the
  known row and leaves it. The cost of the rare case is a copy left in the inbox, by then in
  Creatio and in the journal; a person may delete it.
- a crash before the ``done`` commit leaves the row ``uploaded``: the next start moves the
  file again (``Pipeline.recover``), whatever the disk kept.

Moves in a burst are covered by the next sync of their folder, or by the file system's own
commit interval (5 s on ext4) when the burst ends.

Every path is reached through ``confine``: no symlink is followed below an inbox, neither a
file nor a folder on the way (``.archive -> /elsewhere`` is refused, never written through).

Imports only ``errors``, ``confine`` and ``routing`` (for the sidecar size limit) from the
project; reads errno here, never in the engine. No sqlite3, requests, magic or watchdog.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import itertools
import json
import os
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from creatio_attach.confine import Roots, SymlinkRefused
from creatio_attach.errors import FileGone, FileProblem, FileRefused, FileUnreadable
from creatio_attach.routing import SIDECAR_MAX_BYTES

NAME_MAX = 255  # bytes per path component on ext4, xfs, btrfs...
_NO_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS})
_DOUBLE = (".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst")
#: a destination folder is fsynced at most this often (the module docstring says why)
DIR_SYNC_EVERY = 1.0


def _translate(exc: OSError, path: Path, doing: str) -> FileProblem:
    if isinstance(exc, SymlinkRefused):
        return FileUnreadable(
            f"cannot {doing}: {exc.filename} is {exc.strerror}",
            hint="a folder or file below an inbox must not be a symlink",
            path=str(path),
        )
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileGone(f"vanished while {doing}", path=str(path))
    return FileUnreadable(f"cannot {doing}: {exc.strerror or exc}", path=str(path))


def _split(name: str) -> tuple[str, str]:
    low = name.lower()
    for double in _DOUBLE:
        if low.endswith(double) and len(name) > len(double):
            return name[: -len(double)], name[-len(double) :]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return name, ""
    return stem, "." + ext


def _fit(stem: str, tail: str) -> str:
    """``stem + tail`` shortened (at a character boundary) to at most NAME_MAX bytes."""
    budget = NAME_MAX - len(os.fsencode(tail))
    raw = os.fsencode(stem)
    if len(raw) <= budget:
        return stem + tail
    cut = raw[: max(1, budget)]
    while cut:
        try:
            cut.decode("utf-8")
            break
        except UnicodeDecodeError:
            cut = cut[:-1]
    return os.fsdecode(cut) + tail


def candidate_names(name: str) -> Iterator[str]:
    """``name`` (shortened if needed), then ``name (1)``, ``name (2)``... (first 10,000)."""
    stem, ext = _split(name)
    yield _fit(stem, ext)
    for n in range(1, 10_000):
        yield _fit(stem, f" ({n}){ext}")


class LocalFolders:
    """The ``Folders`` the service gives the engine: real moves on the local file system.

    Every path is reached through ``roots`` (``confine``): below an inbox no symlink is
    followed, neither the file nor a folder on the way (``.archive -> /elsewhere`` is refused,
    not written through), and each step is taken relative to the folder already reached.
    """

    def __init__(self, sync_every: float = DIR_SYNC_EVERY, roots: Roots | None = None) -> None:
        self.sync_every = sync_every
        self.roots = roots or Roots()
        self._synced: dict[str, float] = {}  # folder -> monotonic time of its last fsync
        self._sync_lock = threading.Lock()

    def _moved_into(self, folder: Path, dir_fd: int) -> None:
        """A move into ``folder`` happened: fsync it unless that was done very recently."""
        key = str(folder)
        now = time.monotonic()
        with self._sync_lock:
            last = self._synced.get(key)
            if last is not None and now - last < self.sync_every:
                return
            if len(self._synced) > 10_000:  # dated archive folders: keep the map small
                self._synced.clear()
            self._synced[key] = now
        with contextlib.suppress(OSError):  # best effort: a power cut is covered anyway
            os.fsync(dir_fd)

    def _folder(self, folder: Path, doing: str, *, create: bool = False) -> int:
        """A descriptor on ``folder``; ``create``: a destination, made if missing, and a
        failure there is never "gone" (the file itself is still where it was)."""
        try:
            return self.roots.open_folder(folder, create=create)
        except OSError as exc:
            problem = _translate(exc, folder, doing)
            if create and isinstance(problem, FileGone):  # e.g. a file where a folder should be
                problem = FileUnreadable(f"cannot {doing}: {exc.strerror}", path=str(folder))
            raise problem from exc

    def read_sidecar(self, path: Path) -> str | None:
        """The text of a sidecar file, None when there is none (a symlink or FIFO is none)."""
        if not os.path.lexists(path):  # most files have none: one lstat, no walk
            return None
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            fd = self.roots.open_file(path, flags)
        except SymlinkRefused:
            return None
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP):  # too long to exist; a symlink
                return None
            raise _translate(exc, path, "read the sidecar") from exc
        with os.fdopen(fd, "rb") as fh:
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    return None  # a FIFO (opened without waiting), a folder, a device
                data = fh.read(SIDECAR_MAX_BYTES + 1)
            except OSError as exc:
                raise _translate(exc, path, "read the sidecar") from exc
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileRefused(
                f"malformed sidecar: not UTF-8 text (byte {exc.start})",
                reason="bad_sidecar",
                path=str(path),
            ) from exc

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def names_for(self, dest: Path, limit: int) -> list[Path]:
        return [dest.with_name(n) for n in itertools.islice(candidate_names(dest.name), limit)]

    def move(self, src: Path, dest: Path) -> Path:
        """Move ``src`` to ``dest`` or, when that name is taken, ``dest (1)``...; returns the
        path it got. Parents are created. FileGone when ``src`` vanished. A file already in
        ``dest``'s folder stays as it is (its path is returned). The inbox name is removed only
        if it still names the file that was moved: a new version saved there meanwhile stays."""
        src_fd = self._folder(src.parent, "move the file")
        try:
            dest_fd = self._folder(dest.parent, "create the folder", create=True)
            try:
                return self._move(src, src_fd, dest, dest_fd)
            finally:
                os.close(dest_fd)
        finally:
            os.close(src_fd)

    def _move(self, src: Path, src_fd: int, dest: Path, dest_fd: int) -> Path:
        folder = dest.parent
        if _same_folder(src_fd, dest_fd):
            return src  # already in that folder (e.g. found there after a crash): it stays
        moved: tuple[int, int] | None = None  # (device, inode) of the file that was moved
        copied = False
        for name in candidate_names(dest.name):
            target = folder / name
            try:
                # follow_symlinks=False: a symlink swapped in is linked as the link it is,
                # never as the file it points to (linkat without AT_SYMLINK_FOLLOW)
                os.link(
                    src.name, name, src_dir_fd=src_fd, dst_dir_fd=dest_fd, follow_symlinks=False
                )
            except FileExistsError:
                if _same_file(src.name, src_fd, name, dest_fd) or _same_copy(
                    src.name, src_fd, name, dest_fd
                ):
                    moved = _identity(src.name, src_fd)  # a move a crash cut short: finish it
                    break
                continue
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    moved = self._copy_exclusive(src, src_fd, target, dest_fd)
                    if moved is None:
                        continue  # the name is taken
                    copied = True
                    break
                if exc.errno in _NO_LINKS:
                    try:
                        if not _rename_no_replace(src.name, src_fd, name, dest_fd):
                            continue  # the name is taken
                    except OSError as again:
                        raise _translate_move(again, src, src_fd, dest) from again
                    self._moved_into(folder, dest_fd)
                    return target
                raise _translate_move(exc, src, src_fd, dest) from exc
            moved = _identity(name, dest_fd)
            break
        else:
            raise FileUnreadable("no free name in the destination folder", path=str(dest))
        if copied:  # across file systems: the copy's name is on disk before the source goes
            with contextlib.suppress(OSError):
                os.fsync(dest_fd)
        # the inbox name goes only if it is still the file that was moved: a new version saved
        # meanwhile (an editor writes a temporary file and renames it) stays, as a new file
        if moved is not None and _identity(src.name, src_fd) == moved:
            try:
                os.unlink(src.name, dir_fd=src_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(target.name, dir_fd=dest_fd)
                raise _translate(exc, src, "remove the file after copying it") from exc
        self._moved_into(folder, dest_fd)
        return target

    @staticmethod
    def _copy_exclusive(
        src: Path, src_fd: int, target: Path, dest_fd: int
    ) -> tuple[int, int] | None:
        """Copy across file systems without replacing anything: into a temporary dotfile of
        the destination folder, then put in place under ``target``'s name only if that is
        free (None when it is taken). Returns the (device, inode) of the file copied. The
        source is not followed if it is a symlink (``O_NOFOLLOW``); a copy cut short by a
        crash is only ever a temporary dotfile, never input."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            inp = os.open(src.name, flags, dir_fd=src_fd)  # first: nothing to undo if it fails
        except OSError as exc:
            raise _translate(exc, src, "copy the file") from exc
        temp = f".{secrets.token_hex(8)}.moving"
        with os.fdopen(inp, "rb") as fin:
            st = os.fstat(inp)
            if not stat.S_ISREG(st.st_mode):
                raise FileUnreadable("not a regular file any more", path=str(src))
            try:
                out = os.open(
                    temp,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                    0o640,
                    dir_fd=dest_fd,
                )
            except OSError as exc:  # a destination problem, never "gone"
                raise FileUnreadable(
                    f"cannot create the copy: {exc.strerror}", path=str(target)
                ) from exc
            try:
                with os.fdopen(out, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                    fout.flush()
                    os.fchmod(fout.fileno(), stat.S_IMODE(st.st_mode))
                    os.utime(fout.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
                    os.fsync(fout.fileno())
                placed = _place(temp, target.name, dest_fd)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    os.unlink(temp, dir_fd=dest_fd)
                if isinstance(exc, OSError):
                    raise _translate(exc, src, "copy the file") from exc
                raise
        return (st.st_dev, st.st_ino) if placed else None

    def delete(self, path: Path) -> None:
        try:
            dir_fd = self.roots.open_folder(path.parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _translate(exc, path, "delete the file") from exc
        try:
            os.unlink(path.name, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _translate(exc, path, "delete the file") from exc
        finally:
            os.close(dir_fd)

    def write_json(self, path: Path, doc: Mapping[str, Any]) -> Path:
        """Write a note (``<name>.error.json``...) atomically; it belongs to one file, so an
        older note of that same file is replaced (a symlink of that name is replaced, never
        written through)."""
        text = json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True, default=str) + "\n"
        name = _fit(*_split_note(path.name))
        final = path.with_name(name)
        temp = f".{secrets.token_hex(8)}.note.tmp"  # a dotfile: never input
        dir_fd = self._folder(final.parent, "write the note", create=True)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(temp, flags, 0o640, dir_fd=dir_fd)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise _translate(exc, final, "write the note") from exc
        finally:
            os.close(dir_fd)
        return final


def _identity(name: str, dir_fd: int) -> tuple[int, int] | None:
    """(device, inode) of ``name`` itself; None when it is not there."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _same_copy(a: str, a_dir: int, b: str, b_dir: int) -> bool:
    """``b`` is a complete copy of ``a`` on another file system (a move across file systems
    a crash cut short before the source went): same size, mtime and content."""
    try:
        sa = os.lstat(a, dir_fd=a_dir)
        sb = os.lstat(b, dir_fd=b_dir)
    except OSError:
        return False
    if not (stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode)):
        return False
    if (sa.st_size, sa.st_mtime_ns) != (sb.st_size, sb.st_mtime_ns) or sa.st_dev == sb.st_dev:
        return False
    return _digest(a, a_dir) == _digest(b, b_dir)


def _digest(name: str, dir_fd: int) -> str | None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        with os.fdopen(os.open(name, flags, dir_fd=dir_fd), "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def _place(temp: str, name: str, dir_fd: int) -> bool:
    """Give the file ``temp`` the name ``name`` in the same folder, never replacing a file
    of that name (False then); ``temp`` is gone afterwards either way."""
    try:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        os.unlink(temp, dir_fd=dir_fd)
        return False
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        return _rename_no_replace(temp, dir_fd, name, dir_fd)
    os.unlink(temp, dir_fd=dir_fd)
    return True


_LIBC = ctypes.CDLL(None, use_errno=True)
_RENAMEAT2 = getattr(_LIBC, "renameat2", None)
_RENAME_NOREPLACE = 1  # linux/fs.h


def _rename_no_replace(src: str, src_dir: int, dest: str, dest_dir: int) -> bool:
    """Rename, never replacing a file of the destination name (False when it is taken):
    ``renameat2(RENAME_NOREPLACE)``, used where hard links are refused. Where the kernel or
    the file system lacks that flag, the name is checked first (a tiny race remains there)."""
    if _RENAMEAT2 is not None:
        done = _RENAMEAT2(src_dir, os.fsencode(src), dest_dir, os.fsencode(dest), _RENAME_NOREPLACE)
        if done == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            return False
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), src)
    if _lexists(dest, dest_dir):
        return False
    os.rename(src, dest, src_dir_fd=src_dir, dst_dir_fd=dest_dir)
    return True


def _translate_move(exc: OSError, src: Path, src_fd: int, dest: Path) -> FileProblem:
    """A failed move: "gone" only when the file itself is gone; a destination folder that
    vanished meanwhile is a destination problem."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and _lexists(src.name, src_fd):
        return FileUnreadable(
            "cannot move the file: the destination folder vanished", path=str(dest)
        )
    return _translate(exc, src, "move the file")


def _same_folder(a_dir: int, b_dir: int) -> bool:
    a, b = os.fstat(a_dir), os.fstat(b_dir)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _same_file(a: str, a_dir: int, b: str, b_dir: int) -> bool:
    """Both names are links to one file (neither followed if it is a symlink)."""
    try:
        sa = os.lstat(a, dir_fd=a_dir)
        sb = os.lstat(b, dir_fd=b_dir)
    except OSError:
        return False
    return stat.S_ISREG(sa.st_mode) and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _split_note(name: str) -> tuple[str, str]:
    """``<file>.error.json`` keeps its ``.error.json`` tail when the file name is shortened."""
    for tail in (".error.json", ".duplicate.json", ".json"):
        if name.endswith(tail) and len(name) > len(tail):
            return name[: -len(tail)], tail
    return name, ""
