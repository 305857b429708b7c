"""Exactly once through crashes, restarts and outages: kill -9 of a daemon subprocess in the
middle of uploads, a graceful restart in the middle of a batch, Creatio down then back, and
1,000 files dropped at once. The emulator must hold each file's content exactly once.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.journal import Journal, State
from tests.conftest import wait_for
from tests.daemon_helpers import Site, running_service, start_daemon, stop_daemon, wait_ready


@pytest.fixture
def site(tmp_path: Path, emulator: EmbeddedEmulator) -> Site:
    return Site(tmp_path, emulator)


def drop(inbox: Path, number: str, count: int, size: int = 2000, prefix: str = "f") -> set[str]:
    """``count`` text files of distinct content; returns their SHA-256s."""
    hashes = set()
    for i in range(count):
        body = (f"{prefix} {i} for {number}\n" * (size // 20 + 1)).encode()[:size]
        (inbox / f"{number}_{prefix}{i:04d}.txt").write_bytes(body)
        hashes.add(hashlib.sha256(body).hexdigest())
    return hashes


def stored_hashes(site: Site) -> collections.Counter[str]:
    return collections.Counter(str(f["sha256"]) for f in site.files())


def assert_exactly_once(site: Site, expected: set[str]) -> None:
    held = stored_hashes(site)
    assert set(held) == expected, "every file is in Creatio and nothing else (no empty records)"
    assert max(held.values()) == 1, [h for h, n in held.items() if n > 1]


def test_kill_9_during_uploads_then_restart_loses_and_duplicates_nothing(site: Site) -> None:
    site.case("SR900")
    inbox = site.inbox()
    site.concurrency = 4
    config = site.write_config()
    site.faults("latency=150ms")  # every data request is slow: kill -9 lands mid-upload
    expected = drop(inbox, "SR900", 24)
    log = site.root / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        wait_for(lambda: site.state_count("done") >= 3, timeout=30, what="a few uploads")
        wait_for(lambda: site.state_count("uploading") >= 1, timeout=10, what="uploads in flight")
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    interrupted = site.state_count("uploading")
    assert site.state_count("done") < 24
    site.faults(None)
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        wait_for(lambda: site.state_count("done") == 24, timeout=40, what="all 24 done")
        assert stop_daemon(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_exactly_once(site, expected)
    assert interrupted >= 1
    assert b"file.recovering" in log.read_bytes()


def test_graceful_restart_in_the_middle_of_a_batch(site: Site) -> None:
    site.case("SR901")
    inbox = site.inbox()
    config = site.write_config()
    site.faults("latency=40ms")
    expected = drop(inbox, "SR901", 40)
    with running_service(config):
        wait_for(lambda: site.state_count("done") >= 5, timeout=30, what="part of the batch")
    assert site.state_count("done") < 40
    site.faults(None)
    with running_service(config):
        wait_for(lambda: site.state_count("done") == 40, timeout=30, what="the rest")
    assert_exactly_once(site, expected)


def test_creatio_down_then_back_drains_the_backlog(site: Site) -> None:
    site.case("SR902")
    inbox = site.inbox()
    config = site.write_config()
    with running_service(config):
        site.faults("503@p=1:retry-after=0")
        expected = drop(inbox, "SR902", 12)
        wait_for(
            lambda: site.state_count("retry_wait") >= 1,
            timeout=30,
            what="files waiting for Creatio",
        )
        assert site.files() == []
        site.faults(None)
        wait_for(lambda: site.state_count("done") == 12, timeout=40, what="the backlog drained")
    assert_exactly_once(site, expected)


def test_creatio_stopped_and_started_again_on_the_same_port(
    site: Site, emulator_factory: object, tmp_path: Path
) -> None:
    site.case("SR903")
    inbox = site.inbox()
    config = site.write_config()
    first = site.emulator
    port = int(first.url.rsplit(":", 1)[1])
    data_dir = tmp_path / "emulator-0"
    with running_service(config):
        first.stop()
        expected = drop(inbox, "SR903", 5)
        wait_for(lambda: site.state_count("retry_wait") >= 1, timeout=40, what="waiting files")
        second = emulator_factory(port=port, data_dir=data_dir)  # type: ignore[operator]
        site.emulator = second
        wait_for(lambda: site.state_count("done") == 5, timeout=60, what="uploaded after restart")
    assert_exactly_once(site, expected)


def test_a_thousand_files_dropped_at_once(site: Site) -> None:
    site.case("SR904")
    inbox = site.inbox()
    site.concurrency = 4
    config = site.write_config()
    log = site.root / "daemon.log"
    proc = start_daemon(config, log, level="info")
    try:
        wait_ready(proc, log)
        expected = drop(inbox, "SR904", 1000, size=64)
        wait_for(
            lambda: site.state_count("done") == 1000, timeout=120, interval=0.5, what="1,000 done"
        )
        assert stop_daemon(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_exactly_once(site, expected)
    assert not [p for p in inbox.iterdir() if p.is_file()]


def test_sigterm_lets_the_upload_in_flight_finish_and_exits_0(site: Site) -> None:
    site.case("SR905")
    inbox = site.inbox()
    site.concurrency = 1
    config = site.write_config()
    site.faults("latency=600ms")
    expected = drop(inbox, "SR905", 1)
    log = site.root / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        wait_for(lambda: site.state_count("uploading") == 1, timeout=30, what="an upload")
        assert stop_daemon(proc, signal.SIGTERM, timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert site.state_count("done") == 1  # finished within the grace period, not cut short
    assert_exactly_once(site, expected)
    assert b"cut_short=0" in log.read_bytes() or b'"cut_short": 0' in log.read_bytes()


def _crash_left_it_at(site: Site, state: str, location: Path) -> None:
    """The journal as a crash between a move and the write of its new place leaves it: the
    row still names ``location`` (in the inbox), while the file is already elsewhere."""
    with Journal.open(site.state) as journal:
        (row,) = journal.by_state(State(state))
        if state == "failed":
            row = journal.requeue(row.id, now=row.updated_at)  # as `retry --all-failed` does
        journal.set_location(row.id, now=row.updated_at, location=str(location))


@contextlib.contextmanager
def _ready_row(
    site: Site, file: Path, case_id: str, *, name: str | None = None
) -> Iterator[tuple[Journal, int]]:
    """The journal, open, with a ``ready`` row for ``file`` (found, typed and routed to the
    Case, as the daemon leaves it) and that row's id; the test takes the row further, as a
    crash would leave it. The row names the inbox path of the file's name, wherever the test
    put the file."""
    st = file.stat()
    with Journal.open(site.state) as journal:
        row, _ = journal.add(
            inbox="cases",
            path=file.name,
            source_path=str(site.root / "cases" / file.name),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            inode=st.st_ino,
            now=time.time(),
        )
        sha = hashlib.sha256(file.read_bytes()).hexdigest()
        journal.mark_ready(row.id, now=time.time(), sha256=sha, mime="text/plain")
        journal.set_target(
            row.id,
            now=time.time(),
            target="CaseFile",
            parent_schema="Case",
            parent_id=case_id,
            record_name=name or file.name,
        )
        yield journal, row.id


def test_a_file_moved_to_the_unmatched_folder_just_before_a_crash_is_found_again(
    site: Site,
) -> None:
    inbox = site.inbox(unmatched_retry={"every": "0.5s", "for": "1h"})
    config = site.write_config()
    source = inbox / "SR70_doc.txt"
    with running_service(config):
        source.write_text("waits for its case\n")
        wait_for(lambda: site.state_count("unmatched") == 1, timeout=15, what="unmatched")
        wait_for(lambda: (inbox / ".unmatched" / "SR70_doc.txt").exists(), timeout=5, what="moved")
    _crash_left_it_at(site, "unmatched", source)  # the move happened, its record did not
    site.case("SR70")
    with running_service(config):
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="uploaded after all")
    assert site.state_count("gone") == 0
    assert [f["name"] for f in site.files()] == ["SR70_doc.txt"]


def test_a_file_moved_to_the_failed_folder_just_before_a_crash_can_be_retried(
    site: Site,
) -> None:
    site.case("SR71")
    inbox = site.inbox(pattern=r"^(?P<number>SR\d+)-")  # no match: failed
    config = site.write_config()
    source = inbox / "SR71_doc.txt"
    with running_service(config):
        source.write_text("fails first\n")
        wait_for(lambda: site.state_count("failed") == 1, timeout=15, what="failed")
    assert (inbox / ".failed" / "SR71_doc.txt").exists()
    _crash_left_it_at(site, "failed", source)
    site.inboxes["cases"]["pattern"] = r"^(?P<number>SR\d+)_"  # the fix
    config = site.write_config()
    with running_service(config):
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="uploaded after all")
    assert site.state_count("gone") == 0
    assert [f["name"] for f in site.files()] == ["SR71_doc.txt"]


def test_a_duplicate_archived_just_before_a_crash_is_recorded_after_the_restart(
    site: Site,
) -> None:
    """The copy of a file already on its Case was moved to the archive, and the process died
    before the journal recorded it as a duplicate: the row still waits, naming the inbox."""

    case_id = site.case("SR72")
    inbox = site.inbox()
    config = site.write_config()
    body = b"the same content twice\n"
    with running_service(config):
        (inbox / "SR72_original.txt").write_bytes(body)
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="the original")
    archive = inbox / ".archive" / time.strftime("%Y-%m-%d")
    copy = archive / "SR72_copy.txt"
    copy.write_bytes(body)  # where the move put it before the crash
    with _ready_row(site, copy, case_id):
        pass  # ready, its file already in the archive: what the crash left
    with running_service(config):
        wait_for(lambda: site.state_count("duplicate") == 1, timeout=15, what="the duplicate")
    assert site.state_count("gone") == 0
    assert len(site.files()) == 1  # uploaded once
    assert copy.exists() and (archive / "SR72_copy.txt.duplicate.json").exists()
    assert not (inbox / "SR72_copy.txt").exists()


def test_a_sidecar_left_by_a_crash_after_its_file_was_archived_follows_the_file(
    site: Site,
) -> None:
    """Uploaded, its file moved to the archive, and the process died before the sidecar
    followed and before ``done``: the sidecar must not be taken as a file of its own, and the
    row must say where the file went."""
    import json

    case_id = site.case("SR73")
    inbox = site.inbox()
    config = site.write_config()
    archive = inbox / ".archive" / time.strftime("%Y-%m-%d")
    archive.mkdir(parents=True)
    body = b"archived just before the crash\n"
    moved = archive / "SR73_doc.txt"
    moved.write_bytes(body)
    sidecar = inbox / "SR73_doc.txt.json"
    sidecar.write_text(json.dumps({"name": "Contract 73"}))
    with _ready_row(site, moved, case_id, name="Contract 73") as (journal, row_id):
        journal.claim_record_id(row_id, now=time.time())
        journal.mark_uploaded(row_id, now=time.time())
    with running_service(config):
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="finished")
        wait_for(lambda: not sidecar.exists(), timeout=5, what="the sidecar moved")
    with Journal.open_readonly(site.state) as journal:
        (done,) = journal.by_state(State.DONE)
        assert sum(journal.counts().get("cases", {}).values()) == 1  # no row for the sidecar
    assert done.final_path == str(moved)
    assert (archive / "SR73_doc.txt.json").exists()
    assert site.files() == []  # nothing sent now: the upload was complete before the crash


def test_a_site_that_ignores_the_id_gets_one_record_after_a_crash_mid_upload(
    tmp_path: Path, emulator_factory: Callable[..., EmbeddedEmulator]
) -> None:
    """On a Creatio that picks its own record Ids, the daemon writes the Id it was given
    before sending the content; after a crash the restart completes that record."""

    site = Site(tmp_path, emulator_factory(ignore_client_ids=True))
    case_id = site.case("SR74")
    inbox = site.inbox()
    config = site.write_config()
    with running_service(config):  # the normal way first: one record, its Id in the journal
        (inbox / "SR74_first.txt").write_text("first\n")
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="first uploaded")
    with Journal.open_readonly(site.state) as journal:
        (first,) = journal.by_state(State.DONE)
    assert [f["id"] for f in site.files()] == [first.record_id]

    # the crash: the record was created (Id chosen by the site, written down), no content yet
    rows = site.admin(
        "POST", "/__emulator__/records/CaseFile", {"Name": "SR74_second.txt", "CaseId": case_id}
    )
    server_id = str((rows[0] if isinstance(rows, list) else rows)["Id"]).lower()
    body = b"second\n"
    path = inbox / "SR74_second.txt"
    path.write_bytes(body)
    with _ready_row(site, path, case_id) as (journal, row_id):
        journal.claim_record_id(row_id, now=time.time())
        journal.set_record_id(row_id, now=time.time(), record_id=server_id)
    with running_service(config):
        wait_for(lambda: site.state_count("done") == 2, timeout=15, what="recovered")
    stored = {f["id"]: f["sha256"] for f in site.files()}
    assert stored == {
        first.record_id: hashlib.sha256(b"first\n").hexdigest(),
        server_id: hashlib.sha256(body).hexdigest(),
    }


@pytest.mark.parametrize("where", ["name taken", "other file system"])
def test_a_file_moved_under_another_name_or_to_another_file_system_is_found_too(
    site: Site, where: str
) -> None:
    """The move gave it ``x (1).txt`` (the name was taken), or copied it to an unmatched
    folder on another file system (a new inode; the copy keeps size, mtime and content)."""
    import shutil

    keys: dict[str, object] = {"unmatched_retry": {"every": "0.5s", "for": "1h"}}
    shm = Path("/dev/shm") / f"creatio-attach-unmatched-{id(site)}"
    if where == "other file system":
        keys["unmatched_dir"] = str(shm)
    inbox = site.inbox(**keys)
    unmatched = shm if where == "other file system" else inbox / ".unmatched"
    if where == "name taken":
        unmatched.mkdir()
        (unmatched / "SR75_doc.txt").write_text("another file of that name\n")
    config = site.write_config()
    source = inbox / "SR75_doc.txt"
    try:
        with running_service(config):
            source.write_text("waits for its case\n")
            wait_for(lambda: site.state_count("unmatched") == 1, timeout=15, what="unmatched")
            wait_for(lambda: not source.exists(), timeout=5, what="moved")
        _crash_left_it_at(site, "unmatched", source)
        site.case("SR75")
        with running_service(config):
            wait_for(lambda: site.state_count("done") == 1, timeout=15, what="uploaded after all")
        assert site.state_count("gone") == 0
        assert [f["sha256"] for f in site.files()] == [
            hashlib.sha256(b"waits for its case\n").hexdigest()
        ]
    finally:
        shutil.rmtree(shm, ignore_errors=True)


def test_a_copy_of_another_file_in_the_archive_is_not_taken_for_a_missing_file(
    site: Site,
) -> None:
    """A waiting file deleted by its owner, while a copy of it (``cp -p``: same content and
    mtime, another inode) lies in the archive as a file of its own: the row is ``gone``, the
    other file is left alone."""
    import shutil

    case_id = site.case("SR76")
    inbox = site.inbox()
    config = site.write_config()
    with running_service(config):
        (inbox / "SR76_doc.txt").write_text("the same words\n")
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="the first one")
    (archived,) = [p for p in (inbox / ".archive").rglob("SR76_doc.txt")]
    again = inbox / "SR76_doc.txt"
    shutil.copy2(archived, again)  # dropped again, mtime kept
    with _ready_row(site, again, case_id):
        pass
    again.unlink()  # its owner took it back before the daemon looked
    with running_service(config):
        wait_for(lambda: site.state_count("gone") == 1, timeout=15, what="gone")
    assert archived.read_text() == "the same words\n"
    assert len(site.files()) == 1
