"""A recording waiting for its Call row is not failed early, and is looked at again right when
``call_wait`` ends, however short ``unmatched_retry.for`` and however long ``every``.

The real daemon (``running_service``) and the emulator: ``call_wait = "4s"``,
``unmatched_retry = { every = "30s", for = "1s" }``. One recording's Call row comes 2 s after
the file is dropped (it lands on the Call, not the contact and not failed); another has no Call
row but a contact (it lands on the contact once ``call_wait`` is over, long before ``every``).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.journal import Journal, State
from tests.conftest import CorpusFile, wait_for
from tests.daemon_helpers import (
    Site,
    log_lines,
    running_service,
    start_daemon,
    stop_daemon,
    wait_ready,
)
from tests.recordings_sim import UTC, Recording, create_call, create_contact

CALL_WAIT = 4.0
EVERY = 30.0


def recording(index: int, start: dt.datetime, source: CorpusFile) -> Recording:
    return Recording(
        index=index,
        kind="wait",
        direction="in",
        external=f"555{3000000 + index:07d}",
        extension=str(200 + index),
        start=start,
        source=source,
        uniqueid=f"{int(start.timestamp())}.{index}",
    )


def drop(spool: Path, rec: Recording) -> float:
    """Write the recording into the spool; returns when (``time.monotonic()``)."""
    path = spool / rec.relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rec.source.path.read_bytes())
    rec.path = path
    return time.monotonic()


def uploaded(site: Site, rec: Recording) -> dict[str, object] | None:
    return next((f for f in site.files() if f["name"] == rec.record_name), None)


@pytest.mark.timeout(60)
def test_a_recording_waits_for_its_call_then_for_call_wait_not_for_every(
    tmp_path: Path, emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile]
) -> None:
    site = Site(tmp_path, emulator, concurrency=2)
    spool = tmp_path / "monitor"
    spool.mkdir()
    site.inboxes["recordings"] = {
        "name": "recordings",
        "folder": str(spool),
        "preset": "freepbx",
        "settle": "0.3s",
        "unmatched_retry": {"every": f"{EVERY:g}s", "for": "1s"},
        "match": {
            "steps": ["call_by_id", "call_by_number", "contact_by_number"],
            "time_window": "2m",
            "timezone": "UTC",
            "country_code": "1",
            "last_digits": 9,
            "contact_target": "ContactFile",
            "call_wait": f"{CALL_WAIT:g}s",
        },
    }
    config = site.write_config()
    start = dt.datetime.now(UTC).replace(microsecond=0)
    late_call = recording(1, start, corpus_by_name["filetype-fixture.wav"])
    no_call = recording(2, start, corpus_by_name["filetype-fixture.mp3"])
    # both have a contact: only call_wait keeps the first one off it until its Call row comes
    create_contact(site, late_call)
    create_contact(site, no_call)
    contact_of_late_call = late_call.expected_parent

    with running_service(config):
        dropped = drop(spool, late_call)
        drop(spool, no_call)
        # the first look finds no Call: both wait (not failed, although ``for`` is 1 s)
        wait_for(
            lambda: site.state_count("unmatched", "recordings") == 2,
            timeout=CALL_WAIT,
            what="both recordings unmatched, waiting for their Call",
        )
        # the CTI writes the Call row 2 s after the recording appeared
        time.sleep(max(0.0, dropped + 2.0 - time.monotonic()))
        create_call(site, late_call)

        wait_for(
            lambda: uploaded(site, late_call) and uploaded(site, no_call),
            timeout=CALL_WAIT + EVERY / 3,
            interval=0.2,
            what="both recordings uploaded soon after call_wait ends",
        )
        assert site.state_count("failed", "recordings") == 0

    on_call = uploaded(site, late_call)
    on_contact = uploaded(site, no_call)
    assert on_call is not None and on_contact is not None
    assert (on_call["entity"], on_call["parent_id"]) == ("CallFile", late_call.expected_parent)
    assert on_call["parent_id"] != contact_of_late_call
    assert (on_contact["entity"], on_contact["parent_id"]) == (
        "ContactFile",
        no_call.expected_parent,
    )
    # the contact only once call_wait was over: the Call row might still have come
    created = dt.datetime.fromisoformat(str(on_contact["created_on"]).replace("Z", "+00:00"))
    assert created >= start + dt.timedelta(seconds=CALL_WAIT)

    with Journal.open_readonly(tmp_path / "state") as journal:
        done = {row.path: row for row in journal.by_state(State.DONE, inbox="recordings")}
    assert done[late_call.relative].matched_by in ("call_by_id", "call_by_number")
    assert done[no_call.relative].matched_by == "contact_by_number"
    # each waited at least once before it was matched
    assert done[late_call.relative].attempts >= 1
    assert done[no_call.relative].attempts >= 1


def test_a_recording_whose_name_gives_nothing_to_ask_is_no_sign_of_a_reachable_creatio(
    tmp_path: Path, emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile]
) -> None:
    """Every step skipped (no call id, time or number in the name): no request was made, so
    the not-found says nothing about Creatio, and a dead Creatio must not look reachable."""
    site = Site(tmp_path, emulator)
    cases = site.inbox()
    spool = tmp_path / "calls"
    spool.mkdir()
    site.inboxes["calls"] = {
        "name": "calls",
        "folder": str(spool),
        "pattern": r"^(?P<caller>[0-9]*)_(?P<callee>[0-9]*)\.(?P<ext>wav)$",
        "settle": "0.3s",
        "unmatched_retry": {"every": "0.3s", "for": "1m"},
        "match": {"steps": ["call_by_id", "call_by_number", "contact_by_number"]},
    }
    config = site.write_config()
    log = tmp_path / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        site.faults("503@p=1:path=.:retry-after=0")  # every request, the login and probe too
        (cases / "SR7000_note.txt").write_bytes(b"a note for a case\n" * 50)
        wait_for(
            lambda: "creatio.unreachable" in [e.get("event") for e in log_lines(log)],
            timeout=30,
            what="Creatio seen unreachable",
        )
        (spool / "_.wav").write_bytes(corpus_by_name["filetype-fixture.wav"].path.read_bytes())

        def looked_twice() -> bool:
            tries = [
                e
                for e in log_lines(log)
                if e.get("event") == "file.unmatched" and e.get("file") == "_.wav"
            ]
            return len(tries) >= 2

        wait_for(looked_twice, timeout=30, what="the nameless recording looked at twice")
        events = log_lines(log)
        unmatched = next(e for e in events if e.get("event") == "file.unmatched")
        assert "skipped" in str(unmatched["error"])
        assert "creatio.reachable_again" not in [e.get("event") for e in events]
        assert stop_daemon(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
