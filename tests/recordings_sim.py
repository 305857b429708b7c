"""A simulated PBX and CTI for the call-recording end-to-end test, and the test's scale.

``Scale`` reads the run's size from ``CREATIO_ATTACH_SOAK_*`` environment variables: unset, it
is the fast run of ``make test``; ``make soak`` sets the issue's numbers (500 recordings, Call
rows up to 3 minutes late). ``plan`` makes the recordings, ``Pbx`` writes them into a
FreePBX-style dated spool in bursts with pauses while the file stays open (as MixMonitor does),
``Cti`` writes the late ``Call`` rows.

Test support only: imports the package's public pieces and nothing of the test modules but
``tests.conftest``/``tests.daemon_helpers``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import CorpusFile
from tests.daemon_helpers import Site

UTC = dt.UTC
#: ``[inbox.match] call_wait`` when the config does not set it (settings_models.MatchSettings)
CONFIG_CALL_WAIT = 180.0
AUDIO = [
    "filetype-fixture.wav",
    "textract-raw_text.wav",
    "wavefile-8bit-alaw-8kHz-noBext-mono-encoded.wav",
    "wavefile-4bit-imaadpcm-8kHz-noBext-mono.wav",
    "filetype-fixture.mp3",
    "textract-standardized_text.mp3",
]
#: the mix of a run of 56 recordings: (count, kind); other sizes keep the proportions
PLAN = [
    (16, "call_before"),  # the Call row exists before the recording appears
    (14, "call_after"),  # the CTI writes the Call up to max_call_delay after it appears
    (14, "contact"),  # never a Call, an old call: the contact by number at once
    (6, "contact_late"),  # never a Call, a recent call: the contact once call_wait is over
    (6, "nothing"),  # never a Call, no contact: unmatched, then failed with the steps tried
]
CONTACT_FORMATS = [
    "+1 (555) {a}-{b}",
    "001555{a}{b}",
    "555{a}{b}",
    "555-{a}-{b}",
    "1-555-{a}-{b}",
]
#: the longest pause between two bursts of a recording, in seconds
MAX_PAUSE = 0.25
ENV = "CREATIO_ATTACH_SOAK_"


@dataclass(frozen=True)
class Scale:
    """How big the run is; every timeout of the test derives from it.

    ``call_wait``: None leaves ``[inbox.match] call_wait`` at the config's default (180 s).
    ``unmatched_for``: None derives it from the delays (unmatched recordings waiting for their
    Call row must not fail before it comes).
    """

    recordings: int = 56
    pbx_threads: int = 5
    max_call_delay: float = 3.0  # the latest a Call row (or the contact fallback) comes, s
    settle: float = 60.0
    call_wait: float | None = None
    unmatched_every: float = 0.3
    unmatched_for: float | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Scale:
        def number(name: str, default: float | None, kind: Callable[[str], Any] = float) -> Any:
            raw = env.get(ENV + name, "").strip()
            if not raw:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{ENV}{name}={raw!r} is not a number") from None

        base = cls()
        return cls(
            recordings=number("RECORDINGS", base.recordings, int),
            pbx_threads=number("PBX_THREADS", base.pbx_threads, int),
            max_call_delay=number("MAX_CALL_DELAY", base.max_call_delay),
            settle=number("SETTLE", base.settle),
            call_wait=number("CALL_WAIT", base.call_wait),
            unmatched_every=number("UNMATCHED_RETRY", base.unmatched_every),
            unmatched_for=number("UNMATCHED_FOR", base.unmatched_for),
        )

    @property
    def effective_call_wait(self) -> float:
        return CONFIG_CALL_WAIT if self.call_wait is None else self.call_wait

    @property
    def effective_unmatched_for(self) -> float:
        if self.unmatched_for is not None:
            return self.unmatched_for
        return max(10.0, self.max_call_delay + 2 * self.unmatched_every + 5)

    @property
    def min_call_delay(self) -> float:
        return min(0.3, self.max_call_delay)

    def problems(self) -> list[str]:
        """Settings under which the run could not tell right from wrong."""
        out = []
        if self.recordings < len(PLAN) or self.pbx_threads < 1:
            out.append(f"needs at least {len(PLAN)} recordings and one PBX thread")
        if self.max_call_delay + 5 > self.effective_call_wait:
            out.append(
                f"a Call row {self.max_call_delay:g} s late races the contact fallback after "
                f"call_wait {self.effective_call_wait:g} s: set {ENV}CALL_WAIT to at least "
                f"{self.max_call_delay + 5:g}"
            )
        if self.effective_unmatched_for < self.max_call_delay + self.unmatched_every + 5:
            out.append(
                f"{ENV}UNMATCHED_FOR {self.effective_unmatched_for:g} s would fail recordings "
                f"whose Call row is still to come (max delay {self.max_call_delay:g} s)"
            )
        if self.settle < 10 * MAX_PAUSE:
            out.append(f"{ENV}SETTLE must be far longer than a pause in a call ({MAX_PAUSE} s)")
        return out

    @property
    def pbx_seconds(self) -> float:
        """A generous bound on the time the PBX threads take to write every recording: twice
        the pauses, since the PBX threads share the interpreter with the daemon under test."""
        per_thread = math.ceil(self.recordings / max(1, self.pbx_threads))
        return 2 * per_thread * (3 * MAX_PAUSE + 0.75) + 30

    @property
    def upload_seconds(self) -> float:
        """A bound on the time until every matched recording is uploaded."""
        return (
            self.pbx_seconds
            + self.max_call_delay
            + 2 * self.unmatched_every
            + 60
            + 0.1 * self.recordings
        )

    @property
    def fail_seconds(self) -> float:
        """A bound on the time until every unmatched recording has failed."""
        return self.pbx_seconds + self.effective_unmatched_for + 60 + 0.1 * self.recordings

    @property
    def test_seconds(self) -> float:
        """The whole test's timeout (pytest-timeout): the waits overlap, plus the submit and
        the status commands."""
        return max(self.upload_seconds, self.fail_seconds) + 150

    def counts(self) -> list[tuple[int, str]]:
        """PLAN scaled to ``recordings`` (each kind at least once)."""
        total = sum(c for c, _ in PLAN)
        out = [(max(1, round(self.recordings * c / total)), kind) for c, kind in PLAN]
        excess = sum(c for c, _ in out) - self.recordings
        big = max(range(len(out)), key=lambda k: out[k][0])
        out[big] = (out[big][0] - excess, out[big][1])
        return out

    def inbox_table(self, spool: Path) -> dict[str, Any]:
        """The ``[[inbox]]`` table of the recordings inbox."""
        match: dict[str, Any] = {
            "steps": ["call_by_id", "call_by_number", "contact_by_number"],
            "time_window": "2m",
            "timezone": "UTC",
            "country_code": "1",
            "last_digits": 9,
            "contact_target": "ContactFile",
        }
        if self.call_wait is not None:
            match["call_wait"] = f"{self.call_wait:g}s"
        return {
            "name": "recordings",
            "folder": str(spool),
            "preset": "freepbx",
            # longer than any pause in a call: only the close-after-write event (or submit)
            # can complete a recording here, never a pause in the middle of a call
            "settle": f"{self.settle:g}s",
            "unmatched_retry": {
                "every": f"{self.unmatched_every:g}s",
                "for": f"{self.effective_unmatched_for:g}s",
            },
            "match": match,
        }


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
    #: seconds after the recording appears: the CTI's Call row (call_after) or the end of
    #: call_wait (contact_late)
    delay: float = 0.0
    #: the PBX names the file when it opens it: start = then - this (None: start is planned)
    start_before_open: float | None = None
    path: Path | None = None
    expected_parent: str = ""
    expected_entity: str = ""
    appeared: threading.Event = field(default_factory=threading.Event)
    appeared_at: float = 0.0  # time.monotonic()

    @property
    def caller(self) -> str:
        return self.external if self.direction == "in" else self.extension

    @property
    def callee(self) -> str:
        return self.extension if self.direction == "in" else self.external

    @property
    def ext(self) -> str:
        return self.source.name.rsplit(".", 1)[1]

    @property
    def relative(self) -> str:
        s = self.start
        name = (
            f"{self.direction}-{self.callee}-{self.caller}-{s:%Y%m%d}-{s:%H%M%S}-"
            f"{self.uniqueid}.{self.ext}"
        )
        return f"{s:%Y/%m/%d}/{name}"

    @property
    def record_name(self) -> str:
        return f"{self.caller} -> {self.callee} {self.start:%Y-%m-%d %H-%M-%S}.{self.ext}"

    def name_at_open(self) -> None:
        """Fix the start time and unique id as the PBX does when the call starts."""
        if self.start_before_open is None:
            return
        now = dt.datetime.now(UTC) - dt.timedelta(seconds=self.start_before_open)
        self.start = now.replace(microsecond=0)
        self.uniqueid = f"{int(self.start.timestamp())}.{self.index}"


def iso(when: dt.datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def plan(scale: Scale, corpus_by_name: dict[str, CorpusFile]) -> list[Recording]:
    rng = random.Random(5)
    now = dt.datetime.now(UTC).replace(microsecond=0)
    old = dt.timedelta(seconds=scale.effective_call_wait + 12 * 60)
    out: list[Recording] = []
    for count, kind in scale.counts():
        for _ in range(count):
            i = len(out)
            # calls without a Call row that are old enough (> call_wait) take the contact at
            # once; the recent ones wait for their Call row first
            start = now - old if kind in ("contact", "nothing") else now
            start -= dt.timedelta(seconds=i)  # distinct times
            rec = Recording(
                index=i,
                kind=kind,
                direction="in" if i % 3 else "out",
                external=rng.choice(["+1555", "1555", "555"]) + f"{3000000 + i:07d}",
                extension=str(200 + i % 20),
                start=start,
                source=corpus_by_name[AUDIO[i % len(AUDIO)]],
                uniqueid=f"{int(start.timestamp())}.{i}",
            )
            if kind == "call_after":
                rec.delay = rng.uniform(scale.min_call_delay, scale.max_call_delay)
                rec.start_before_open = 0.0
            elif kind == "contact_late":
                # the call started call_wait - delay ago: call_wait ends ``delay`` after the
                # recording appears
                rec.delay = rng.uniform(scale.max_call_delay / 2, scale.max_call_delay)
                rec.start_before_open = scale.effective_call_wait - rec.delay
            out.append(rec)
    return out


def contact_number(rec: Recording) -> str:
    digits = f"{3000000 + rec.index:07d}"
    template = CONTACT_FORMATS[rec.index % len(CONTACT_FORMATS)]
    return template.format(a=digits[:3], b=digits[3:])


def one_row(rows: Any) -> dict[str, Any]:
    return dict(rows[0] if isinstance(rows, list) else rows)


def create_contact(site: Site, rec: Recording) -> None:
    """A Contact whose number (in one of many formats) is the recording's external party."""
    contact_id = str(
        one_row(site.admin("POST", "/__emulator__/records/Contact", {"Name": f"C{rec.index}"}))[
            "Id"
        ]
    )
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


def create_call(site: Site, rec: Recording) -> None:
    """The Call row as a CTI connector writes it: its own number format, a start a few seconds
    off, and for every other call the PBX's unique id in IntegrationId."""
    row: dict[str, Any] = {
        "StartDate": iso(rec.start + dt.timedelta(seconds=rec.index % 7 - 3)),
        "CallerId": "+1 " + rec.caller[-10:] if len(rec.caller) > 4 else rec.caller,
        "CalledId": "+1 " + rec.callee[-10:] if len(rec.callee) > 4 else rec.callee,
    }
    if rec.index % 2:
        row["IntegrationId"] = rec.uniqueid  # else only the numbers and time tell
    rec.expected_parent = str(one_row(site.admin("POST", "/__emulator__/records/Call", row))["Id"])
    rec.expected_entity = "CallFile"


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
        rec.name_at_open()
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
                    rec.appeared_at = time.monotonic()
                    rec.appeared.set()
                time.sleep(rng.uniform(0.05, MAX_PAUSE))  # the call goes on
                if any(x["name"] == rec.record_name for x in self.site.files()):
                    self.uploaded_while_growing.append(rec.relative)

    def run(self, recordings: list[Recording], seed: int) -> None:
        rng = random.Random(seed)
        try:
            for rec in recordings:
                self.record(rec, rng)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)


class Cti:
    """The CTI connector: writes each late call's row ``rec.delay`` s after its recording
    appeared. One thread for all of them, in the order they fall due."""

    def __init__(self, site: Site, late: list[Recording], appear_timeout: float) -> None:
        self.site = site
        self.late = late
        self.appear_timeout = appear_timeout
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            pending = list(self.late)
            deadline = time.monotonic() + self.appear_timeout
            while pending and not self.stop.is_set():
                due = [r for r in pending if r.appeared.is_set()]
                now = time.monotonic()
                ready = [r for r in due if now >= r.appeared_at + r.delay]
                for rec in sorted(ready, key=lambda r: r.appeared_at + r.delay):
                    create_call(self.site, rec)
                    pending.remove(rec)
                if any(not r.appeared.is_set() for r in pending) and now > deadline:
                    missing = [r.index for r in pending if not r.appeared.is_set()]
                    raise AssertionError(f"recordings {missing} never appeared")
                # the next row falls due within this wait (0.05 s keeps the rows on time)
                self.stop.wait(0.05)
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)
