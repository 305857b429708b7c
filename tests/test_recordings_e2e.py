"""Call recordings end to end: a simulated PBX, a fake CTI, the real daemon and the emulator.

A FreePBX-style dated spool is written by several PBX threads, each recording appended in
bursts with pauses while the file stays open (as MixMonitor does), while a CTI thread creates
``Call`` rows before the recording appears, 0.3 to 3 s after it (scaled down from the issue's
"up to 3 minutes"), or never. Recordings without a Call match a contact by number (numbers stored
in many formats) or end unmatched with a reason that lists every step tried. One recording is
completed by ``creatio-attach submit`` while the daemon runs, with its unique id passed by
``--set``.

Scaled to 60 recordings to keep the suite fast; the issue's 500 belong to a bench/soak run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.journal import Journal, State
from tests.conftest import CorpusFile, wait_for
from tests.daemon_helpers import Site, run_cli, running_service

UTC = dt.UTC
AUDIO = [
    "filetype-fixture.wav",
    "textract-raw_text.wav",
    "wavefile-8bit-alaw-8kHz-noBext-mono-encoded.wav",
    "wavefile-4bit-imaadpcm-8kHz-noBext-mono.wav",
    "filetype-fixture.mp3",
    "textract-standardized_text.mp3",
]
#: how each category is made: (count, kind)
PLAN = [
    (16, "call_before"),  # the Call row exists before the recording appears
    (14, "call_after"),  # the CTI writes the Call 0.3-3 s after the recording appears
    (20, "contact"),  # never a Call: the contact by number
    (6, "nothing"),  # never a Call, no contact: unmatched, then failed with the steps tried
]
CONTACT_FORMATS = [
    "+1 (555) {a}-{b}",
    "001555{a}{b}",
    "555{a}{b}",
    "555-{a}-{b}",
    "1-555-{a}-{b}",
]


@dataclass
class Recording:
    index: int
    kind: str
    direction: str  # "in" | "out"
    external: str  # the outside party's number as the PBX writes it
    extension: str
    start: dt.datetime
    source: CorpusFile
    uniqueid: str = ""
    path: Path | None = None
    expected_parent: str = ""
    expected_entity: str = ""
    appeared: threading.Event = field(default_factory=threading.Event)

    @property
    def caller(self) -> str:
        return self.external if self.direction == "in" else self.extension

    @property
    def callee(self) -> str:
        return self.extension if self.direction == "in" else self.external

    @property
    def relative(self) -> str:
        s = self.start
        name = (
            f"{self.direction}-{self.callee}-{self.caller}-{s:%Y%m%d}-{s:%H%M%S}-"
            f"{self.uniqueid}.{self.source.name.rsplit('.', 1)[1]}"
        )
        return f"{s:%Y/%m/%d}/{name}"

    @property
    def record_name(self) -> str:
        ext = self.source.name.rsplit(".", 1)[1]
        return f"{self.caller} -> {self.callee} {self.start:%Y-%m-%d %H-%M-%S}.{ext}"


def iso(when: dt.datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plan(corpus_by_name: dict[str, CorpusFile]) -> list[Recording]:
    rng = random.Random(5)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    out: list[Recording] = []
    for count, kind in PLAN:
        for _ in range(count):
            i = len(out)
            # recent calls wait for their Call row; the others are old enough (> call_wait)
            start = now if kind.startswith("call") else now - dt.timedelta(minutes=15)
            start -= dt.timedelta(seconds=i)  # distinct times
            out.append(
                Recording(
                    index=i,
                    kind=kind,
                    direction="in" if i % 3 else "out",
                    external=rng.choice(["+1555", "1555", "555"]) + f"{3000000 + i:07d}",
                    extension=str(200 + i % 20),
                    start=start,
                    source=corpus_by_name[AUDIO[i % len(AUDIO)]],
                    uniqueid=f"{int(start.timestamp())}.{i}",
                )
            )
    return out


def contact_number(rec: Recording) -> str:
    digits = f"{3000000 + rec.index:07d}"
    template = CONTACT_FORMATS[rec.index % len(CONTACT_FORMATS)]
    return template.format(a=digits[:3], b=digits[3:])


class Pbx:
    """Writes recordings in bursts with pauses, keeping each file open until the call ends;
    after every pause it checks that the emulator holds no record of the growing file."""

    def __init__(self, site: Site, spool: Path) -> None:
        self.site = site
        self.spool = spool
        self.uploaded_while_growing: list[str] = []
        self.errors: list[BaseException] = []

    def record(self, rec: Recording, rng: random.Random) -> None:
        data = rec.source.path.read_bytes()
        path = self.spool / rec.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        rec.path = path
        cuts = sorted(rng.sample(range(1, len(data)), 3))
        bursts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        with path.open("wb") as f:
            for n, burst in enumerate(bursts):
                f.write(burst)
                f.flush()
                if n == 0:
                    rec.appeared.set()
                time.sleep(rng.uniform(0.05, 0.25))  # the call goes on
                if any(x["name"] == rec.record_name for x in self.site.files()):
                    self.uploaded_while_growing.append(rec.relative)

    def run(self, recordings: list[Recording], seed: int) -> None:
        rng = random.Random(seed)
        try:
            for rec in recordings:
                self.record(rec, rng)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


def sha(path_or_bytes: Path | bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_a_pbx_spool_lands_each_recording_once_on_the_right_record(
    tmp_path: Path, emulator: EmbeddedEmulator, corpus_by_name: dict[str, CorpusFile]
) -> None:
    site = Site(tmp_path, emulator, concurrency=4)
    spool = tmp_path / "monitor"
    spool.mkdir()
    site.inboxes["recordings"] = {
        "name": "recordings",
        "folder": str(spool),
        "preset": "freepbx",
        # longer than the test waits for anything: only the close-after-write event (or
        # submit) can complete a recording here, never a pause in the middle of a call
        "settle": "60s",
        "unmatched_retry": {"every": "0.3s", "for": "10s"},
        "match": {
            "steps": ["call_by_id", "call_by_number", "contact_by_number"],
            "time_window": "2m",
            "timezone": "UTC",
            "country_code": "1",
            "last_digits": 9,
            "contact_target": "ContactFile",
        },
    }
    config = site.write_config()
    recordings = plan(corpus_by_name)

    # Contacts for everything but "nothing"; a Call row wins over the contact.
    for rec in recordings:
        if rec.kind != "nothing":
            rows = site.admin("POST", "/__emulator__/records/Contact", {"Name": f"C{rec.index}"})
            contact_id = str((rows[0] if isinstance(rows, list) else rows)["Id"])
            site.admin(
                "POST",
                "/__emulator__/records/ContactCommunication",
                {
                    "ContactId": contact_id,
                    "CommunicationTypeId": "3dddb3cc-53ee-49c4-a71f-e9e257f59e49",
                    "Number": contact_number(rec),
                },
            )
            rec.expected_parent, rec.expected_entity = contact_id, "ContactFile"

    def create_call(rec: Recording) -> None:
        row: dict[str, Any] = {
            "StartDate": iso(rec.start + dt.timedelta(seconds=rec.index % 7 - 3)),
            # the CTI writes numbers its own way
            "CallerId": "+1 " + rec.caller[-10:] if len(rec.caller) > 4 else rec.caller,
            "CalledId": "+1 " + rec.callee[-10:] if len(rec.callee) > 4 else rec.callee,
        }
        if rec.index % 2:
            row["IntegrationId"] = rec.uniqueid  # else only the numbers and time tell
        rows = site.admin("POST", "/__emulator__/records/Call", row)
        rec.expected_parent = str((rows[0] if isinstance(rows, list) else rows)["Id"])
        rec.expected_entity = "CallFile"

    for rec in recordings:
        if rec.kind == "call_before":
            create_call(rec)

    late = [r for r in recordings if r.kind == "call_after"]
    cti_errors: list[BaseException] = []

    def cti(rec: Recording, delay: float) -> None:
        """The CTI connector writes this call's row ``delay`` s after the recording appeared
        (the issue's "up to 3 minutes", scaled down to seconds)."""
        try:
            if not rec.appeared.wait(60):
                raise AssertionError(f"recording {rec.index} never appeared")
            time.sleep(delay)
            create_call(rec)
        except BaseException as exc:  # reported by the test
            cti_errors.append(exc)

    expected = {r.index: r for r in recordings}
    with running_service(config):
        pbx = Pbx(site, spool)
        order = list(recordings)
        random.Random(3).shuffle(order)
        threads = [
            threading.Thread(target=pbx.run, args=(order[k::5], k), name=f"pbx-{k}")
            for k in range(5)
        ]
        delays = random.Random(7)
        threads += [
            threading.Thread(target=cti, args=(rec, delays.uniform(0.3, 3.0)), name="cti")
            for rec in late
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not pbx.errors and not cti_errors, (pbx.errors, cti_errors)
        assert pbx.uploaded_while_growing == []
        matched = [r for r in recordings if r.kind != "nothing"]
        wait_for(
            lambda: len(site.files()) >= len(matched),
            timeout=60,
            what=f"{len(matched)} recordings uploaded",
        )
        wait_for(
            lambda: site.state_count("failed") == sum(r.kind == "nothing" for r in recordings),
            timeout=60,
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
        rows = site.admin(
            "POST",
            "/__emulator__/records/Call",
            {"IntegrationId": "linkedid-42", "StartDate": iso(submitted.start)},
        )
        submitted.expected_parent = str((rows[0] if isinstance(rows, list) else rows)["Id"])
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
            # settle is 60 s and the file is still open: only submit can complete it now
            wait_for(
                lambda: any(x["name"] == submitted.record_name for x in site.files()),
                timeout=30,
                what="the submitted recording",
            )
        expected[submitted.index] = submitted

    assert pbx.uploaded_while_growing == []  # the submitted one was complete, not growing
    stored = site.files()
    assert len(stored) == len(expected) - sum(r.kind == "nothing" for r in recordings)
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
        ), (rec.kind, rec.relative)
        assert record["sha256"] == rec.source.sha256, rec.relative

    with Journal.open_readonly(site.state) as journal:
        failures = journal.failures("recordings")
        counts = journal.matched_by_counts()["recordings"]
    assert sorted(r.path for r in failures) == sorted(
        r.relative for r in recordings if r.kind == "nothing"
    )
    for row in failures:
        assert row.last_error is not None
        for step in ("call_by_id", "call_by_number", "contact_by_number"):
            assert step in row.last_error.message, row.last_error.message
    with Journal.open_readonly(site.state) as journal:
        finished = {row.path: row for row in journal.by_state(State.DONE, inbox="recordings")}
    # some late Call rows really came after a first, unmatched attempt
    assert any(finished[r.relative].attempts > 1 for r in late)
    calls = sum(r.kind.startswith("call") for r in recordings)
    assert counts.get("call_by_id", 0) + counts.get("call_by_number", 0) == calls + 1
    assert counts.get("call_by_number", 0) > 0 and counts.get("call_by_id", 0) > 0
    assert counts["contact_by_number"] == sum(r.kind == "contact" for r in recordings)
