"""The SQLite journal: states, crash safety, concurrency, queries, odd names, damaged files.

Real SQLite files in tmp_path, real threads and real subprocesses (one is killed with SIGKILL).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from creatio_attach.errors import CreatioUnavailable, JournalError, ParentAmbiguous
from creatio_attach.journal import (
    APPLICATION_ID,
    JOURNAL_FILE,
    MIGRATIONS,
    SCHEMA_VERSION,
    TRANSITIONS,
    Claim,
    ErrorNote,
    FileRow,
    Journal,
    State,
    next_retry_delay,
)
from creatio_attach.journal.lifecycle import (
    HASHED_SAME_SIZE_SQL,
    TWIN_SQL,
    UNHASHED_UPLOADING_SQL,
)

REPO = Path(__file__).resolve().parents[1]
CASE_A = "0b1e4a3c-9f5d-4c1e-8f00-000000000001"
CASE_B = "0b1e4a3c-9f5d-4c1e-8f00-000000000002"
SHA = "a" * 64
T0 = 1_700_000_000.0
ERR = ErrorNote("creatio_unavailable", "Creatio answered 503", status=503)
_names = itertools.count()


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal.open(tmp_path / "state")
    yield j  # type: ignore[misc]
    j.close()


def add(j: Journal, name: str | None = None, *, inbox: str = "cases", now: float = T0) -> FileRow:
    name = name or f"SR{next(_names):05d}_scan.pdf"
    row, created = j.add(
        inbox=inbox,
        path=name,
        source_path=f"/srv/drop/{inbox}/{name}",
        size=1234,
        mtime_ns=1_700_000_000_123_456_789,
        inode=42,
        now=now,
    )
    assert created
    return row


def make_ready(j: Journal, row: FileRow, *, sha: str | None = SHA, parent: str = CASE_A) -> FileRow:
    j.mark_ready(row.id, now=T0 + 1, sha256=sha, mime="application/pdf")
    j.set_target(
        row.id,
        now=T0 + 1,
        target="CaseFile",
        parent_schema="Case",
        parent_id=parent,
        record_name=row.path,
    )
    return j.get(row.id)


def drive(j: Journal, state: State) -> FileRow:
    """A fresh row brought to ``state`` along the normal path."""
    row = add(j)
    if state is State.SEEN:
        return row
    if state is State.GONE:
        return j.mark_gone(row.id, now=T0 + 1)
    row = make_ready(j, row)
    if state is State.READY:
        return row
    if state is State.RETRY_WAIT:
        return j.mark_retry(row.id, now=T0 + 2, next_attempt_at=T0 + 10, error=ERR)
    if state is State.UNMATCHED:
        return j.mark_unmatched(
            row.id, now=T0 + 2, next_attempt_at=T0 + 300, give_up_at=T0 + 86400, error=ERR
        )
    if state is State.FAILED:
        return j.mark_failed(row.id, now=T0 + 2, error=ERR)
    if state is State.DUPLICATE:
        return j.mark_duplicate(row.id, now=T0 + 2, original_id=add(j).id)
    j.claim_record_id(row.id, now=T0 + 2)
    if state is State.UPLOADING:
        return j.get(row.id)
    row = j.mark_uploaded(row.id, now=T0 + 3)
    if state is State.UPLOADED:
        return row
    assert state is State.DONE
    return j.mark_done(row.id, now=T0 + 4, disposition="archived", final_path="/a/x.pdf")


def apply(j: Journal, row: FileRow, to: State) -> FileRow:
    """Ask the journal for the transition ``row.state -> to`` through its public API."""
    now = T0 + 50
    if to is State.SEEN:
        return j.mark_changed(row.id, now=now, size=99, mtime_ns=7, inode=42)
    if to is State.READY:
        if row.state is State.SEEN:
            return j.mark_ready(row.id, now=now, sha256=SHA)
        return j.requeue(row.id, now=now)
    if to is State.UPLOADING:
        j.claim_record_id(row.id, now=now)
        return j.get(row.id)
    if to is State.UPLOADED:
        return j.mark_uploaded(row.id, now=now)
    if to is State.DONE:
        return j.mark_done(row.id, now=now, disposition="deleted", final_path=None)
    if to is State.RETRY_WAIT:
        return j.mark_retry(row.id, now=now, next_attempt_at=now + 5, error=ERR)
    if to is State.UNMATCHED:
        return j.mark_unmatched(
            row.id, now=now, next_attempt_at=now + 5, give_up_at=now + 60, error=ERR
        )
    if to is State.FAILED:
        return j.mark_failed(row.id, now=now, error=ERR)
    if to is State.DUPLICATE:
        return j.mark_duplicate(row.id, now=now, original_id=add(j).id)
    assert to is State.GONE
    return j.mark_gone(row.id, now=now)


# -- states and transitions ------------------------------------------------------------------


@pytest.mark.parametrize(("source", "to"), list(itertools.product(State, State)))
def test_each_transition_is_allowed_exactly_when_the_table_says(
    journal: Journal, source: State, to: State
) -> None:
    row = drive(journal, source)
    assert row.state is source
    if to in TRANSITIONS[source]:
        assert apply(journal, row, to).state is to
    else:
        with pytest.raises(JournalError, match=r"cannot go from|fixed|no target"):
            apply(journal, row, to)
        assert journal.get(row.id).state is source  # nothing half-written


def test_the_table_keeps_the_life_of_a_file_from_the_issue() -> None:
    happy = [State.SEEN, State.READY, State.UPLOADING, State.UPLOADED, State.DONE]
    for a, b in itertools.pairwise(happy):
        assert b in TRANSITIONS[a]
    assert State.READY in TRANSITIONS[State.RETRY_WAIT]
    assert {State.READY, State.FAILED} <= TRANSITIONS[State.UNMATCHED]
    assert TRANSITIONS[State.FAILED] == {State.READY}
    for final in (State.DONE, State.DUPLICATE, State.GONE):
        assert not TRANSITIONS[final]
    assert State.UPLOADING not in TRANSITIONS[State.SEEN]  # never upload an unsettled file


def test_a_file_that_changes_during_upload_settles_again_onto_the_same_record(
    journal: Journal,
) -> None:
    row = make_ready(journal, add(journal))
    first = journal.claim_record_id(row.id, now=T0 + 2)
    changed = journal.mark_changed(row.id, now=T0 + 3, size=2000, mtime_ns=9, inode=42)
    assert (changed.state, changed.sha256, changed.record_id) == (State.SEEN, None, first)
    journal.mark_ready(row.id, now=T0 + 5, sha256="b" * 64)
    assert journal.claim_record_id(row.id, now=T0 + 6) == first


def test_a_retry_reuses_the_record_id_but_a_new_parent_releases_it(journal: Journal) -> None:
    row = make_ready(journal, add(journal))
    first = journal.claim_record_id(row.id, now=T0 + 2)
    journal.mark_retry(row.id, now=T0 + 3, next_attempt_at=T0 + 4, error=ERR)
    assert journal.claim_record_id(row.id, now=T0 + 5) == first
    journal.mark_retry(row.id, now=T0 + 6, next_attempt_at=T0 + 7, error=ERR)
    released = journal.set_target(
        row.id,
        now=T0 + 8,
        target="CaseFile",
        parent_schema="Case",
        parent_id=CASE_B,
        record_name="x.pdf",
    )
    assert released == first
    second = journal.claim_record_id(row.id, now=T0 + 9)
    assert second != first
    assert journal.get(row.id).attempts == 2


def test_unmatched_keeps_its_first_give_up_time(journal: Journal) -> None:
    row = make_ready(journal, add(journal))
    journal.mark_unmatched(
        row.id, now=T0, next_attempt_at=T0 + 300, give_up_at=T0 + 86400, error=ERR
    )
    journal.requeue(row.id, now=T0 + 300)
    again = journal.mark_unmatched(
        row.id, now=T0 + 301, next_attempt_at=T0 + 600, give_up_at=T0 + 999_999, error=ERR
    )
    assert (again.give_up_at, again.attempts, again.next_attempt_at) == (T0 + 86400, 2, T0 + 600)


# -- crash safety ----------------------------------------------------------------------------

_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from creatio_attach.journal import Journal
    j = Journal.open(sys.argv[1])
    row, _ = j.add(inbox="cases", path="SR1_a.pdf", source_path="/in/SR1_a.pdf", size=1,
                   mtime_ns=1, inode=1, now=1.0)
    j.mark_ready(row.id, now=2.0, sha256="c" * 64)
    j.set_target(row.id, now=2.0, target="CaseFile", parent_schema="Case",
                 parent_id="0b1e4a3c-9f5d-4c1e-8f00-000000000001", record_name="a.pdf")
    record_id = j.claim_record_id(row.id, now=3.0)
    print(record_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the instant after the claim: before any create call
    """
)


def test_record_id_survives_sigkill_right_after_the_claim(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(state)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    record_id = proc.stdout.strip()
    assert len(record_id) == 36
    with Journal.open(state) as j:
        in_flight = j.in_flight()
        assert [(r.state, r.record_id, r.path) for r in in_flight] == [
            (State.UPLOADING, record_id, "SR1_a.pdf")
        ]
        # the restarted daemon completes the record with the SAME Id
        assert j.mark_uploaded(in_flight[0].id, now=10.0).record_id == record_id


def test_in_flight_lists_uploading_and_uploaded_rows_only(journal: Journal) -> None:
    rows = {s: drive(journal, s) for s in State}
    assert {r.id for r in journal.in_flight()} == {
        rows[State.UPLOADING].id,
        rows[State.UPLOADED].id,
    }


def test_record_ids_are_unique_in_the_journal(journal: Journal) -> None:
    a, b = (make_ready(journal, add(journal)) for _ in range(2))
    rid = journal.claim_record_id(a.id, now=T0)
    with journal._write() as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE files SET record_id = ? WHERE id = ?", (rid, b.id))


# -- concurrency -----------------------------------------------------------------------------


def test_eight_threads_write_through_one_journal(journal: Journal) -> None:
    per_thread = 40
    errors: list[BaseException] = []
    record_ids: list[str] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                row = add(journal, f"t{n}/SR{i}.pdf")
                make_ready(journal, row, sha=f"{n:032x}{i:032x}")
                record_ids.append(journal.claim_record_id(row.id, now=T0 + 2))
                journal.mark_uploaded(row.id, now=T0 + 3)
                journal.mark_done(row.id, now=T0 + 4, disposition="kept", final_path=None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert journal.counts() == {"cases": {"done": 8 * per_thread}}
    assert len(set(record_ids)) == 8 * per_thread


def test_the_same_instance_added_by_racing_threads_is_one_row(journal: Journal) -> None:
    results: list[tuple[FileRow, bool]] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        results.append(
            journal.add(
                inbox="cases",
                path="SR9.pdf",
                source_path="/in/SR9.pdf",
                size=5,
                mtime_ns=6,
                inode=7,
                now=T0,
            )
        )

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(created for _, created in results) == [False] * 7 + [True]
    assert len({row.id for row, _ in results}) == 1


_WRITER = textwrap.dedent(
    """
    import sys
    from creatio_attach.journal import Journal
    j = Journal.open(sys.argv[1])
    print("open", flush=True)
    sys.stdin.readline()
    for i in range(300):
        row, _ = j.add(inbox="rec", path=f"{i}.wav", source_path=f"/in/{i}.wav", size=i + 1,
                       mtime_ns=i, inode=i, now=float(i))
        j.mark_ready(row.id, now=float(i), sha256=f"{i:064x}")
    j.close()
    """
)


def test_status_reads_while_another_process_writes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "open\n"  # the daemon holds the journal open
        reader = Journal.open_readonly(state)
        proc.stdin.write("go\n")
        proc.stdin.close()
        seen: list[int] = []
        while proc.poll() is None:
            seen.append(sum(reader.counts().get("rec", {}).values()))
        assert proc.wait(timeout=60) == 0
        seen.append(sum(reader.counts().get("rec", {}).values()))
        assert seen == sorted(seen)  # a reader sees whole transactions, never going back
        assert seen[-1] == 300
        assert reader.counts() == {"rec": {"ready": 300}}
        with pytest.raises(JournalError, match="read-only"):
            reader.add(inbox="x", path="y", source_path="/y", size=1, mtime_ns=1, inode=1, now=1)
        reader.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # after the daemon is gone (no -wal/-shm files left) status still reads it
    with Journal.open_readonly(state / JOURNAL_FILE) as again:
        assert again.counts() == {"rec": {"ready": 300}}


# -- opening, versions, damage ---------------------------------------------------------------


def test_a_new_journal_is_wal_versioned_and_ours(tmp_path: Path) -> None:
    Journal.open(tmp_path / "new" / "state").close()
    conn = sqlite3.connect(tmp_path / "new" / "state" / JOURNAL_FILE)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    finally:
        conn.close()


def test_an_empty_file_is_migrated_into_a_journal(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(b"")
    with Journal.open(tmp_path) as j:
        row = add(j)
    with Journal.open(tmp_path) as j:
        assert j.get(row.id).path == row.path


def test_a_file_that_is_not_a_database_is_a_clear_journal_error(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE).write_bytes(b"%PDF-1.4 this is not SQLite\n" * 200)
    with pytest.raises(JournalError, match="damaged or not a database") as info:
        Journal.open(tmp_path)
    assert info.value.path == str(tmp_path / JOURNAL_FILE)
    assert "move the file aside" in (info.value.hint or "")
    with pytest.raises(JournalError, match="damaged or not a database"):
        Journal.open_readonly(tmp_path)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="not a creatio-attach journal"):
        Journal.open(tmp_path)


def test_a_journal_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    Journal.open(tmp_path).close()
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalError, match="newer than this program"):
        Journal.open(tmp_path)


def test_status_without_a_journal_says_so(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal here") as info:
        Journal.open_readonly(tmp_path)
    assert "has the daemon run yet" in str(info.value)


# -- scheduling and backoff ------------------------------------------------------------------


def test_an_uploaded_file_whose_disposal_failed_is_due_again_later(journal: Journal) -> None:
    normal = drive(journal, State.UPLOADED)  # uploaded, a worker disposes of it now: never due
    failed = drive(journal, State.UPLOADED)
    failed = journal.defer_disposal(failed.id, now=T0 + 5, next_attempt_at=T0 + 60, error=ERR)
    assert failed.state is State.UPLOADED and failed.last_error == ERR
    assert journal.due(T0 + 59) == []
    assert journal.next_due_at() == T0 + 60
    assert [r.id for r in journal.due(T0 + 60)] == [failed.id]
    done = journal.mark_done(failed.id, now=T0 + 61, disposition="archived", final_path="/a/x")
    assert done.next_attempt_at is None
    assert journal.due(T0 + 1000) == [] and journal.next_due_at() is None
    assert normal.id not in [r.id for r in journal.due(T0 + 1000)]
    with pytest.raises(JournalError):
        journal.defer_disposal(done.id, now=T0 + 62, next_attempt_at=T0 + 90, error=ERR)


def test_due_follows_the_injected_clock(journal: Journal) -> None:
    ready = make_ready(journal, add(journal))  # due at T0 + 1
    waiting = journal.mark_retry(
        make_ready(journal, add(journal)).id, now=T0 + 2, next_attempt_at=T0 + 30, error=ERR
    )
    unmatched = journal.mark_unmatched(
        make_ready(journal, add(journal)).id,
        now=T0 + 2,
        next_attempt_at=T0 + 300,
        give_up_at=T0 + 3600,
        error=ERR,
    )
    drive(journal, State.FAILED)
    drive(journal, State.SEEN)
    assert [r.id for r in journal.due(T0)] == []
    assert [r.id for r in journal.due(T0 + 1)] == [ready.id]
    assert [r.id for r in journal.due(T0 + 30)] == [ready.id, waiting.id]
    assert [r.id for r in journal.due(T0 + 300)] == [ready.id, waiting.id, unmatched.id]
    assert [r.id for r in journal.due(T0 + 300, limit=1)] == [ready.id]
    assert journal.next_due_at() == T0 + 1


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    top = [next_retry_delay(n, base=2, cap=60, rng=lambda: 1.0) for n in range(1, 9)]
    assert top == [2, 4, 8, 16, 32, 60, 60, 60]
    assert next_retry_delay(3, base=2, cap=60, rng=lambda: 0.25) == 2.0
    assert next_retry_delay(3, base=2, cap=60, rng=lambda: 0.0) == 0.0
    assert next_retry_delay(10_000, base=2, cap=60, rng=lambda: 0.5) == 30.0  # no overflow
    with pytest.raises(ValueError, match="from 1"):
        next_retry_delay(0, base=2, cap=60)


def test_backoff_honours_retry_after_as_a_minimum() -> None:
    assert next_retry_delay(1, base=2, cap=60, retry_after=45, rng=lambda: 0.5) == 45
    assert next_retry_delay(6, base=2, cap=60, retry_after=5, rng=lambda: 0.5) == 30
    assert next_retry_delay(1, base=2, cap=60, retry_after=600, rng=lambda: 0.5) == 600
    # a broken header cannot park a file for days
    assert next_retry_delay(1, base=2, cap=60, retry_after=10**9, rng=lambda: 0.5) == 3600


def test_backoff_survives_a_restart_through_the_journal(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as j:
        row = make_ready(j, add(j))
        delay = next_retry_delay(1, base=2, cap=60, retry_after=120, rng=lambda: 0.5)
        j.mark_retry(row.id, now=T0 + 2, next_attempt_at=T0 + 2 + delay, error=ERR)
    with Journal.open(tmp_path) as j:
        assert j.due(T0 + 100) == []
        assert [r.id for r in j.due(T0 + 122)] == [row.id]


# -- exactly once ----------------------------------------------------------------------------


def test_the_same_content_for_the_same_parent_is_uploaded_once(journal: Journal) -> None:
    first = make_ready(journal, add(journal, "SR1_contract.pdf"))
    again = make_ready(journal, add(journal, "SR1_contract (copy).pdf"))
    other_parent = make_ready(journal, add(journal, "SR2_contract.pdf"), parent=CASE_B)
    assert journal.find_uploaded(SHA, "Case", CASE_A, "CaseFile") is None

    assert journal.claim_upload(first.id, now=T0 + 2).outcome == "claimed"
    busy = journal.claim_upload(again.id, now=T0 + 2)
    assert (busy.outcome, busy.original and busy.original.id) == ("busy", first.id)
    assert journal.get(again.id).state is State.READY

    journal.mark_uploaded(first.id, now=T0 + 3)
    found = journal.find_uploaded(SHA, "Case", CASE_A, "CaseFile")
    assert found is not None and found.id == first.id
    dup = journal.claim_upload(again.id, now=T0 + 4)
    assert (dup.outcome, dup.original and dup.original.id) == ("duplicate", first.id)
    # the row is left as it is until the file is moved: mark_duplicate records both at once
    assert journal.get(again.id).state is State.READY
    marked = journal.mark_duplicate(again.id, now=T0 + 5, original_id=first.id, location="/a/c")
    assert (marked.state, marked.duplicate_of) == (State.DUPLICATE, first.id)
    assert (marked.location, marked.final_path) == ("/a/c", "/a/c")
    assert journal.claim_upload(other_parent.id, now=T0 + 4).outcome == "claimed"


def test_a_large_file_without_a_hash_is_claimed_when_no_file_of_its_size_is_there(
    journal: Journal,
) -> None:
    """Large files are hashed while they upload (``mark_uploaded(sha256=...)``); their claim
    compares sizes instead, and asks for the hash only when a file of that size is there."""
    big = make_ready(journal, add(journal), sha=None)
    twin = make_ready(journal, add(journal), sha=None)  # same size (1234), content unknown
    hashed = make_ready(journal, add(journal))  # same size, hashed (a small-file row)
    elsewhere = make_ready(journal, add(journal), sha=None, parent=CASE_B)

    claim = journal.claim_upload(big.id, now=T0 + 2)
    assert claim.outcome == "claimed" and journal.get(big.id).sha256 is None
    # while a file of the same size uploads without a hash, nothing of that size may start
    for waiting in (twin, hashed):
        busy = journal.claim_upload(waiting.id, now=T0 + 2)
        assert (busy.outcome, busy.original and busy.original.id) == ("busy", big.id)
    assert journal.claim_upload(elsewhere.id, now=T0 + 2).outcome == "claimed"

    journal.mark_uploaded(big.id, now=T0 + 3, sha256=SHA)
    assert journal.get(big.id).sha256 == SHA
    first = journal.claim_upload(twin.id, now=T0 + 4)
    assert (first.outcome, first.original and first.original.id) == ("hash_first", big.id)
    assert journal.get(twin.id).state is State.READY
    journal.set_hash(twin.id, now=T0 + 4, sha256=SHA)
    dup = journal.claim_upload(twin.id, now=T0 + 4)
    assert (dup.outcome, dup.original and dup.original.id) == ("duplicate", big.id)
    assert journal.claim_upload(hashed.id, now=T0 + 5).outcome == "duplicate"


def test_a_large_file_of_the_same_size_but_other_content_is_uploaded(journal: Journal) -> None:
    done = make_ready(journal, add(journal))
    journal.claim_upload(done.id, now=T0 + 2)
    journal.mark_uploaded(done.id, now=T0 + 3)
    big = make_ready(journal, add(journal), sha=None)
    assert journal.claim_upload(big.id, now=T0 + 4).outcome == "hash_first"
    journal.set_hash(big.id, now=T0 + 4, sha256="f" * 64)
    assert journal.claim_upload(big.id, now=T0 + 4).outcome == "claimed"
    with pytest.raises(JournalError, match="its hash is fixed"):
        journal.set_hash(big.id, now=T0 + 5, sha256=SHA)
    journal.mark_uploaded(big.id, now=T0 + 6)  # no sha256 given: the one set stays
    assert journal.get(big.id).sha256 == "f" * 64


def test_each_claim_question_is_answered_from_an_index(journal: Journal) -> None:
    """Many hashed files of one size for one parent (a burst of scans) must not make every
    claim walk them: the questions of ``_twin_check`` each use an index of their own."""
    for _ in range(50):
        journal.claim_upload(make_ready(journal, add(journal)).id, now=T0 + 2)
    journal._conn.execute("ANALYZE")
    args = ("Case", CASE_A, "CaseFile", 1)
    for sql, params, index in (
        (TWIN_SQL, (SHA, *args), "files_content"),
        (UNHASHED_UPLOADING_SQL, (1234, *args), "files_unhashed"),
        (HASHED_SAME_SIZE_SQL, (1234, *args), "files_hashed_size"),
    ):
        plan = journal._conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
        assert index in " ".join(str(step[3]) for step in plan), (sql, plan)


def test_duplicates_upload_is_honoured(journal: Journal) -> None:
    first = make_ready(journal, add(journal))
    journal.claim_record_id(first.id, now=T0 + 2)
    journal.mark_uploaded(first.id, now=T0 + 3)
    second = make_ready(journal, add(journal))
    claim = journal.claim_upload(second.id, now=T0 + 4, skip_duplicates=False)
    assert claim.outcome == "claimed" and claim.record_id != journal.get(first.id).record_id


def test_a_rescan_finds_the_same_instance_but_a_new_file_is_a_new_row(journal: Journal) -> None:
    row = add(journal, "SR5.pdf")
    journal.mark_ready(row.id, now=T0, sha256=SHA)
    again, created = journal.add(
        inbox="cases",
        path="SR5.pdf",
        source_path="/srv/drop/cases/SR5.pdf",
        size=row.size,
        mtime_ns=row.mtime_ns,
        inode=row.inode,
        now=T0 + 60,
    )
    assert (again.id, created) == (row.id, False)
    found = journal.find_by_identity("cases", "SR5.pdf", row.size, row.mtime_ns, SHA)
    assert found is not None and found.id == row.id
    assert journal.find_by_identity("cases", "SR5.pdf", row.size, row.mtime_ns, "f" * 64) is None
    newer, created = journal.add(
        inbox="cases",
        path="SR5.pdf",
        source_path="/srv/drop/cases/SR5.pdf",
        size=row.size,
        mtime_ns=row.mtime_ns + 1,
        inode=row.inode,
        now=T0 + 90,
    )
    assert created and newer.id != row.id


# -- status and retry ------------------------------------------------------------------------


def test_retry_puts_failed_files_back_by_any_of_their_paths(journal: Journal) -> None:
    by_rel, by_source, by_final, untouched = (drive(journal, State.FAILED) for _ in range(4))
    journal.set_location(by_final.id, now=T0 + 5, location="/srv/drop/cases/.failed/x.pdf")
    unmatched = drive(journal, State.UNMATCHED)
    result = journal.retry_failed(
        [
            by_rel.path,
            by_source.source_path,
            "/srv/drop/cases/.failed/x.pdf",
            unmatched.path,
            "/nowhere.pdf",
        ],
        now=T0 + 10,
    )
    assert sorted(r.id for r in result.requeued) == sorted(
        [by_rel.id, by_source.id, by_final.id, unmatched.id]
    )
    assert result.not_found == ["/nowhere.pdf"]
    back = journal.get(by_final.id)
    assert (back.state, back.attempts, back.next_attempt_at) == (State.READY, 0, T0 + 10)
    assert back.location == "/srv/drop/cases/.failed/x.pdf"  # the daemon takes it from there
    assert journal.get(untouched.id).state is State.FAILED
    everything = journal.retry_failed(now=T0 + 20, all_failed=True)
    assert [r.id for r in everything.requeued] == [untouched.id]
    with pytest.raises(ValueError, match="either"):
        journal.retry_failed(["x"], now=T0, all_failed=True)


def test_counts_recent_failures_and_matched_by_for_status(journal: Journal) -> None:
    for state in (State.DONE, State.DONE, State.FAILED, State.READY):
        drive(journal, state)
    rec = make_ready(journal, add(journal, "in-100-200.wav", inbox="recordings"))
    journal.set_target(
        rec.id,
        now=T0 + 2,
        target="CallFile",
        parent_schema="Call",
        parent_id=CASE_B,
        record_name="100 -> 200.wav",
        matched_by="call_by_id",
    )
    journal.claim_record_id(rec.id, now=T0 + 3)
    journal.mark_uploaded(rec.id, now=T0 + 4)
    journal.mark_done(rec.id, now=T0 + 9, disposition="archived", final_path="/arch/r.wav")
    assert journal.counts() == {
        "cases": {"done": 2, "failed": 1, "ready": 1},
        "recordings": {"done": 1},
    }
    recent = journal.recent(2)
    assert recent[0].id == rec.id and recent[0].final_path == "/arch/r.wav"
    assert len(recent) == 2
    failures = journal.failures()
    assert len(failures) == 1 and failures[0].last_error == ERR
    assert journal.matched_by_counts() == {"recordings": {"call_by_id": 1}}


def test_error_notes_keep_what_status_shows() -> None:
    down = ErrorNote.from_exception(
        CreatioUnavailable("Creatio is unavailable", status=503, creatio_message="busy")
    )
    assert (down.reason, down.status, down.creatio_message) == ("creatio_unavailable", 503, "busy")
    many = ErrorNote.from_exception(ParentAmbiguous("2 cases", candidates=[CASE_A, CASE_B]))
    assert many.details == {"candidates": [CASE_A, CASE_B]}
    assert ErrorNote.from_json(many.to_json()) == many
    bug = ErrorNote.from_exception(KeyError("x"), tried=["call_by_id"])
    assert bug.reason == "internal" and bug.details == {"tried": ["call_by_id"]}


# -- names -----------------------------------------------------------------------------------

ODD_NAMES = [
    "é" * 150 + ".pdf",  # 300 bytes of UTF-8 before the extension
    'it\'s "quoted".pdf',
    "100% done #3.pdf",
    "sub dir/Заявка №5 — 契約書 🚀.docx",
    os.fsdecode(b"latin1-\xe9t\xe9.pdf"),  # not UTF-8: kept byte for byte
]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_file_names_are_stored_and_read_back_exactly(tmp_path: Path, name: str) -> None:
    with Journal.open(tmp_path) as j:
        row = add(j, name)
        j.mark_ready(row.id, now=T0, sha256=SHA)
        j.mark_failed(row.id, now=T0, error=ERR)
        j.set_location(row.id, now=T0, location=f"/srv/.failed/{name}")
    with Journal.open(tmp_path) as j:
        back = j.get(row.id)
        assert back.path == name
        assert os.fsencode(back.source_path) == os.fsencode(f"/srv/drop/cases/{name}")
        assert (back.location, back.final_path) == (f"/srv/.failed/{name}",) * 2
        assert j.find_by_identity("cases", name, row.size, row.mtime_ns) == back
        assert [r.id for r in j.retry_failed([name], now=T0 + 1).requeued] == [row.id]


def test_the_claim_alone_is_committed_with_synchronous_full(journal: Journal) -> None:
    row = make_ready(journal, add(journal))
    statements: list[str] = []
    journal._conn.set_trace_callback(statements.append)
    journal.claim_record_id(row.id, now=T0 + 2)
    journal.mark_uploaded(row.id, now=T0 + 3)
    journal._conn.set_trace_callback(None)
    pragmas = [s for s in statements if s.startswith(("PRAGMA", "BEGIN", "COMMIT"))]
    assert pragmas == [
        "PRAGMA synchronous = FULL",
        "BEGIN IMMEDIATE",
        "COMMIT",
        "PRAGMA synchronous = NORMAL",
        "BEGIN IMMEDIATE",  # mark_uploaded: an ordinary (NORMAL) commit
        "COMMIT",
    ]


def test_prune_forgets_old_finished_rows_but_keeps_failures_and_originals(journal: Journal) -> None:
    old_done = drive(journal, State.DONE)  # done_at T0 + 4
    old_gone = drive(journal, State.GONE)
    failed = drive(journal, State.FAILED)
    referenced = drive(journal, State.DONE)
    recent_dup = journal.mark_duplicate(
        make_ready(journal, add(journal)).id, now=T0 + 1000, original_id=referenced.id
    )
    assert journal.prune(before=T0 + 500) == 2
    left = {r.id for r in journal.by_state(*State)}
    assert left == {
        failed.id,
        referenced.id,
        recent_dup.id,
        *(r.id for r in journal.by_state(State.DONE)),
    }
    assert old_done.id not in left and old_gone.id not in left
    assert journal.prune(before=T0 + 2000) == 2  # the duplicate and then its original


def test_a_version_1_journal_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE, isolation_level=None)
    MIGRATIONS[0](conn)  # exactly what version 1 of creatio-attach created
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO files (inbox, path, source_path, location, size, mtime_ns, inode, state,"
        " record_id, created_at, updated_at) VALUES ('cases', ?, ?, ?, 1, 2, 3, 'uploading',"
        " 'rid-1', 1.0, 1.0)",
        (b"SR1.pdf", b"/in/SR1.pdf", b"/in/SR1.pdf"),
    )
    conn.close()
    with Journal.open(tmp_path) as j:
        [row] = j.in_flight()
        assert (row.path, row.record_id, row.metadata) == ("SR1.pdf", "rid-1", {})
        assert j.pending_submissions() == []
    check = sqlite3.connect(tmp_path / JOURNAL_FILE)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    check.close()


_SUBMITTER = textwrap.dedent(
    """
    import sys
    from creatio_attach.journal import Journal
    with Journal.open(sys.argv[1]) as j:
        j.submit(path=sys.argv[2], inbox="recordings", metadata={"uniqueid": sys.argv[3]}, now=5.0)
    """
)


def test_submit_from_another_process_reaches_the_running_daemon(tmp_path: Path) -> None:
    daemon = Journal.open(tmp_path)
    wav = "/var/spool/asterisk/monitor/in-5550102030-200-20261128-101500-1732790400.1234.wav"
    row = add(daemon, wav.rsplit("/", 1)[1], inbox="recordings")
    caller_id = '$(rm -rf /) `id` "; DROP TABLE files; --'  # taken literally
    subprocess.run(
        [sys.executable, "-c", _SUBMITTER, str(tmp_path), wav, caller_id], check=True, timeout=60
    )
    [sub] = daemon.pending_submissions()
    assert (sub.path, sub.inbox, sub.metadata, sub.taken_at) == (
        wav,
        "recordings",
        {"uniqueid": caller_id},
        None,
    )
    daemon.take_submission(sub.id, now=6.0, file_id=row.id)
    assert daemon.pending_submissions() == []
    assert daemon.get(row.id).metadata == {"uniqueid": caller_id}
    merged = daemon.set_metadata(row.id, now=7.0, metadata={"direction": "in"})
    assert merged.metadata == {"uniqueid": caller_id, "direction": "in"}
    with pytest.raises(JournalError, match="no submission"):
        daemon.take_submission(999, now=8.0, file_id=None)
    daemon.close()


def test_a_failed_file_has_an_error_report_and_rows_serialise_to_json(journal: Journal) -> None:
    row = make_ready(journal, add(journal, "SR1_offer.pdf"))
    journal.mark_retry(row.id, now=T0 + 2, next_attempt_at=T0 + 3, error=ERR)
    note = ErrorNote.from_exception(ParentAmbiguous("2 cases match", candidates=[CASE_A, CASE_B]))
    failed = journal.mark_failed(row.id, now=T0 + 10, error=note)
    report = failed.error_report()
    assert report["reason"] == "parent_ambiguous"
    assert report["details"] == {"candidates": [CASE_A, CASE_B]}
    assert report["attempts"] == 1 and report["file"] == "SR1_offer.pdf"
    assert report["first_seen"] == "2023-11-14T22:13:20+00:00"
    assert report["failed_at"] == "2023-11-14T22:13:30+00:00"
    doc = json.loads(json.dumps(failed.as_dict()))
    assert doc["state"] == "failed" and doc["last_error"]["reason"] == "parent_ambiguous"


def test_a_planned_disposal_tells_a_restart_where_the_file_went(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as j:
        row = drive(j, State.UPLOADED)
        j.plan_disposal(row.id, now=T0 + 5, disposition="archived", final_path="/a/2026/x.pdf")
        with pytest.raises(JournalError, match="not uploaded"):
            j.plan_disposal(drive(j, State.READY).id, now=T0, disposition="kept", final_path=None)
    with Journal.open(tmp_path) as j:  # the daemon died after moving the file
        [again] = [r for r in j.in_flight() if r.state is State.UPLOADED]
        assert (again.disposition, again.final_path) == ("archived", "/a/2026/x.pdf")
        done = j.mark_done(
            again.id, now=T0 + 9, disposition="archived", final_path=again.final_path
        )
        assert (done.state, done.location, done.done_at) == (State.DONE, "/a/2026/x.pdf", T0 + 9)


def test_status_opens_a_state_dir_whose_name_looks_like_a_uri(tmp_path: Path) -> None:
    state = tmp_path / "st?ate #1 100%"
    with Journal.open(state) as j:
        add(j)
    with Journal.open_readonly(state) as reader:
        assert reader.counts() == {"cases": {"seen": 1}}


# -- the per-file write path: few statements, one durable commit (performance, issue 4) --------


def _target_and_claim(
    j: Journal, row: FileRow, *, parent: str = CASE_A, now: float = T0 + 2
) -> tuple[str | None, Claim]:
    return j.target_and_claim(
        row.id,
        now=now,
        target="CaseFile",
        parent_schema="Case",
        parent_id=parent,
        record_name=row.path,
        matched_by="sidecar",
    )


def test_target_and_claim_is_one_durable_commit_holding_target_and_record_id(
    journal: Journal,
) -> None:
    row = journal.mark_ready(add(journal).id, now=T0 + 1, sha256=SHA, mime="application/pdf")
    statements: list[str] = []
    journal._conn.set_trace_callback(statements.append)
    released, claim = _target_and_claim(journal, row)
    journal._conn.set_trace_callback(None)
    assert [s for s in statements if s.startswith(("PRAGMA", "BEGIN", "COMMIT"))] == [
        "PRAGMA synchronous = FULL",
        "BEGIN IMMEDIATE",
        "COMMIT",
        "PRAGMA synchronous = NORMAL",
    ]
    assert released is None and claim.outcome == "claimed" and claim.record_id
    stored = journal.get(row.id)
    assert claim.row == stored
    assert (stored.state, stored.record_id, stored.target, stored.parent_id, stored.matched_by) == (
        State.UPLOADING,
        claim.record_id,
        "CaseFile",
        CASE_A,
        "sidecar",
    )


def test_target_and_claim_releases_the_id_claimed_for_another_parent(journal: Journal) -> None:
    row = journal.mark_ready(add(journal).id, now=T0 + 1, sha256=SHA, mime="application/pdf")
    _, first = _target_and_claim(journal, row)
    journal.mark_retry(row.id, now=T0 + 3, next_attempt_at=T0 + 4, error=ERR)
    _, same = _target_and_claim(journal, row, now=T0 + 5)
    assert same.record_id == first.record_id  # same parent: the Id is kept
    journal.mark_retry(row.id, now=T0 + 6, next_attempt_at=T0 + 7, error=ERR)
    released, moved = _target_and_claim(journal, row, parent=CASE_B, now=T0 + 8)
    assert released == first.record_id
    assert moved.record_id not in (None, first.record_id)
    assert journal.get(row.id).attempts == 2


def test_target_and_claim_skips_duplicates_and_waits_for_a_busy_twin(journal: Journal) -> None:
    first = journal.mark_ready(add(journal).id, now=T0 + 1, sha256=SHA)
    again = journal.mark_ready(add(journal).id, now=T0 + 1, sha256=SHA)
    assert _target_and_claim(journal, first)[1].outcome == "claimed"
    _, busy = _target_and_claim(journal, again)
    assert busy.outcome == "busy" and busy.original is not None and busy.original.id == first.id
    assert busy.row is not None and busy.row.state is State.READY
    assert journal.get(again.id).target == "CaseFile"  # the target is stored all the same
    journal.mark_uploaded(first.id, now=T0 + 3)
    _, dup = _target_and_claim(journal, again, now=T0 + 4)
    assert dup.outcome == "duplicate" and dup.row == journal.get(again.id)
    assert dup.original is not None and dup.original.id == first.id
    assert dup.row.state is State.READY  # recorded by mark_duplicate, after the move


def test_target_and_claim_refuses_a_row_that_is_not_waiting(journal: Journal) -> None:
    seen = add(journal)
    with pytest.raises(JournalError, match="target is fixed"):
        _target_and_claim(journal, seen)
    assert journal.get(seen.id) == seen


def test_a_transition_is_one_update_without_reading_the_row_again(journal: Journal) -> None:
    row = drive(journal, State.UPLOADING)
    statements: list[str] = []
    journal._conn.set_trace_callback(statements.append)
    done = journal.mark_uploaded(row.id, now=T0 + 3)
    journal._conn.set_trace_callback(None)
    assert [s.split()[0] for s in statements] == ["BEGIN", "UPDATE", "COMMIT"]
    assert done == journal.get(row.id) and done.state is State.UPLOADED
    # a refused move still says what the row is
    with pytest.raises(JournalError, match="cannot go from uploaded to ready"):
        journal.requeue(row.id, now=T0 + 4)
    assert journal.get(row.id) == done


def test_waiting_transitions_count_attempts_in_sql(journal: Journal) -> None:
    row = drive(journal, State.READY)
    for n in range(1, 4):
        got = journal.mark_unmatched(
            row.id, now=T0 + n, next_attempt_at=T0 + 10 * n, give_up_at=T0 + 100 * n, error=ERR
        )
        assert (got.attempts, got.give_up_at, got.state) == (n, T0 + 100, State.UNMATCHED)
    got = journal.mark_retry(row.id, now=T0 + 5, next_attempt_at=T0 + 50, error=ERR)
    assert (got.attempts, got.last_error) == (4, ERR)


def test_set_location_records_the_final_path_only_for_finished_files(journal: Journal) -> None:
    waiting = drive(journal, State.UNMATCHED)
    moved = journal.set_location(waiting.id, now=T0 + 5, location="/srv/.unmatched/a b.pdf")
    assert (moved.location, moved.final_path) == ("/srv/.unmatched/a b.pdf", None)
    failed = drive(journal, State.FAILED)
    moved = journal.set_location(failed.id, now=T0 + 5, location="/srv/.failed/\udcff.pdf")
    assert moved.location == moved.final_path == "/srv/.failed/\udcff.pdf"
    with pytest.raises(JournalError, match="no file #999999"):
        journal.set_location(999_999, now=T0, location="/x")


def test_a_version_2_journal_gets_the_index_for_pending_submissions(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / JOURNAL_FILE, isolation_level=None)
    MIGRATIONS[0](conn)  # exactly what version 2 of creatio-attach created
    MIGRATIONS[1](conn)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO submissions (inbox, path, metadata, submitted_at) VALUES"
        " ('recordings', ?, '{\"uniqueid\": \"1.2\"}', 5.0)",
        (b"/spool/1.2.wav",),
    )
    conn.close()
    with Journal.open(tmp_path) as j:
        [sub] = j.pending_submissions()
        assert (sub.path, sub.metadata) == ("/spool/1.2.wav", {"uniqueid": "1.2"})
        plan = j._conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM submissions WHERE taken_at IS NULL"
            " ORDER BY id LIMIT 100"
        ).fetchall()
        assert "submissions_untaken" in " ".join(str(step[3]) for step in plan)
        j.take_submission(sub.id, now=6.0, file_id=None)
        assert j.pending_submissions() == []
    check = sqlite3.connect(tmp_path / JOURNAL_FILE)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    check.close()
