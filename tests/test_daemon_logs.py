"""The daemon's JSON log: every ``file.*`` event carries inbox, file, state, entity, record Id,
bytes, MIME, duration and a 1-based attempt (issue 4, item 10).

One real daemon subprocess, its log in a file (so JSON lines), the emulator over loopback, and
files with different fates: uploaded and archived, a duplicate, a retry after 503s, unmatched
then found, and failed after waiting for a parent that never comes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import wait_for
from tests.daemon_helpers import Site, start_daemon, stop_daemon, wait_ready

FIELDS = {
    "inbox",
    "file",
    "state",
    "entity",
    "record_id",
    "bytes",
    "mime",
    "duration",
    "attempt",
}
#: the state the row is in when each outcome is logged
STATE_OF = {
    "file.uploaded": "uploaded",
    "file.done": "done",
    "file.duplicate": "duplicate",
    "file.retry_wait": "retry_wait",
    "file.unmatched": "unmatched",
    "file.failed": "failed",
}


@pytest.fixture
def site(tmp_path: Path, emulator: EmbeddedEmulator) -> Site:
    return Site(tmp_path, emulator)


def file_events(log: Path) -> list[dict[str, Any]]:
    events = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        if str(doc.get("event", "")).startswith("file."):
            events.append(doc)
    return events


def of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["file"] == name]


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def logged(log: Path, name: str, event: str, count: int = 1) -> bool:
    return sum(e["event"] == event for e in of(file_events(log), name)) >= count


def test_every_file_event_carries_the_same_fields_with_a_1_based_attempt(site: Site) -> None:
    site.case("SR100")
    cases = site.inbox("cases", unmatched_retry={"every": "0.3s", "for": "1h"})
    lost = site.inbox("lost", unmatched_retry={"every": "0.3s", "for": "1.5s"})
    config = site.write_config()
    body = {
        "SR100_first.txt": b"the first file for SR100\n" * 40,
        "SR100_again.txt": b"the first file for SR100\n" * 40,  # the same content
        "SR100_retry.txt": b"a file that meets a 503 first\n" * 30,
        "SR200_later.txt": b"a file whose case appears later\n" * 20,
        "SR404_never.txt": b"a file whose case never appears\n" * 10,
    }
    log = site.root / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        (cases / "SR100_first.txt").write_bytes(body["SR100_first.txt"])
        (cases / "SR200_later.txt").write_bytes(body["SR200_later.txt"])
        (lost / "SR404_never.txt").write_bytes(body["SR404_never.txt"])
        wait_for(lambda: logged(log, "SR100_first.txt", "file.done"), timeout=20, what="first")
        (cases / "SR100_again.txt").write_bytes(body["SR100_again.txt"])
        wait_for(
            lambda: logged(log, "SR200_later.txt", "file.unmatched", 2),
            timeout=20,
            what="SR200 unmatched twice",
        )
        site.case("SR200")
        wait_for(lambda: logged(log, "SR200_later.txt", "file.done"), timeout=20, what="SR200")
        wait_for(lambda: logged(log, "SR404_never.txt", "file.failed"), timeout=20, what="lost")
        wait_for(lambda: logged(log, "SR100_again.txt", "file.duplicate"), timeout=20, what="dup")
        site.faults("503@p=1:method=PUT:retry-after=0")  # every upload of content
        (cases / "SR100_retry.txt").write_bytes(body["SR100_retry.txt"])
        wait_for(
            lambda: logged(log, "SR100_retry.txt", "file.retry_wait"),
            timeout=30,
            what="a retry after 503",
        )
        site.faults(None)
        wait_for(lambda: logged(log, "SR100_retry.txt", "file.done"), timeout=30, what="retry")
        assert stop_daemon(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()

    events = file_events(log)
    stored = {f["sha256"]: f for f in site.files()}
    # every file event, whatever it is, has every field, a 1-based attempt and a duration
    for e in events:
        assert set(e) >= FIELDS, (e["event"], FIELDS - set(e))
        assert isinstance(e["attempt"], int) and e["attempt"] >= 1, e
        assert isinstance(e["duration"], int) and e["duration"] >= 0, e
        assert e["file"] in body, e
        assert e["inbox"] == ("lost" if e["file"].startswith("SR404") else "cases"), e
        assert e["bytes"] == len(body[e["file"]]), e
        assert e["mime"] == "text/plain", e
        if e["event"] in STATE_OF:
            assert e["state"] == STATE_OF[e["event"]], e
    for name in body:
        mine = of(events, name)
        durations = [e["duration"] for e in mine]
        assert durations == sorted(durations), (name, durations)

    def uploaded_fields(name: str, attempt: int) -> None:
        """uploaded then done, on one attempt, with the record Id Creatio holds."""
        done = [e for e in of(events, name) if e["event"] in ("file.uploaded", "file.done")]
        assert kinds(done) == ["file.uploaded", "file.done"], name
        record = stored[hashlib.sha256(body[name]).hexdigest()]
        for e in done:
            assert e["entity"] == "CaseFile"
            assert e["record_id"] == record["id"].lower()
            assert e["attempt"] == attempt, (name, e)
        assert done[1]["disposition"] == "archived"
        assert isinstance(done[0]["upload_ms"], int) and done[0]["upload_ms"] >= 0

    # uploaded and archived at the first try: attempt 1, not 0
    assert kinds(of(events, "SR100_first.txt")) == ["file.uploaded", "file.done"]
    uploaded_fields("SR100_first.txt", attempt=1)

    # a duplicate: routed (the entity is known), never claimed (no record Id)
    (dup,) = of(events, "SR100_again.txt")
    assert dup["event"] == "file.duplicate"
    assert (dup["entity"], dup["record_id"], dup["attempt"]) == ("CaseFile", None, 1)
    assert dup["duplicate_of"] == "SR100_first.txt"

    # unmatched: not routed yet (no entity, no record Id), attempts 1, 2, ..., then found
    later = of(events, "SR200_later.txt")
    waits = [e for e in later if e["event"] == "file.unmatched"]
    assert len(waits) >= 2
    assert [e["attempt"] for e in waits] == list(range(1, len(waits) + 1))
    assert all(e["entity"] is None and e["record_id"] is None for e in waits)
    assert kinds(later) == ["file.unmatched"] * len(waits) + ["file.uploaded", "file.done"]
    uploaded_fields("SR200_later.txt", attempt=len(waits) + 1)

    # no parent ever: unmatched until it gives up, then failed on the next attempt
    never = of(events, "SR404_never.txt")
    assert kinds(never) == ["file.unmatched"] * (len(never) - 1) + ["file.failed"]
    assert [e["attempt"] for e in never] == list(range(1, len(never) + 1))
    failed = never[-1]
    assert (failed["entity"], failed["record_id"], failed["reason"]) == (
        None,
        None,
        "parent_not_found",
    )
    # the duration counts from when the file was found, so it spans the whole wait
    assert failed["duration"] >= 1500

    # a 503 on the content: the record Id was claimed before the upload and is kept
    retried = of(events, "SR100_retry.txt")
    retries = [e for e in retried if e["event"] == "file.retry_wait"]
    assert kinds(retried) == ["file.retry_wait"] * len(retries) + ["file.uploaded", "file.done"]
    assert [e["attempt"] for e in retries] == list(range(1, len(retries) + 1))
    record = stored[hashlib.sha256(body["SR100_retry.txt"]).hexdigest()]
    assert all(e["record_id"] == record["id"].lower() for e in retries)
    assert all(e["entity"] == "CaseFile" for e in retries)
    uploaded_fields("SR100_retry.txt", attempt=len(retries) + 1)
