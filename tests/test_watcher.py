"""The inbox watcher with real watchdog observers on real temporary folders.

Every waiting assertion polls (``wait_for``). Where a test shows that something produced *no*
event, it first drops a sentinel file after it and waits for the sentinel's event: one thread
dispatches an observer's events in order, so anything earlier would have arrived by then.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog.testing

from creatio_attach.errors import ConfigError
from creatio_attach.watch_mode import (
    check_watch_limit,
    choose_mode,
    filesystem_type,
    inotify_limit_error,
    max_user_watches,
)
from creatio_attach.watcher import (
    SCAN_PROGRESS_EVERY,
    FileEvent,
    InboxWatcher,
    WatchSpec,
    collapse,
    fstype_at,
    mode_for_fstype,
    parse_mountinfo,
)
from tests.conftest import wait_for


class Recorder:
    """A thread-safe sink that keeps every event, like the engine's queue would."""

    def __init__(self) -> None:
        self.events: list[FileEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: FileEvent) -> None:
        with self._lock:
            self.events.append(event)

    def snapshot(self) -> list[FileEvent]:
        with self._lock:
            return list(self.events)

    def kinds(self, path: Path) -> list[str]:
        return [e.kind for e in self.snapshot() if e.path == path]

    def paths(self) -> set[Path]:
        return {e.path for e in self.snapshot()}

    def saw(self, path: Path, kind: str, after: int = 0) -> bool:
        return any(e.path == path and e.kind == kind for e in self.snapshot()[after:])


Start = Callable[..., tuple[Recorder, InboxWatcher]]


@pytest.fixture(autouse=True)
def no_thread_leak() -> Iterator[None]:
    """Every test must leave no watcher thread behind (watchdog's own tests guard the same)."""
    before = set(threading.enumerate())
    yield
    wait_for(
        lambda: set(threading.enumerate()) <= before,
        timeout=10,
        what="the watcher's threads to end",
    )


@pytest.fixture
def start() -> Iterator[Start]:
    """Start watchers over the given specs; all are stopped after the test."""
    watchers: list[InboxWatcher] = []

    def run(*specs: WatchSpec, **kw: object) -> tuple[Recorder, InboxWatcher]:
        recorder = Recorder()
        watcher = InboxWatcher(specs, recorder, **kw)  # type: ignore[arg-type]
        watchers.append(watcher)
        watcher.start()
        return recorder, watcher

    yield run
    for watcher in watchers:
        watcher.stop()


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


MODES = ["inotify", "poll"]


def spec(folder: Path, mode: str = "inotify", **kw: object) -> WatchSpec:
    kw.setdefault("poll_interval", 0.05)
    return WatchSpec("cases", folder, mode=mode, **kw)  # type: ignore[arg-type]


def sentinel(recorder: Recorder, folder: Path, name: str = "zz-sentinel.pdf") -> None:
    """Drop a file and wait until it is reported: every earlier event has been dispatched."""
    path = folder / name
    path.write_bytes(b"sentinel")
    wait_for(lambda: path in recorder.paths(), what=f"an event for {path}")


# ---------------------------------------------------------------------------------------------
# start, stop, rescans


@pytest.mark.parametrize("mode", MODES)
def test_files_already_present_are_found_at_start(inbox: Path, start: Start, mode: str) -> None:
    (inbox / "sub").mkdir()
    present = [inbox / "SR1_scan.pdf", inbox / "sub" / "SR2.docx"]
    for path in present:
        path.write_bytes(b"content")
    (inbox / "~$SR2.docx").write_bytes(b"lock")

    recorder, watcher = start(spec(inbox, mode))

    # start() returns after the initial scan: the events are there already
    assert sorted(e.path for e in recorder.snapshot()) == sorted(present)
    assert {e.kind for e in recorder.snapshot()} == {"found"}
    assert all(e.inbox == "cases" for e in recorder.snapshot())
    assert watcher.modes == {"cases": mode}
    assert watcher.is_alive()


def test_events_carry_the_injected_clock(inbox: Path, start: Start) -> None:
    (inbox / "a.pdf").write_bytes(b"x")
    recorder, _ = start(spec(inbox), clock=lambda: 1234.5)
    (inbox / "b.pdf").write_bytes(b"x")
    wait_for(lambda: recorder.saw(inbox / "b.pdf", "closed"))
    assert {e.at for e in recorder.snapshot()} == {1234.5}


def test_rescan_finds_a_file_created_while_the_watcher_was_stopped(
    inbox: Path, start: Start
) -> None:
    recorder, watcher = start(spec(inbox, rescan_every=0))
    watcher.stop()
    assert not watcher.is_alive()
    late = inbox / "SR7_late.pdf"
    late.write_bytes(b"dropped while nobody watched")
    assert recorder.kinds(late) == []

    assert watcher.rescan() == 1
    assert recorder.kinds(late) == ["found"]
    # and a restart picks it up too
    watcher.start()
    assert recorder.kinds(late) == ["found", "found"]
    assert watcher.is_alive()


def test_the_periodic_rescan_reports_present_files_again(inbox: Path, start: Start) -> None:
    path = inbox / "SR1.pdf"
    path.write_bytes(b"x")
    recorder, watcher = start(spec(inbox, rescan_every=0.05))
    wait_for(lambda: recorder.kinds(path).count("found") >= 3, what="three rescans")
    assert watcher.is_alive()


def test_rescan_of_one_inbox_and_of_an_unknown_one(tmp_path: Path, start: Start) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "1.pdf").write_bytes(b"x")
    (b / "2.pdf").write_bytes(b"x")
    (b / "3.pdf").write_bytes(b"x")
    _, watcher = start(WatchSpec("a", a, mode="inotify"), WatchSpec("b", b, mode="poll"))
    assert watcher.modes == {"a": "inotify", "b": "poll"}
    assert watcher.rescan("a") == 1
    assert watcher.rescan("b") == 2
    assert watcher.rescan() == 3
    with pytest.raises(ValueError, match="unknown inbox"):
        watcher.rescan("c")


def test_a_scan_reports_its_progress_every_so_many_files(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(2 * SCAN_PROGRESS_EVERY + 7):
        (folder / f"{n}.pdf").write_bytes(b"x")
    watcher = InboxWatcher([WatchSpec("in", folder, mode="poll")], Recorder())
    calls: list[tuple[str, int]] = []
    assert watcher.rescan(progress=lambda inbox, found: calls.append((inbox, found))) == (
        2 * SCAN_PROGRESS_EVERY + 7
    )
    assert calls == [("in", SCAN_PROGRESS_EVERY), ("in", 2 * SCAN_PROGRESS_EVERY)]


def test_stop_leaves_no_threads_behind(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    before = set(threading.enumerate())
    watcher = InboxWatcher(
        [WatchSpec("a", a, mode="inotify"), WatchSpec("b", b, mode="poll", poll_interval=0.05)],
        Recorder(),
    )
    watcher.start()
    started = set(threading.enumerate()) - before
    # inotify: observer, emitter, reader; polling: observer, emitter; the rescan thread
    assert len(started) >= 6
    assert watcher.is_alive()
    watcher.stop()
    wait_for(lambda: set(threading.enumerate()) <= before, what="every watcher thread to end")
    assert not watcher.is_alive()


def test_a_missing_inbox_folder_is_a_config_error_and_nothing_runs(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    good = tmp_path / "good"
    good.mkdir()
    watcher = InboxWatcher(
        [WatchSpec("good", good), WatchSpec("bad", tmp_path / "missing")], Recorder()
    )
    with pytest.raises(ConfigError, match="does not exist") as caught:
        watcher.start()
    assert caught.value.path == str(tmp_path / "missing")
    assert set(threading.enumerate()) <= before
    assert not watcher.is_alive()


def test_a_sink_failing_during_the_initial_scan_fails_start_and_leaves_nothing_running(
    inbox: Path,
) -> None:
    (inbox / "a.pdf").write_bytes(b"x")
    before = set(threading.enumerate())

    def sink(event: FileEvent) -> None:
        raise RuntimeError("queue closed")

    watcher = InboxWatcher([spec(inbox)], sink)
    with pytest.raises(RuntimeError, match="queue closed"):
        watcher.start()
    assert not watcher.is_alive()
    wait_for(lambda: set(threading.enumerate()) <= before, what="the observers to end")


def test_inbox_names_must_be_unique(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unique"):
        InboxWatcher([WatchSpec("a", tmp_path), WatchSpec("a", tmp_path / "x")], Recorder())


def test_an_inbox_folder_deleted_while_watched_makes_the_watcher_not_alive(
    inbox: Path, start: Start
) -> None:
    _, watcher = start(spec(inbox, rescan_every=0))
    assert watcher.is_alive()
    inbox.rmdir()
    wait_for(lambda: not watcher.is_alive(), what="the watcher to report the lost inbox")


def test_a_failing_sink_does_not_stop_the_watching(inbox: Path, start: Start) -> None:
    seen: list[FileEvent] = []

    def sink(event: FileEvent) -> None:
        if event.path.name == "first.pdf":
            raise RuntimeError("queue broken for this one")
        seen.append(event)

    watcher = InboxWatcher([spec(inbox)], sink)
    watcher.start()
    try:
        (inbox / "first.pdf").write_bytes(b"x")
        (inbox / "second.pdf").write_bytes(b"x")
        wait_for(lambda: any(e.path.name == "second.pdf" for e in seen))
        assert watcher.is_alive()
    finally:
        watcher.stop()


# ---------------------------------------------------------------------------------------------
# what each change becomes


def test_a_file_written_slowly_ends_with_closed(inbox: Path, start: Start) -> None:
    recorder, _ = start(spec(inbox, mode="inotify"))
    path = inbox / "SR1_recording.wav"
    with path.open("wb") as f:
        for i in range(4):
            mark = len(recorder.snapshot())
            f.write(bytes([i]) * 4096)
            f.flush()
            wait_for(lambda m=mark: recorder.saw(path, "changed", after=m), what=f"write {i}")
        assert "closed" not in recorder.kinds(path)  # still open: never reported complete
    wait_for(lambda: recorder.saw(path, "closed"), what="the close-after-write event")
    kinds = recorder.kinds(path)
    assert kinds[-1] == "closed"
    assert set(kinds) == {"changed", "closed"}
    assert [e.kind for e in collapse(recorder.snapshot())] == ["closed"]


def test_reading_a_file_produces_no_event(inbox: Path, start: Start) -> None:
    path = inbox / "SR1.pdf"
    path.write_bytes(b"x")
    recorder, _ = start(spec(inbox, mode="inotify"))
    assert path.read_bytes() == b"x"  # open + close without writing
    sentinel(recorder, inbox)
    assert recorder.kinds(path) == ["found"]


def test_a_file_renamed_into_the_inbox_is_moved_in(
    tmp_path: Path, inbox: Path, start: Start
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    recorder, _ = start(spec(inbox, mode="inotify"))
    source = staging / "SR5_contract.pdf"
    source.write_bytes(b"%PDF-1.7 complete")
    target = inbox / "SR5_contract.pdf"
    source.rename(target)
    wait_for(lambda: recorder.saw(target, "moved_in"), what="moved_in")
    assert recorder.kinds(target) == ["moved_in"]
    assert source not in recorder.paths()


def test_a_partial_download_renamed_into_place_is_moved_in_only(inbox: Path, start: Start) -> None:
    recorder, _ = start(spec(inbox, mode="inotify"))
    partial = inbox / "SR6_scan.pdf.crdownload"
    partial.write_bytes(b"%PDF-1.4 downloading")
    done = inbox / "SR6_scan.pdf"
    partial.rename(done)
    wait_for(lambda: recorder.saw(done, "moved_in"))
    sentinel(recorder, inbox)
    assert recorder.kinds(done) == ["moved_in"]
    assert partial not in recorder.paths()


def test_renames_within_and_out_of_the_inbox(tmp_path: Path, inbox: Path, start: Start) -> None:
    done = inbox / "done"
    done.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in ("a.pdf", "b.pdf", "c.pdf"):
        (inbox / name).write_bytes(b"x")
    recorder, _ = start(spec(inbox, mode="inotify", excluded=(done,)))

    (inbox / "a.pdf").rename(inbox / "a2.pdf")  # renamed inside the inbox
    (inbox / "b.pdf").rename(done / "b.pdf")  # archived: into an excluded folder
    (inbox / "c.pdf").rename(outside / "c.pdf")  # moved out of the inbox
    # (a file is checked when its event is handled: one already gone gets no moved_in)
    wait_for(lambda: recorder.saw(inbox / "a2.pdf", "moved_in"))
    (inbox / "a2.pdf").unlink()
    sentinel(recorder, inbox)

    assert recorder.kinds(inbox / "a.pdf") == ["found", "deleted"]
    assert recorder.kinds(inbox / "a2.pdf") == ["moved_in", "deleted"]
    assert recorder.kinds(inbox / "b.pdf") == ["found", "deleted"]
    assert recorder.kinds(inbox / "c.pdf") == ["found", "deleted"]
    assert done / "b.pdf" not in recorder.paths()
    assert outside / "c.pdf" not in recorder.paths()


def test_poll_mode_sees_new_changed_and_deleted_files(inbox: Path, start: Start) -> None:
    recorder, watcher = start(spec(inbox, mode="poll", poll_interval=0.05))
    assert watcher.modes == {"cases": "poll"}
    path = inbox / "sub" / "SR9_scan.pdf"
    path.parent.mkdir()
    path.write_bytes(b"first")
    wait_for(lambda: recorder.saw(path, "changed"), what="the new file")
    mark = len(recorder.snapshot())
    path.write_bytes(b"first and more")
    wait_for(lambda: recorder.saw(path, "changed", after=mark), what="the growth")
    path.unlink()
    wait_for(lambda: recorder.saw(path, "deleted"), what="the deletion")
    assert "closed" not in recorder.kinds(path)  # polling cannot see a close


@pytest.mark.parametrize("mode", MODES)
def test_an_inbox_reached_through_a_symlink_reports_paths_under_the_configured_folder(
    tmp_path: Path, start: Start, mode: str
) -> None:
    real = tmp_path / "mnt" / "drop"
    real.mkdir(parents=True)
    (real / "present.pdf").write_bytes(b"x")
    configured = tmp_path / "inbox-link"
    configured.symlink_to(real, target_is_directory=True)
    recorder, _ = start(spec(configured, mode))
    (real / "new.pdf").write_bytes(b"x")
    wait_for(lambda: configured / "new.pdf" in recorder.paths(), what="the new file")
    assert recorder.kinds(configured / "present.pdf") == ["found"]
    assert all(e.path.parent == configured for e in recorder.snapshot())


@pytest.mark.parametrize("mode", MODES)
def test_a_folder_moved_into_the_inbox_reports_each_file(
    tmp_path: Path, inbox: Path, start: Start, mode: str
) -> None:
    staging = tmp_path / "batch"
    (staging / "deeper").mkdir(parents=True)
    files = ["SR1_a.pdf", "SR2_b.pdf", "deeper/SR3_c.pdf"]
    for name in files:
        (staging / name).write_bytes(b"x")
    (staging / "~$lock.docx").write_bytes(b"x")
    recorder, _ = start(spec(inbox, mode))
    staging.rename(inbox / "batch")
    expected = {inbox / "batch" / name for name in files}
    wait_for(lambda: expected <= recorder.paths(), what="every file of the moved folder")
    sentinel(recorder, inbox)
    assert recorder.paths() == expected | {inbox / "zz-sentinel.pdf"}


# ---------------------------------------------------------------------------------------------
# what is never reported


@pytest.mark.parametrize("mode", MODES)
def test_ignored_names_produce_no_events(inbox: Path, start: Start, mode: str) -> None:
    recorder, _ = start(spec(inbox, mode))
    ignored = [inbox / "~$x.docx", inbox / ".hidden", inbox / "x.part", inbox / "Thumbs.db"]
    for path in ignored:
        path.write_bytes(b"x")
    (inbox / ".hidden").rename(inbox / ".hidden2")
    sentinel(recorder, inbox)
    assert recorder.paths() == {inbox / "zz-sentinel.pdf"}


@pytest.mark.parametrize("mode", MODES)
def test_excluded_folders_inside_the_inbox_never_produce_events(
    inbox: Path, start: Start, mode: str
) -> None:
    archive = inbox / "archive"
    (archive / "2026-11-27").mkdir(parents=True)
    (archive / "2026-11-27" / "old.pdf").write_bytes(b"x")
    recorder, _ = start(spec(inbox, mode, excluded=(archive, inbox / "failed")))
    assert recorder.snapshot() == []  # the initial scan skipped the archive

    (archive / "2026-11-28").mkdir()
    (archive / "2026-11-28" / "new.pdf").write_bytes(b"x")
    (inbox / "failed").mkdir()
    (inbox / "failed" / "bad.pdf").write_bytes(b"x")
    (inbox / "failed" / "bad.pdf").rename(inbox / "failed" / "bad2.pdf")
    sentinel(recorder, inbox)
    assert recorder.paths() == {inbox / "zz-sentinel.pdf"}


@pytest.mark.parametrize("mode", MODES)
def test_a_symlink_pointing_outside_the_inbox_is_not_taken(
    tmp_path: Path, inbox: Path, start: Start, mode: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"not for Creatio")
    (inbox / "before.txt").symlink_to(outside / "secret.txt")
    recorder, watcher = start(spec(inbox, mode))
    (inbox / "after.txt").symlink_to(outside / "secret.txt")
    (inbox / "dir-link").symlink_to(outside, target_is_directory=True)
    (outside / "more.txt").write_bytes(b"x")
    sentinel(recorder, inbox)
    assert recorder.paths() == {inbox / "zz-sentinel.pdf"}
    assert watcher.rescan() == 1  # the sentinel only


@pytest.mark.parametrize("mode", MODES)
def test_a_fifo_is_not_a_candidate_and_is_never_opened(
    inbox: Path, start: Start, mode: str
) -> None:
    early = inbox / "early.fifo"
    os.mkfifo(early)
    recorder, watcher = start(spec(inbox, mode))
    late = inbox / "late.fifo"
    os.mkfifo(late)
    sentinel(recorder, inbox)
    assert watcher.rescan() == 1
    assert recorder.paths() == {inbox / "zz-sentinel.pdf"}
    for fifo in (early, late):
        # a FIFO with no reader refuses a non-blocking writer (ENXIO): nobody holds it open
        with pytest.raises(OSError) as caught:
            os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        assert caught.value.errno == errno.ENXIO


@pytest.mark.parametrize("mode", MODES)
def test_a_non_recursive_inbox_ignores_subfolders(inbox: Path, start: Start, mode: str) -> None:
    (inbox / "sub").mkdir()
    (inbox / "sub" / "before.pdf").write_bytes(b"x")
    (inbox / "top.pdf").write_bytes(b"x")
    recorder, watcher = start(spec(inbox, mode, recursive=False))
    assert recorder.paths() == {inbox / "top.pdf"}
    (inbox / "sub" / "after.pdf").write_bytes(b"x")
    (inbox / "sub2").mkdir()
    (inbox / "sub2" / "new.pdf").write_bytes(b"x")
    sentinel(recorder, inbox)
    assert recorder.paths() == {inbox / "top.pdf", inbox / "zz-sentinel.pdf"}
    assert watcher.rescan() == 2


# ---------------------------------------------------------------------------------------------
# load


def test_a_thousand_files_dropped_at_once_each_get_an_event(inbox: Path, start: Start) -> None:
    recorder, _ = start(spec(inbox, mode="inotify", rescan_every=2.0))  # rescan as backstop
    dropped = {inbox / f"SR{i:04d}_scan.pdf" for i in range(1000)}
    for path in dropped:
        path.write_bytes(b"%PDF-1.4 " + path.name.encode())
    wait_for(lambda: dropped <= recorder.paths(), timeout=30, what="an event for every file")
    assert recorder.paths() == dropped

    def all_complete() -> bool:
        # each write ends with its close-after-write (or, had inotify dropped it, a rescan)
        return {e.kind for e in collapse(recorder.snapshot())} <= {"closed", "found"}

    wait_for(all_complete, timeout=30, what="every file to end closed or found")


# ---------------------------------------------------------------------------------------------
# modes and file systems (pure helpers)

MOUNTINFO = "\n".join(
    [
        "22 27 0:21 / /proc rw,relatime - proc proc rw",
        "27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
        "40 27 0:40 / /srv/drop rw,relatime shared:5 - nfs4 fs:/export rw,vers=4.2",
        "41 40 0:41 / /srv/drop/scans rw master:7 - cifs //nas/scans rw",
        r"42 27 0:42 / /mnt/my\040share rw - fuse.sshfs me@host:/x rw",
        "43 27 0:43 / /srv/drop rw - ext4 /dev/sdb1 rw",  # mounted over the nfs4 one
        "44 27 0:44 / /srv/dropbox rw - xfs /dev/sdc1 rw",
        "garbage line",
    ]
)


def test_mountinfo_is_parsed_with_escapes_and_optional_fields() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert ("/mnt/my share", "fuse.sshfs") in mounts
    assert ("/srv/drop/scans", "cifs") in mounts
    assert len(mounts) == 7


def test_the_longest_mount_point_wins_and_a_later_mount_hides_an_earlier_one() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert fstype_at("/srv/drop/scans/2026/a.pdf", mounts) == "cifs"
    assert fstype_at("/srv/drop/other", mounts) == "ext4"  # the later mount on /srv/drop
    assert fstype_at("/srv/dropbox/x", mounts) == "xfs"  # not under /srv/drop
    assert fstype_at("/mnt/my share/in", mounts) == "fuse.sshfs"
    assert fstype_at("/home/x", mounts) == "ext4"
    assert fstype_at("/x", []) == ""


def test_filesystem_type_of_a_temporary_folder_is_what_findmnt_says(tmp_path: Path) -> None:
    fstype = filesystem_type(tmp_path)
    assert fstype
    findmnt = shutil.which("findmnt")
    if findmnt:  # util-linux's answer, when it is installed, must agree
        out = subprocess.run(
            [findmnt, "-n", "-o", "FSTYPE", "--target", str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert fstype == out


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "fuse", "9p"])
def test_auto_polls_where_inotify_sees_nothing(fstype: str) -> None:
    mode, reason = mode_for_fstype(fstype, "auto")
    assert mode == "poll"
    assert fstype in reason


def test_auto_uses_inotify_on_local_file_systems_and_obeys_an_explicit_mode() -> None:
    assert mode_for_fstype("ext4", "auto")[0] == "inotify"
    assert mode_for_fstype("", "auto") == (
        "inotify",
        "file system type unknown; assuming a local one",
    )
    assert mode_for_fstype("ext4", "poll")[0] == "poll"
    mode, reason = mode_for_fstype("nfs4", "inotify")
    assert mode == "inotify"
    assert "nfs4 does not deliver inotify events" in reason


def test_choose_mode_reads_the_real_file_system(tmp_path: Path) -> None:
    expected = mode_for_fstype(filesystem_type(tmp_path), "auto")
    assert choose_mode(tmp_path, "auto") == expected
    assert choose_mode(tmp_path, "poll")[0] == "poll"


def test_the_inotify_watch_limit_names_its_sysctl() -> None:
    error = inotify_limit_error(OSError(errno.ENOSPC, "inotify watch limit reached"), "/srv/in")
    assert isinstance(error, ConfigError)
    assert error.exit_code == 78
    assert "fs.inotify.max_user_watches" in str(error)
    assert "/srv/in" in str(error)


def test_the_inotify_instance_limit_names_its_sysctl() -> None:
    error = inotify_limit_error(OSError(errno.EMFILE, "inotify instance limit"), Path("/srv/in"))
    assert isinstance(error, ConfigError)
    assert "fs.inotify.max_user_instances" in str(error)


def test_more_folders_than_the_watch_limit_is_an_error_before_watching(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "x" / "y").mkdir(parents=True)  # a, x, y: three watches
    (b / "z").mkdir(parents=True)  # b, z: two more
    (a / "link").symlink_to(b, target_is_directory=True)  # not followed: no watch
    specs = [WatchSpec("a", a), WatchSpec("b", b)]
    check_watch_limit(specs, 5)
    check_watch_limit([WatchSpec("a", a, recursive=False), WatchSpec("b", b)], 3)
    with pytest.raises(ConfigError, match="more than 4 folders") as caught:
        check_watch_limit(specs, 4)
    assert "fs.inotify.max_user_watches" in str(caught.value)
    assert caught.value.path == str(b)


def test_the_watch_limit_is_read_from_the_given_file(tmp_path: Path) -> None:
    limit = tmp_path / "max_user_watches"
    limit.write_text("8192\n", encoding="ascii")
    assert max_user_watches(limit) == 8192
    limit.write_text("not a number\n", encoding="ascii")
    assert max_user_watches(limit) is None
    assert max_user_watches(tmp_path / "missing") is None


def test_a_readable_watch_limit_is_checked_before_watching(tmp_path: Path, start: Start) -> None:
    inbox = tmp_path / "inbox"
    (inbox / "2026" / "11").mkdir(parents=True)  # three watches
    limit = tmp_path / "max_user_watches"
    limit.write_text("2\n", encoding="ascii")
    with (
        structlog.testing.capture_logs() as logs,
        pytest.raises(ConfigError, match="more than 2 folders"),
    ):
        start(spec(inbox), limit_file=limit)
    assert not [e for e in logs if e["event"].startswith("inotify watch limit unknown")]


def test_an_unreadable_watch_limit_is_logged_once_and_the_pre_check_skipped(
    tmp_path: Path, start: Start
) -> None:
    """As under the unit's ProcSubset=pid, where /proc/sys is hidden: the watcher starts (the
    tree is not counted), says so once per process, not again on a reload's new watcher."""
    inbox = tmp_path / "inbox"
    (inbox / "2026" / "11").mkdir(parents=True)
    hidden = tmp_path / "proc-sys-hidden" / "max_user_watches"
    with structlog.testing.capture_logs() as logs:
        recorder, first = start(spec(inbox), limit_file=hidden)
        sentinel(recorder, inbox / "2026" / "11")  # watched, subfolders too
        first.stop()
        recorder, _ = start(spec(inbox), limit_file=hidden)  # a reload
        sentinel(recorder, inbox)
    said = [e for e in logs if e["event"] == "inotify watch limit unknown, pre-check skipped"]
    assert len(said) == 1, said
    (entry,) = said
    assert entry["log_level"] == "info"
    assert entry["component"] == "watcher"
    assert entry["limit_file"] == str(hidden)
    assert entry["inboxes"] == ["cases"]
    assert "ProcSubset=pid" in entry["note"]
    assert "sysctl fs.inotify.max_user_watches" in entry["hint"]
    assert "rescan_every" in entry["hint"]


def test_an_unreadable_watch_limit_is_not_mentioned_for_polled_inboxes(
    tmp_path: Path, inbox: Path, start: Start
) -> None:
    hidden = tmp_path / "proc-sys-hidden" / "max_user_watches"
    with structlog.testing.capture_logs() as logs:
        start(spec(inbox, mode="poll"), limit_file=hidden)
    assert not [e for e in logs if e["event"].startswith("inotify watch limit unknown")]


def test_other_os_errors_are_not_limit_errors() -> None:
    assert inotify_limit_error(OSError(errno.EACCES, "denied"), "/srv/in") is None


def test_mode_choice_is_logged_with_the_reason(inbox: Path, start: Start) -> None:
    with structlog.testing.capture_logs() as logs:
        start(spec(inbox, mode="poll"))
    chosen = [entry for entry in logs if entry["event"] == "inbox watch mode"]
    assert chosen == [
        {
            "event": "inbox watch mode",
            "log_level": "info",
            "component": "watcher",
            "inbox": "cases",
            "folder": str(inbox),
            "mode": "poll",
            "reason": 'watch = "poll" is configured',
            "poll_interval": 0.05,
        }
    ]


def test_dated_trees_made_quickly_are_watched_once_without_warnings(
    inbox: Path, start: Start
) -> None:
    """A PBX making ``YYYY/MM/DD`` folders (and the daemon its ``.archive/<date>`` ones) while
    watched: watchdog alone would add some folders' watches twice (the walk after the parent's
    creation and the folder's own creation event) and warn ``Callback with id ... already
    exists for watch``. Warnings are raised in watchdog's reader thread, so they are recorded
    process-wide for this test and must be none."""
    archive = inbox / ".archive"
    recorder, _ = start(spec(inbox, mode="inotify", excluded=(archive,)))
    made: list[Path] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(150):
            # a pause of 0-1.2 ms between the levels: the parent's watch is often added between
            # two mkdirs, which is when the creation event and the walk both see the child
            pause = 0.0003 * (i % 5)
            day = inbox / f"{2000 + i}" / "11" / "28"
            for level in (day.parents[1], day.parent, day):
                level.mkdir()
                time.sleep(pause)
            (day / f"in-{i}.wav").write_bytes(b"RIFF")
            made.append(day / f"in-{i}.wav")
            (archive / f"2024-11-{i % 28 + 1:02d}" / f"n{i}").mkdir(parents=True)
        sentinel(recorder, inbox)  # every earlier kernel event has been handled
        wait_for(lambda: set(made) <= recorder.paths(), what="every recording in the new trees")
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert not any(archive in p.parents for p in recorder.paths())
