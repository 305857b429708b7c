"""Call recordings end to end: a simulated PBX, a fake CTI, the real daemon and the emulator.

A FreePBX-style dated spool is written by several PBX threads, each recording appended in
bursts with pauses while the file stays open (as MixMonitor does), while a CTI thread creates
``Call`` rows before the recording appears, up to ``max_call_delay`` after it, or never.
Recordings without a Call match a contact by number (numbers stored in many formats): at once
for old calls, only after ``call_wait`` for recent ones; the others end unmatched with a reason
that lists every step tried. One recording is completed by ``creatio-attach submit`` while the
daemon runs, with its unique id passed by ``--set``. At the end ``creatio-attach status`` (text
and ``--json``) shows the matched-by-step counts and what was tried for each failure.

Its size comes from ``CREATIO_ATTACH_SOAK_*`` (``tests.recordings_sim.Scale``): unset, 56
recordings with Call rows up to 3 s late (``make test``); ``make soak`` runs the issue's
500 recordings with Call rows up to 3 minutes late.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from collections import Counter
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.journal import Journal, State
from tests.conftest import CorpusFile, wait_for
from tests.daemon_helpers import Site, run_cli, running_service
from tests.recordings_sim import (
    UTC,
    Cti,
    Pbx,
    Recording,
    Scale,
    create_call,
    create_contact,
    iso,
    one_row,
    plan,
)

SCALE = Scale.from_env()
STEPS = ("call_by_id", "call_by_number", "contact_by_number")


def tried_every_step(message: str) -> bool:
    """The message names each step, in the order they ran."""
    places = [message.find(step + ":") for step in STEPS]
    return all(p >= 0 for p in places) and places == sorted(places)


@pytest.mark.slow
@pytest.mark.timeout(SCALE.test_seconds)
def test_a_pbx_spool_lands_each_recording_once_on_the_right_record(
    tmp_path: Path, emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile]
) -> None:
    assert not SCALE.problems(), SCALE.problems()
    site = Site(tmp_path, emulator, concurrency=4)
    spool = tmp_path / "monitor"
    spool.mkdir()
    site.inboxes["recordings"] = SCALE.inbox_table(spool)
    config = site.write_config()
    recordings = plan(SCALE, corpus_by_name)

    # Contacts for everything but "nothing"; a Call row wins over the contact.
    for rec in recordings:
        if rec.kind != "nothing":
            create_contact(site, rec)
    for rec in recordings:
        if rec.kind == "call_before":
            create_call(site, rec)

    late = [r for r in recordings if r.kind == "call_after"]
    expected = {r.index: r for r in recordings}
    with running_service(config):
        pbx = Pbx(site, spool)
        cti = Cti(site, late, appear_timeout=SCALE.pbx_seconds)
        order = list(recordings)
        random.Random(3).shuffle(order)
        k = SCALE.pbx_threads
        threads = [
            threading.Thread(target=pbx.run, args=(order[n::k], n), name=f"pbx-{n}")
            for n in range(k)
        ]
        threads.append(threading.Thread(target=cti.run, name="cti"))
        try:
            for t in threads:
                t.start()
            for t in threads[:-1]:
                t.join(SCALE.pbx_seconds)
            threads[-1].join(SCALE.pbx_seconds + SCALE.max_call_delay + 10)
        finally:
            cti.stop.set()
            for t in threads:
                t.join(10)
        assert not pbx.errors and not cti.errors, (pbx.errors, cti.errors)
        assert not any(t.is_alive() for t in threads)
        assert pbx.uploaded_while_growing == []
        matched = [r for r in recordings if r.kind != "nothing"]
        wait_for(
            lambda: len(site.files()) >= len(matched),
            timeout=SCALE.upload_seconds,
            interval=0.5,
            what=f"{len(matched)} recordings uploaded",
        )
        wait_for(
            lambda: site.state_count("failed") == sum(r.kind == "nothing" for r in recordings),
            timeout=SCALE.fail_seconds,
            interval=0.5,
            what="the unmatched recordings to fail",
        )

        # submit while the daemon runs: the file is still open, its name's id matches no Call,
        # the id passed by --set does
        submitted = Recording(
            index=len(recordings),
            kind="submit",
            direction="in",
            external="5559990000",
            extension="299",
            start=dt.datetime.now(UTC).replace(microsecond=0),
            source=corpus_by_name["wavefile-8bit-alaw-8kHz-noBext-mono-encoded.wav"],
            uniqueid="1700000000.999",
        )
        call = {"IntegrationId": "linkedid-42", "StartDate": iso(submitted.start)}
        submitted.expected_parent = str(
            one_row(site.admin("POST", "/__emulator__/records/Call", call))["Id"]
        )
        submitted.expected_entity = "CallFile"
        path = spool / submitted.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            f.write(submitted.source.path.read_bytes())
            f.flush()
            done = run_cli(
                "submit",
                str(path),
                "--config",
                str(config),
                "--inbox",
                "recordings",
                "--set",
                "uniqueid=linkedid-42",
            )
            assert done.returncode == 0, done.stderr
            # settle is long and the file is still open: only submit can complete it now
            wait_for(
                lambda: any(x["name"] == submitted.record_name for x in site.files()),
                timeout=30,
                what="the submitted recording",
            )
        expected[submitted.index] = submitted

        # what an operator sees, from another process while the daemon runs
        text = run_cli("status", "--config", str(config), "--last", "3")
        as_json = run_cli("status", "--config", str(config), "--json")
    assert text.returncode == 0 and as_json.returncode == 0, (text.stderr, as_json.stderr)

    assert pbx.uploaded_while_growing == []  # the submitted one was complete, not growing
    stored = site.files()
    nothing = sorted(r.relative for r in recordings if r.kind == "nothing")
    assert len(stored) == len(expected) - len(nothing)
    by_name = {}
    for record in stored:
        assert record["name"] not in by_name, f"uploaded twice: {record['name']}"
        by_name[record["name"]] = record
    for rec in expected.values():
        if rec.kind == "nothing":
            assert rec.record_name not in by_name
            continue
        record = by_name[rec.record_name]
        assert (record["entity"], record["parent_id"]) == (
            rec.expected_entity,
            rec.expected_parent,
        ), (rec.kind, rec.relative, rec.delay)
        assert record["sha256"] == rec.source.sha256, rec.relative
        if rec.kind == "contact_late":
            # the contact only after call_wait: the Call row might still have come
            created = dt.datetime.fromisoformat(record["created_on"].replace("Z", "+00:00"))
            ready = rec.start + dt.timedelta(seconds=SCALE.effective_call_wait)
            assert created >= ready, (rec.relative, created, ready)

    with Journal.open_readonly(tmp_path / "state") as journal:
        failures = journal.failures("recordings")
        finished = {row.path: row for row in journal.by_state(State.DONE, inbox="recordings")}
    assert sorted(r.path for r in failures) == nothing
    for row in failures:
        assert row.last_error is not None
        assert tried_every_step(row.last_error.message), row.last_error.message
    # some late Call rows really came after a first, unmatched attempt
    assert any(finished[r.relative].attempts > 1 for r in late)

    # each recording was matched by the step its Call row allows: a row with IntegrationId
    # (odd index, and the submitted one) by id, the others by numbers and start time; a late
    # row with an id may also be found by number when the CTI writes it between the two
    # steps of one attempt
    assert finished[submitted.relative].matched_by == "call_by_id"
    for rec in recordings:
        if rec.kind == "nothing":
            continue
        step = finished[rec.relative].matched_by
        if rec.kind in ("contact", "contact_late"):
            assert step == "contact_by_number", (rec.relative, step)
        elif rec.index % 2 == 0:
            assert step == "call_by_number", (rec.relative, step)
        elif rec.kind == "call_before":
            assert step == "call_by_id", (rec.relative, step)
        else:
            assert step in ("call_by_id", "call_by_number"), (rec.relative, step)

    # status --json: the counts per step are exactly the journal's rows
    want = dict(Counter(str(row.matched_by) for row in finished.values()))
    calls = sum(r.kind in ("call_before", "call_after") for r in recordings) + 1
    assert want["call_by_id"] + want["call_by_number"] == calls
    assert want["contact_by_number"] == sum(
        r.kind in ("contact", "contact_late") for r in recordings
    )
    doc = json.loads(as_json.stdout)
    assert doc["matched_by"] == {"recordings": want}
    assert doc["counts"]["recordings"].get("done") == len(expected) - len(nothing)
    assert doc["counts"]["recordings"].get("failed") == len(nothing)
    assert sorted(f["file"] for f in doc["failures"]) == nothing
    for failure in doc["failures"]:
        assert failure["inbox"] == "recordings" and failure["state"] == "failed"
        assert tried_every_step(failure["message"]), failure["message"]
    assert doc["waiting"] == []

    # status as text: the per-step line and one failure line per unmatched recording that
    # says what was tried
    lines = text.stdout.splitlines()
    at = lines.index("recordings matched by step:")
    assert lines[at + 1] == "  recordings: " + ", ".join(
        f"{k} {v}" for k, v in sorted(want.items())
    )
    for rel in nothing:
        shown = [line for line in lines if line.startswith(f"  recordings: {rel}: ")]
        assert len(shown) == 1 and tried_every_step(shown[0]), (rel, text.stdout)
