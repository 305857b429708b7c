"""The engine's parts on their own: the settle tracker (pure), the folders adapter (real files),
and the pipeline with a stand-in Creatio that answers what a test needs (a real class
implementing the ``ports.Creatio`` Protocol, not a mock), a real journal and real files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from creatio_attach.confine import Roots
from creatio_attach.dispose import NAME_MAX, LocalFolders, candidate_names
from creatio_attach.engine import NOTE_BATCH, Engine
from creatio_attach.errors import (
    CreatioRejected,
    CreatioUnavailable,
    FileProblem,
    ParentNotFound,
)
from creatio_attach.events import FileEvent
from creatio_attach.journal import Journal, State
from creatio_attach.notify import Heartbeat, Notifier
from creatio_attach.ports import Detection, FileFacts, InboxPolicy, Uploaded
from creatio_attach.routing import Rule
from creatio_attach.service import DetectInspector
from creatio_attach.settle import SettleTracker, Stat
from tests.conftest import CorpusFile, wait_for
from tests.test_notify import FakeSystemd

# ---------------------------------------------------------------------------------------------
# settling


def test_a_closed_file_is_complete_at_once() -> None:
    t = SettleTracker()
    t.note(("in", "/a"), "closed", Stat(10, 1, 1), now=100.0, epoch=5.0, settle=2.0)
    assert t.due(100.0) == [("in", "/a")]
    settled = t.check(("in", "/a"), Stat(10, 1, 1), now=100.0)
    assert settled is not None and settled.stat.size == 10
    assert len(t) == 0


def test_a_growing_file_waits_until_quiet_for_the_settle_period() -> None:
    t = SettleTracker()
    key = ("in", "/a")
    t.note(key, "changed", Stat(10, 1_000_000_000, 1), now=100.0, epoch=1.5, settle=2.0)
    assert t.due(101.9) == []
    assert t.due(102.0) == [key]
    assert t.check(key, Stat(20, 2_000_000_000, 1), now=102.0) is None  # it grew: wait again
    assert t.due(103.9) == []
    assert t.due(104.0) == [key]
    assert t.check(key, Stat(20, 2_000_000_000, 1), now=104.0) is not None


def test_a_write_after_the_close_demotes_it_and_a_delete_forgets_it() -> None:
    t = SettleTracker()
    key = ("in", "/a")
    t.note(key, "closed", Stat(10, 1, 1), now=100.0, epoch=0.0, settle=2.0)
    t.note(key, "changed", Stat(15, 2, 1), now=100.1, epoch=0.0, settle=2.0)
    assert t.due(100.2) == []
    t.note(key, "deleted", None, now=100.3, epoch=0.0, settle=2.0)
    assert t.due(1000.0) == [] and len(t) == 0


def test_a_file_found_long_after_its_last_write_needs_no_wait() -> None:
    t = SettleTracker()
    t.note(("in", "/old"), "found", Stat(10, 0, 1), now=100.0, epoch=3600.0, settle=2.0)
    assert t.due(100.0) == [("in", "/old")]


# ---------------------------------------------------------------------------------------------
# folders


def test_candidate_names_add_a_counter_before_the_extension() -> None:
    names = candidate_names("report.pdf")
    assert [next(names) for _ in range(3)] == ["report.pdf", "report (1).pdf", "report (2).pdf"]
    assert list(candidate_names("x.tar.gz"))[1] == "x (1).tar.gz"
    assert list(candidate_names(".profile"))[1] == ".profile (1)"


def test_candidate_names_stay_within_255_bytes_without_splitting_a_character() -> None:
    name = "é" * 125 + "x.pdf"  # 255 bytes
    first, second = list(candidate_names(name))[:2]
    assert first == name
    assert len(second.encode()) <= NAME_MAX
    assert second.endswith(" (1).pdf")
    second.encode().decode("utf-8")


def test_move_never_overwrites(tmp_path: Path) -> None:
    folders = LocalFolders()
    dest = tmp_path / "archive" / "a.pdf"
    for n in range(3):
        src = tmp_path / f"src{n}.pdf"
        src.write_text(f"content {n}")
        folders.move(src, dest)
        assert not src.exists()
    got = {p.name: p.read_text() for p in dest.parent.iterdir()}
    assert got == {"a.pdf": "content 0", "a (1).pdf": "content 1", "a (2).pdf": "content 2"}


def test_a_move_cut_short_after_its_link_is_finished_not_copied_again(tmp_path: Path) -> None:
    """A crash between the link into the archive and the unlink from the inbox leaves one
    file under two names: the next move only removes the inbox name (no `x (1).pdf`)."""
    src = tmp_path / "inbox" / "x.pdf"
    src.parent.mkdir()
    src.write_bytes(b"one file")
    dest = tmp_path / "archive" / "x.pdf"
    dest.parent.mkdir()
    os.link(src, dest)  # the link happened, the unlink did not
    assert LocalFolders().move(src, dest) == dest
    assert not src.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["x.pdf"]
    other = tmp_path / "inbox" / "x.pdf"
    other.write_bytes(b"another file, same name")
    assert LocalFolders().move(other, dest).name == "x (1).pdf"  # a different file: kept apart


def test_move_across_file_systems_copies_without_overwriting(tmp_path: Path) -> None:
    shm = _other_file_system(tmp_path)
    src = shm / f"creatio-attach-test-{os.getpid()}.pdf"
    src.write_bytes(b"%PDF cross device")
    (tmp_path / "a.pdf").write_bytes(b"already here")
    final = LocalFolders().move(src, tmp_path / "a.pdf")
    assert final.name == "a (1).pdf"
    assert final.read_bytes() == b"%PDF cross device"
    assert (tmp_path / "a.pdf").read_bytes() == b"already here"
    assert not src.exists()


def _other_file_system(tmp_path: Path) -> Path:
    shm = Path("/dev/shm")
    if (
        not (shm.is_dir() and os.access(shm, os.W_OK))
        or shm.stat().st_dev == tmp_path.stat().st_dev
    ):
        pytest.fail("this test needs /dev/shm on another file system than tmp_path")
    return shm


def test_a_move_links_a_swapped_in_symlink_as_the_link_never_its_target(tmp_path: Path) -> None:
    """``linkat`` follows a symlink when asked to: the archive would get a hard link to any
    file the daemon can reach on that file system."""
    secret = tmp_path / "secret"
    secret.write_text("TOP SECRET")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "x.pdf").symlink_to(secret)  # swapped in after the checks
    folders = LocalFolders(roots=Roots([inbox]))
    final = folders.move(inbox / "x.pdf", inbox / ".archive" / "x.pdf")
    assert final.is_symlink()  # the link itself went, not the file it points to
    assert secret.stat().st_nlink == 1


def test_a_copy_across_file_systems_that_cannot_read_its_source_leaks_no_descriptor(
    tmp_path: Path,
) -> None:
    shm = _other_file_system(tmp_path)
    inbox = shm / f"creatio-attach-inbox-{os.getpid()}"
    inbox.mkdir()
    try:
        (tmp_path / "secret").write_text("TOP SECRET")
        (inbox / "x.pdf").symlink_to(tmp_path / "secret")  # refused: O_NOFOLLOW
        folders = LocalFolders(roots=Roots([inbox, tmp_path]))
        before = len(list(Path("/proc/self/fd").iterdir()))
        for _ in range(20):
            with pytest.raises(FileProblem):
                folders.move(inbox / "x.pdf", tmp_path / "archive" / "x.pdf")
        assert len(list(Path("/proc/self/fd").iterdir())) == before
        assert not (tmp_path / "archive" / "x.pdf").exists()  # nothing half made
    finally:
        shutil.rmtree(inbox)


def test_a_folder_outside_the_inbox_is_made_with_its_fixed_part(tmp_path: Path) -> None:
    """``archive_dir = "/srv/archive/{date}"``: ``/srv/archive`` may not exist yet."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "x.pdf").write_text("x")
    root = tmp_path / "srv" / "archive"
    folders = LocalFolders(roots=Roots([inbox], [root]))
    final = folders.move(inbox / "x.pdf", root / "2026-11-28" / "x.pdf")
    assert final == root / "2026-11-28" / "x.pdf" and final.read_text() == "x"


def test_a_move_onto_its_own_place_keeps_the_file(tmp_path: Path) -> None:
    """A file found in the archive after a crash is "archived" where it already is, under
    whatever name it has there."""
    archive = tmp_path / "inbox" / ".archive"
    archive.mkdir(parents=True)
    (archive / "x.pdf").write_text("the only copy")
    folders = LocalFolders(roots=Roots([tmp_path / "inbox"]))
    assert folders.move(archive / "x.pdf", archive / "x.pdf") == archive / "x.pdf"
    (archive / "x (1).pdf").write_text("moved there under a free name")
    assert folders.move(archive / "x (1).pdf", archive / "x.pdf") == archive / "x (1).pdf"
    (archive / "x (150).pdf").write_text("far down the list of free names")
    assert folders.move(archive / "x (150).pdf", archive / "x.pdf") == archive / "x (150).pdf"
    assert sorted(p.read_text() for p in archive.iterdir()) == [
        "far down the list of free names",
        "moved there under a free name",
        "the only copy",
    ]


def test_the_rename_used_where_hard_links_are_refused_never_replaces(tmp_path: Path) -> None:
    """``renameat2(RENAME_NOREPLACE)``: the fallback of a move when ``link`` is refused (a
    file system without hard links, or ``protected_hardlinks`` for a file the daemon does not
    own)."""
    from creatio_attach.dispose import _rename_no_replace

    (tmp_path / "a").write_text("mine")
    (tmp_path / "b").write_text("a person's file")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _rename_no_replace("a", fd, "b", fd) is False
        assert (tmp_path / "b").read_text() == "a person's file"
        assert _rename_no_replace("a", fd, "c", fd) is True
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]


def test_a_move_across_file_systems_cut_short_after_its_copy_makes_no_second_copy(
    tmp_path: Path,
) -> None:
    """The copy was complete and the source not removed yet: the next move finds its own
    copy (same size, mtime and content) and only removes the source."""
    shm = _other_file_system(tmp_path)
    src = shm / f"creatio-attach-cut-{os.getpid()}.pdf"
    src.write_bytes(b"%PDF moved across")
    dest = tmp_path / "archive" / "x.pdf"
    dest.parent.mkdir()
    shutil.copy2(src, dest)  # what the cut-short move left: a full copy, mtime kept
    try:
        assert LocalFolders().move(src, dest) == dest
        assert not src.exists()
        assert sorted(p.name for p in dest.parent.iterdir()) == ["x.pdf"]
    finally:
        src.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# the pipeline with a stand-in Creatio


class FakeClock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t


class ScriptedCreatio:
    """Answers find_parent with one Id and upload with the exception it is given."""

    def __init__(self, upload_error: Exception | None = None) -> None:
        self.upload_error = upload_error
        self.uploads: list[str] = []

    def find_parent(self, schema: str, where: Mapping[str, str | int]) -> str:
        if where.get("Number") == "SR404":
            raise ParentNotFound(f"no {schema} with Number SR404")
        return "3f2504e0-4f89-11d3-9a0c-0305e82c3301"

    def upload(self, path: Path, **kw: str | None) -> Uploaded:
        if self.upload_error is not None:
            raise self.upload_error
        import hashlib

        data = path.read_bytes()
        self.uploads.append(str(kw["record_id"]))
        return Uploaded(str(kw["record_id"]), len(data), hashlib.sha256(data).hexdigest())

    def record_size(self, file_object: str, record_id: str) -> int | None:
        return None

    def delete_record(self, file_object: str, record_id: str) -> None:
        return None


def _engine(
    tmp_path: Path,
    creatio: ScriptedCreatio,
    clock: FakeClock,
    inspector: DetectInspector | None = None,
) -> tuple[Engine, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    rule = Rule(
        inbox="in",
        pattern=re.compile(r"^(?P<number>SR\d+)_"),
        entity="CaseFile",
        parent_schema="Case",
        parent_where={"Number": "{number}"},
    )
    policy = InboxPolicy(name="in", folder=folder, rule=rule, settle=0.0)
    engine = Engine(
        inboxes=[policy],
        journal=Journal.open(tmp_path / "state"),
        inspector=inspector or DetectInspector(),
        folders=LocalFolders(),
        creatio=creatio,  # type: ignore[arg-type]
        clock=clock,
        concurrency=1,
        retry_base=2.0,
        retry_cap=60.0,
    )
    return engine, folder


def _drop(engine: Engine, folder: Path, name: str, pdf: CorpusFile, clock: FakeClock) -> None:
    shutil.copyfile(pdf.path, folder / name)
    engine.sink(FileEvent("in", folder / name, "closed", clock.now()))


def test_a_rejection_fails_the_file_with_status_and_creatios_message(
    tmp_path: Path, corpus_by_name: dict[str, CorpusFile]
) -> None:
    clock = FakeClock()
    rejected = CreatioRejected("create refused", status=400, creatio_message="Name is read-only")
    engine, folder = _engine(tmp_path, ScriptedCreatio(rejected), clock)
    engine.start()
    try:
        _drop(engine, folder, "SR1_x.pdf", corpus_by_name["filetype-fixture.pdf"], clock)
        note = folder / ".failed" / "SR1_x.pdf.error.json"
        wait_for(note.exists, timeout=10, what="the error note")
    finally:
        engine.stop(5)
    doc = json.loads(note.read_text())
    assert (doc["reason"], doc["status"], doc["creatio_message"]) == (
        "creatio_rejected",
        400,
        "Name is read-only",
    )
    assert doc["record_id"]  # the Id claimed before the create call
    assert doc["failed_at"] and doc["first_seen"]


def test_retry_after_is_honoured_and_the_next_attempt_time_is_in_the_journal(
    tmp_path: Path, corpus_by_name: dict[str, CorpusFile]
) -> None:
    clock = FakeClock()
    busy = CreatioUnavailable("busy", status=503, retry_after=120.0)
    creatio = ScriptedCreatio(busy)
    engine, folder = _engine(tmp_path, creatio, clock)
    engine.start()
    try:
        _drop(engine, folder, "SR2_x.pdf", corpus_by_name["filetype-fixture.pdf"], clock)
        wait_for(lambda: engine.journal.by_state(State.RETRY_WAIT), timeout=10, what="retry_wait")
        (row,) = engine.journal.by_state(State.RETRY_WAIT)
        assert row.next_attempt_at is not None and row.next_attempt_at >= clock.t + 120.0
        assert row.attempts == 1 and row.last_error is not None
        assert row.last_error.status == 503
        assert (folder / "SR2_x.pdf").exists()  # nothing moves while it waits
        creatio.upload_error = None
        clock.t += 121.0  # its time comes: the intake hands it to a worker again
        wait_for(lambda: engine.journal.by_state(State.DONE), timeout=10, what="done")
    finally:
        engine.stop(5)
    assert len(creatio.uploads) == 1
    assert engine.status().creatio_down_since is None


def test_an_unmatched_file_waits_in_the_unmatched_folder_on_its_schedule(
    tmp_path: Path, corpus_by_name: dict[str, CorpusFile]
) -> None:
    clock = FakeClock()
    engine, folder = _engine(tmp_path, ScriptedCreatio(), clock)
    engine.start()
    try:
        _drop(engine, folder, "SR404_x.pdf", corpus_by_name["filetype-fixture.pdf"], clock)
        wait_for(lambda: engine.journal.by_state(State.UNMATCHED), timeout=10, what="unmatched")
    finally:
        engine.stop(5)
    (row,) = engine.journal.by_state(State.UNMATCHED)
    assert row.location == str(folder / ".unmatched" / "SR404_x.pdf")
    assert row.next_attempt_at == clock.t + 300.0
    assert row.give_up_at == clock.t + 86400.0


def test_a_bug_in_one_file_makes_it_wait_instead_of_spinning(
    tmp_path: Path, corpus_by_name: dict[str, CorpusFile]
) -> None:
    clock = FakeClock()
    creatio = ScriptedCreatio(RuntimeError("a bug in an adapter"))
    engine, folder = _engine(tmp_path, creatio, clock)
    engine.start()
    try:
        _drop(engine, folder, "SR3_x.pdf", corpus_by_name["filetype-fixture.pdf"], clock)
        wait_for(lambda: engine.journal.by_state(State.RETRY_WAIT), timeout=10, what="waiting")
        engine.sink(FileEvent("in", folder / "SR3_x.pdf", "found", clock.now()))  # a rescan
        wait_for(engine.is_idle, timeout=10, what="idle")
    finally:
        engine.stop(5)
    (row,) = engine.journal.by_state(State.RETRY_WAIT)
    assert row.attempts == 1  # the clock stands still: no second try before the backoff ends
    assert row.last_error is not None and row.last_error.reason == "internal"
    assert "a bug in an adapter" in row.last_error.message


class GatedInspector(DetectInspector):
    """The real inspector with a gate: the intake's ``gate_at``-th look at a file waits until
    a worker has begun on a file (10 s at most), which then notes how many watcher events
    the intake had not looked at yet. So the outcome does not depend on thread timing."""

    def __init__(self, gate_at: int) -> None:
        super().__init__()
        self.engine: Engine | None = None
        self.gate_at = gate_at
        self.intake_looks = 0
        self.worker_began = threading.Event()
        self.waiting_when_a_worker_began: int | None = None

    def snapshot(self, path: Path) -> FileFacts:
        if threading.current_thread().name == "creatio-attach-intake":
            self.intake_looks += 1
            if self.intake_looks == self.gate_at:
                self.worker_began.wait(10)
        else:
            self._began()
        return super().snapshot(path)

    def detect(self, path: Path) -> Detection:
        self._began()
        return super().detect(path)

    def _began(self) -> None:
        if not self.worker_began.is_set() and self.engine is not None:
            self.waiting_when_a_worker_began = self.engine.status().events_waiting
            self.worker_began.set()


def test_a_burst_of_events_is_handed_on_a_batch_at_a_time(tmp_path: Path) -> None:
    """The first scan of a large inbox queues an event per file. The intake notes them a batch
    at a time and hands on what is due in between: a worker begins while most of the burst
    still waits (it used to wait until every event was noted: seconds at 50,000 files).

    The intake looks at each file once when it notes its event and once when it is due, so
    with batches of ``NOTE_BATCH`` the first file is handed on at its look ``NOTE_BATCH + 1``;
    the gate holds the intake at look ``2.5 * NOTE_BATCH`` until a worker has begun."""
    clock = FakeClock()
    creatio = ScriptedCreatio()
    inspector = GatedInspector(gate_at=NOTE_BATCH * 5 // 2)
    engine, folder = _engine(tmp_path, creatio, clock, inspector)
    inspector.engine = engine
    count = 3 * NOTE_BATCH
    for n in range(count):
        path = folder / f"SR1_{n:05d}.txt"
        path.write_bytes(b"a line of text\n")
        engine.sink(FileEvent("in", path, "closed", clock.now()))
    engine.start()
    try:
        wait_for(lambda: creatio.uploads, timeout=60, what="the first upload")
    finally:
        engine.stop(5)
    assert inspector.waiting_when_a_worker_began is not None
    # at most 1,500 events noted before the gate: 1,500 of 3,000 still waiting (the old
    # loop noted all 3,000 first, the gate timed out and a worker began with 0 waiting)
    assert inspector.waiting_when_a_worker_began >= count - 2 * NOTE_BATCH


# ---------------------------------------------------------------------------------------------
# liveness: a worker stuck inside one job stops the systemd watchdog


class BlockingCreatio(ScriptedCreatio):
    """Uploads wait for ``release``; while they wait, ``moving`` makes them send a block every
    50 ms (a huge upload on a slow line) instead of hanging without a byte."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.moving = False

    def upload(self, path: Path, **kw: Any) -> Uploaded:
        self.entered.set()
        progress = kw.get("progress")
        while not self.release.wait(0.05):
            if self.moving and progress is not None:
                progress(65536)
        return super().upload(path, **{k: v for k, v in kw.items() if k != "progress"})


def _live_engine(
    tmp_path: Path, creatio: ScriptedCreatio, stuck_after: float
) -> tuple[Engine, Path]:
    folder = tmp_path / "in"
    folder.mkdir()
    rule = Rule(
        inbox="in",
        pattern=re.compile(r"^(?P<number>SR\d+)_"),
        entity="CaseFile",
        parent_schema="Case",
        parent_where={"Number": "{number}"},
    )
    engine = Engine(
        inboxes=[InboxPolicy(name="in", folder=folder, rule=rule, settle=0.0)],
        journal=Journal.open(tmp_path / "state"),
        inspector=DetectInspector(),
        folders=LocalFolders(),
        creatio=creatio,  # type: ignore[arg-type]
        concurrency=2,
        stuck_after=stuck_after,
    )
    return engine, folder


def test_a_worker_stuck_in_an_upload_stops_the_watchdog_until_it_moves_again(
    tmp_path: Path, corpus_by_name: dict[str, CorpusFile]
) -> None:
    creatio = BlockingCreatio()
    engine, folder = _live_engine(tmp_path, creatio, stuck_after=1.0)
    fake = FakeSystemd(str(tmp_path / "notify.sock"), str(tmp_path / "notify.sock"))
    notifier = Notifier(str(tmp_path / "notify.sock"))
    engine.start()
    heartbeat = Heartbeat(notifier, 0.2, engine.alive).start()
    try:
        wait_for(lambda: fake.count("WATCHDOG=1") >= 2, timeout=5, what="pings while idle")
        assert engine.alive()
        pdf = corpus_by_name["filetype-fixture.pdf"]
        shutil.copyfile(pdf.path, folder / "SR1_stuck.pdf")
        engine.sink(FileEvent("in", folder / "SR1_stuck.pdf", "closed", time.time()))
        wait_for(creatio.entered.is_set, timeout=10, what="the upload to start")
        # still within the limit: a busy worker is not a stuck one
        assert engine.alive()
        wait_for(lambda: not engine.alive(), timeout=5, what="the worker counted as stuck")
        (stuck,) = engine.status().stuck
        assert stuck.name.startswith("creatio-attach-worker-") and stuck.quiet_for > 1.0
        skipped = heartbeat.skipped
        wait_for(lambda: heartbeat.skipped >= skipped + 2, timeout=5, what="beats skipped")
        pings = fake.count("WATCHDOG=1")
        wait_for(lambda: heartbeat.skipped >= skipped + 4, timeout=5, what="more beats skipped")
        assert fake.count("WATCHDOG=1") == pings  # no ping while the worker is stuck
        creatio.release.set()
        wait_for(lambda: engine.journal.by_state(State.DONE), timeout=10, what="the upload done")
        wait_for(engine.alive, timeout=5, what="alive again")
        wait_for(lambda: fake.count("WATCHDOG=1") > pings, timeout=5, what="pings again")
    finally:
        creatio.release.set()
        heartbeat.stop()
        engine.stop(5)
        engine.journal.close()
        notifier.close()
        fake.close()
    assert engine.status().stuck == ()


def test_an_upload_that_keeps_moving_bytes_is_never_stuck(
    tmp_path: Path, corpus_by_name: dict[str, CorpusFile]
) -> None:
    creatio = BlockingCreatio()
    creatio.moving = True
    engine, folder = _live_engine(tmp_path, creatio, stuck_after=1.0)
    engine.start()
    try:
        pdf = corpus_by_name["filetype-fixture.pdf"]
        shutil.copyfile(pdf.path, folder / "SR2_slow.pdf")
        engine.sink(FileEvent("in", folder / "SR2_slow.pdf", "closed", time.time()))
        wait_for(creatio.entered.is_set, timeout=10, what="the upload to start")
        busy: list[float] = []
        # watch the worker for several limits' worth of time: busy all along, never stuck
        while not busy or max(busy) < 2.5:
            assert engine.alive(), engine.status().stuck
            busy.append(max(engine.liveness.busy().values(), default=0.0))
            time.sleep(0.05)  # sampling pace of the check above, not synchronisation
        creatio.release.set()
        wait_for(lambda: engine.journal.by_state(State.DONE), timeout=10, what="the upload done")
        wait_for(lambda: not engine.liveness.busy(), timeout=5, what="the worker idle")
    finally:
        creatio.release.set()
        engine.stop(5)
        engine.journal.close()
