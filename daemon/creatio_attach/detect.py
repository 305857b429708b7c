"""What a file is: its real MIME type (libmagic over the content), SHA-256, size and snapshot.

The only module that imports ``magic``. libmagic reads the open file itself (as many bytes
as its rules need, bounded by its own ``bytes_max``); the answer is then mapped to the
canonical name and refined where libmagic is known to be wrong or silent:

* ZIP / OOXML: the main part's type in ``[Content_Types].xml`` tells .docm/.xlsm/.pptm
  (and every other OOXML flavour) apart; ODF by its ``mimetype`` member.
* ASF with audio streams only is WMA; MP4/3GP with sound tracks only is ``audio/*``.
* "data" that is RF64/BW64 WAV, or MPEG/AAC frames behind zero padding or a misplaced ID3 tag.
* "text/plain" that is a mail behind an mbox ``From `` line, or whose extension names a
  text format libmagic cannot tell from prose (CSV in a legacy code page, TSV...).

Nothing reads a whole file into memory: hashing is streamed in blocks, every sniff reads
a bounded window. ``hash_up_to`` leaves the SHA-256 of a larger file to its upload (the
daemon hashes big files once, while they are sent; ``pipeline`` says when that is safe).
Each thread has its own libmagic handles (they are not thread-safe).
Non-regular files (FIFOs, devices, directories) are refused without being opened for read.
Below an inbox the daemon passes an ``opener`` (``confine``) that follows no symlink.
Imports from the project: ``errors``, its table module ``filetypes`` and ``confine``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, BinaryIO, Literal

import magic

from creatio_attach import errors
from creatio_attach import filetypes as ft
from creatio_attach.confine import SymlinkRefused

SNIFF_WINDOW = 128 * 1024  # bytes read for the RF64/MPEG/mail sniffs
ID3_SLACK = 4 * 1024  # a misplaced ID3 size may point this far before the first frame
CONTENT_TYPES_LIMIT = 1 << 20  # a larger [Content_Types].xml is not an Office file
ZIP_ENTRY_LIMIT = 20_000  # zipfile keeps the central directory in memory: cap it
ASF_HEADER_LIMIT = 1 << 20
MP4_BOX_BUDGET = 4_096  # boxes (or EBML elements) visited while looking for tracks

_GONE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ESTALE})
_local = threading.local()

Reader = Callable[[int, int], bytes]  # (offset, length) -> at most length bytes
Opener = Callable[[Path, int], int]  # (path, os.open flags) -> descriptor, like os.open


@dataclass(frozen=True)
class Detected:
    mime: str  # canonical MIME type
    extension: str  # canonical extension without dot ("" when the type has none)
    size: int
    sha256: str | None  # hex; None when left to the upload (``detect(hash_up_to=...)``)
    #: the file it was found in, for ``description`` (not part of the result's identity)
    path: Path | None = field(default=None, compare=False, repr=False)

    @property
    def description(self) -> str:
        """libmagic's description of the file (for logs and messages), read when asked:
        a second libmagic pass costs about as much as the first, and the daemon's normal path
        never needs it. "" when the file is unreadable or gone by then."""
        if self.path is None:
            return ""
        try:
            return describe(self.path)
        except errors.FileProblem:
            return ""


@dataclass(frozen=True)
class Snapshot:
    size: int
    mtime_ns: int
    inode: int
    device: int


def detect(path: Path, *, hash_up_to: int | None = None, opener: Opener | None = None) -> Detected:
    """The real type, size and SHA-256 of the regular file at ``path``.

    A file larger than ``hash_up_to`` bytes is not hashed here (``sha256`` is None).
    ``opener``: see ``_open_regular``.

    Raises ``FileRefused(reason="empty")`` for an empty file, ``FileGone`` when it vanished,
    ``FileUnreadable`` for any other OS error or a file that is not a regular file.
    """
    fd = _open_regular(path, opener)
    try:
        size = _fstat(fd, path).st_size
        if size == 0:
            raise _empty(path)
        mime = ft.canonical(_libmagic(fd, path, "mime"))
        if mime in ft.EMPTY_TYPES:  # truncated since the fstat
            raise _empty(path)
        read = _reader(fd, path)
        mime = _refine(mime, read, size, path.name)
        # the one place libmagic's description mattered (Ogg Opus vs Vorbis): libmagic's own
        # test, "OpusHead" at offset 28 of an Ogg page, read here instead of a second pass
        opus = mime == "audio/ogg" and ft.is_ogg_opus(read(0, 36))
        extension = ft.extension_for(mime, "Opus audio" if opus else "")
        if hash_up_to is not None and size > hash_up_to:
            return Detected(mime, extension, size, None, path)
        digest, hashed = _hash_fd(fd, path, 1 << 20)
    finally:
        os.close(fd)
    if hashed == 0:
        raise _empty(path)
    return Detected(mime, extension, hashed, digest, path)


def describe(path: Path) -> str:
    """libmagic's description of the regular file at ``path`` ("PDF document, version
    1.4"); raises like ``detect``."""
    fd = _open_regular(path)
    try:
        return _libmagic(fd, path, "description")
    finally:
        os.close(fd)


def record_name(file_name: str, detected: Detected) -> str:
    """The Name for the Creatio record: the content's extension wins over the file name's.

    ``scan`` -> ``scan.pdf``; ``report.xls`` holding xlsx -> ``report.xlsx``; a right one
    (any equivalent spelling, any case) is kept, so ``photo.JPEG`` and ``x.tar.gz`` stay.
    A suffix that is no known extension (``call.1234``, ``report.final``) is kept and the
    right extension appended. Generic types (text/plain, octet-stream) and types unknown to
    the table keep the name as it is; an ELF or Mach-O binary loses a known wrong extension.
    """
    ext = detected.extension
    stem, dot, suffix = file_name.rpartition(".")
    if detected.mime in ft.NO_EXTENSION_TYPES:  # "invoice.pdf" holding an ELF -> "invoice"
        return stem if dot and stem and suffix.lower() in ft.known_extensions() else file_name
    if not ext or detected.mime in ft.GENERIC_TYPES:
        return file_name
    if dot and stem and not suffix:  # "scan." -> "scan.pdf"
        return f"{stem}.{ext}"
    if dot and stem:
        low = suffix.lower()
        if low == ext or low in ft.accepted_extensions(detected.mime):
            return file_name
        if low in ft.known_extensions():
            # "backup.tar.gz" holding a plain tar -> "backup.tar", not "backup.tar.tar"
            return stem if stem.lower().endswith(f".{ext}") else f"{stem}.{ext}"
    return f"{file_name}.{ext}"


def sha256_file(path: Path, block: int = 1 << 20, *, opener: Opener | None = None) -> str:
    """SHA-256 (hex) of a regular file, read in ``block``-sized pieces."""
    fd = _open_regular(path, opener)
    try:
        return _hash_fd(fd, path, block)[0]
    finally:
        os.close(fd)


def open_regular(path: Path, opener: Opener | None = None) -> BinaryIO:
    """The regular file at ``path`` open for reading (binary, buffered), as ``detect`` opens
    it: never a FIFO or device, and through ``opener`` when given. Raises like ``detect``."""
    return os.fdopen(_open_regular(path, opener), "rb")


def snapshot(path: Path) -> Snapshot:
    """Size, mtime, inode and device of ``path`` itself (a symlink is not followed)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise _translate(exc, path) from exc
    return Snapshot(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def mime_matches(mime: str, patterns: Iterable[str]) -> bool:
    """True when ``mime`` matches one of the MIME globs (``audio/*``, ``*``, an exact type).

    Both sides are compared case-insensitively and through the alias map, so a pattern
    written with a legacy name (``audio/x-wav``) matches the canonical ``audio/wav``.
    """
    target = ft.canonical(mime).lower()
    for raw in patterns:
        pattern = raw.split(";", 1)[0].strip().lower()
        if not pattern:
            continue
        if pattern in ("*", "*/*"):
            return True
        if not any(c in pattern for c in "*?["):
            pattern = ft.canonical(pattern).lower()
        if fnmatchcase(target, pattern):
            return True
    return False


# --- opening and reading ----------------------------------------------------------------


def _open_regular(path: Path, opener: Opener | None = None) -> int:
    """A read-only descriptor on a regular file; FIFOs and devices are never opened.

    ``opener`` (``confine.Roots.open_file``) opens the file instead of ``os.open``: the
    daemon's way, which follows no symlink below an inbox. Without it a symlink is followed
    (the one-shot ``upload``: whether one is allowed is the caller's rule).
    """
    if opener is None:
        try:
            st = path.stat()
        except OSError as exc:
            raise _translate(exc, path) from exc
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    try:
        # O_NONBLOCK: if a FIFO was swapped in since the stat, open must not wait for a writer
        fd = (opener or os.open)(path, flags)
    except OSError as exc:
        raise _translate(exc, path) from exc
    mode = _fstat(fd, path).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(path, mode)
    return fd


def _fstat(fd: int, path: Path) -> os.stat_result:
    try:
        return os.fstat(fd)
    except OSError as exc:
        raise _translate(exc, path) from exc


def _reader(fd: int, path: Path) -> Reader:
    def read(offset: int, length: int) -> bytes:
        try:
            return os.pread(fd, max(0, length), max(0, offset))
        except OSError as exc:
            raise _translate(exc, path) from exc

    return read


def _hash_fd(fd: int, path: Path, block: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    buf = bytearray(block)
    view = memoryview(buf)
    offset = 0
    try:
        while True:
            n = os.preadv(fd, [buf], offset)
            if n == 0:
                break
            digest.update(view[:n])
            offset += n
    except OSError as exc:
        raise _translate(exc, path) from exc
    return digest.hexdigest(), offset


def _libmagic(fd: int, path: Path, what: Literal["mime", "description"]) -> str:
    """The MIME type or the description, from this thread's own libmagic handle (one
    libmagic pass over the file; the handles are made on first use in each thread)."""
    handles: dict[str, Any] | None = getattr(_local, "handles", None)
    if handles is None:
        handles = _local.handles = {}
    handle = handles.get(what)
    if handle is None:
        handle = handles[what] = magic.Magic(mime=what == "mime")
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return str(handle.from_descriptor(fd))
    except OSError as exc:
        raise _translate(exc, path) from exc
    except magic.MagicException as exc:
        raise errors.FileUnreadable(
            f"libmagic could not read the file: {exc}", path=str(path)
        ) from exc


def _translate(exc: OSError, path: Path) -> errors.FileProblem:
    if isinstance(exc, SymlinkRefused):
        # swapped for a symlink (or a folder on its way was) since it settled: not followed
        return errors.FileGone(
            f"no longer a regular file of the inbox: {exc.filename} is {exc.strerror}",
            path=str(path),
        )
    if exc.errno in _GONE:
        return errors.FileGone("the file is gone", path=str(path))
    hint = None
    if exc.errno in (errno.EACCES, errno.EPERM):
        hint = "give the daemon's user read permission on the file"
    return errors.FileUnreadable(
        f"cannot read the file: {exc.strerror or exc}", hint=hint, path=str(path)
    )


def _not_regular(path: Path, mode: int) -> errors.FileUnreadable:
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode) else None
    return errors.FileUnreadable(
        f"not a regular file ({kind or stat.filemode(mode)})", path=str(path)
    )


def _empty(path: Path) -> errors.FileRefused:
    return errors.FileRefused("the file is empty", reason="empty", path=str(path))


# --- refining libmagic's answer ---------------------------------------------------------


def _refine(mime: str, read: Reader, size: int, name: str) -> str:
    if mime in ft.ZIP_FAMILY:
        return _zip_type(read, size) or mime
    if mime == "video/x-ms-asf":
        return "audio/x-ms-wma" if _asf_audio_only(read) else mime
    if mime in ("video/mp4", "video/3gpp"):
        handlers = _mp4_handlers(read, size)
        if "soun" in handlers and "vide" not in handlers:
            return "audio/mp4" if mime == "video/mp4" else "audio/3gpp"
        return mime
    if mime in ("video/webm", "video/x-matroska"):
        tracks = _ebml_track_types(read, size)
        if 2 in tracks and 1 not in tracks:  # TrackType 2: audio, 1: video
            return "audio/webm" if mime == "video/webm" else "audio/x-matroska"
        return mime
    if mime == "audio/amr" and read(0, 9) == b"#!AMR-WB\n":  # libmagic names both "AMR"
        return "audio/amr-wb"
    if mime not in ft.GENERIC_TYPES:
        return mime
    head = read(0, SNIFF_WINDOW)
    if ft.is_rf64_wave(head):  # libmagic knows RF64 only with 0xFFFFFFFF as the RIFF size
        return "audio/wav"
    if mime == ft.GENERIC_BINARY:
        return _sniff_binary(head, read) or mime
    if ft.is_mbox_style_message(head):
        return "message/rfc822"
    # text libmagic cannot tell from prose (TSV, CSV in a legacy code page): the name decides
    suffix = name.rpartition(".")[2].lower() if "." in name.lstrip(".") else ""
    return ft.TEXT_BY_EXTENSION.get(suffix, mime)


def _sniff_binary(head: bytes, read: Reader) -> str | None:
    """What libmagic's "data" really is: MPEG/AAC audio behind zero padding or an ID3 tag."""
    tag_end = ft.id3v2_end(head)
    if tag_end is not None:
        start = max(10, tag_end - ID3_SLACK)
        return ft.scan_audio_frames(read(start, ID3_SLACK + SNIFF_WINDOW))
    first = len(head) - len(head.lstrip(b"\x00"))
    if 0 < first < len(head):  # zero padding before the first frame (players skip it)
        return ft.audio_frames_at(read(first, SNIFF_WINDOW), 0)
    return None


def _zip_type(read: Reader, size: int) -> str | None:
    """The OOXML flavour from ``[Content_Types].xml``, or the ODF type from ``mimetype``."""
    tail_len = min(size, 22 + 0xFFFF)
    tail = read(size - tail_len, tail_len)
    eocd = tail.rfind(b"PK\x05\x06")
    if eocd < 0 or eocd + 22 > len(tail):
        return None
    (entries,) = struct.unpack_from("<H", tail, eocd + 10)
    if entries > ZIP_ENTRY_LIMIT:  # 0xFFFF (ZIP64) included: too many to list in memory
        return None
    try:
        with zipfile.ZipFile(_ReaderFile(read, size)) as archive:
            names = set(archive.namelist())
            if "[Content_Types].xml" in names:
                data = _bounded_member(archive, "[Content_Types].xml", CONTENT_TYPES_LIMIT)
                found = ft.ooxml_type(data) if data is not None else None
                if found:
                    return found
            if "mimetype" in names:
                data = _bounded_member(archive, "mimetype", 128)
                declared = (data or b"").decode("ascii", "replace").strip()
                if declared.startswith("application/vnd.oasis.opendocument.") or (
                    declared == "application/epub+zip"
                ):
                    return declared
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, ValueError):
        return None
    except (NotImplementedError, RuntimeError):  # unsupported compression, encrypted member
        return None
    return None


def _bounded_member(archive: zipfile.ZipFile, member: str, limit: int) -> bytes | None:
    """The member's bytes if it decompresses to at most ``limit`` bytes, else None."""
    if archive.getinfo(member).file_size > limit:
        return None
    with archive.open(member) as stream:
        data = stream.read(limit + 1)
    return data if len(data) <= limit else None


class _ReaderFile:
    """A read-only, seekable file object over ``pread`` (zipfile needs one; no fd shared)."""

    def __init__(self, read: Reader, size: int) -> None:
        self._read, self._size, self._pos = read, size, 0

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n is None or n < 0 else n
        data = self._read(self._pos, n)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True


def _asf_audio_only(read: Reader) -> bool:
    head = read(0, 30)
    if len(head) < 30 or head[:16] != ft.ASF_HEADER:
        return False
    (header_size,) = struct.unpack_from("<Q", head, 16)
    return ft.asf_is_audio_only(read(0, min(header_size, ASF_HEADER_LIMIT)))


def _mp4_handlers(read: Reader, size: int) -> set[str]:
    """The handler types (``soun``, ``vide``...) of every track in an ISO-BMFF file."""
    handlers: set[str] = set()
    budget = [MP4_BOX_BUDGET]

    def walk(start: int, end: int) -> None:
        pos = start
        while pos + 8 <= end and budget[0] > 0:
            budget[0] -= 1
            head = read(pos, 16)
            if len(head) < 8:
                return
            box_size, box_type = struct.unpack_from(">I4s", head)
            header = 8
            if box_size == 1 and len(head) == 16:
                (box_size,) = struct.unpack_from(">Q", head, 8)
                header = 16
            elif box_size == 0:
                box_size = end - pos
            if box_size < header:
                return
            if box_type in (b"moov", b"trak", b"mdia"):
                walk(pos + header, min(pos + box_size, end))
            elif box_type == b"hdlr":
                body = read(pos + header, 12)  # version+flags, pre_defined, handler_type
                if len(body) == 12:
                    handlers.add(body[8:12].decode("latin-1"))
            pos += box_size

    walk(0, size)
    return handlers


def _ebml_track_types(read: Reader, size: int) -> set[int]:
    """The TrackType of every track in a WebM/Matroska file (1 video, 2 audio, 17 subtitles)."""
    types: set[int] = set()
    budget = [MP4_BOX_BUDGET]

    def walk(start: int, end: int) -> bool:  # False: stop looking (clusters reached)
        pos = start
        while pos < end and budget[0] > 0:
            budget[0] -= 1
            head = read(pos, 12)
            element = ft.ebml_element(head, 0)
            if element is None:
                return False
            element_id, data_size, header = element
            data_end = end if data_size == ft.EBML_UNKNOWN_SIZE else pos + header + data_size
            if element_id == ft.EBML_CLUSTER:
                return False  # media data: the tracks come before it
            if element_id in (ft.EBML_SEGMENT, ft.EBML_TRACKS, ft.EBML_TRACK_ENTRY):
                if not walk(pos + header, min(data_end, end)) or element_id == ft.EBML_TRACKS:
                    return False
            elif element_id == ft.EBML_TRACK_TYPE and 0 < data_size <= 8:
                types.add(int.from_bytes(read(pos + header, data_size), "big"))
            elif data_size == ft.EBML_UNKNOWN_SIZE:
                return False
            pos = data_end
        return True

    walk(0, size)
    return types
