"""The daemon end to end, in-process: real watchdog, real files, the emulator over HTTP.

Each test writes a TOML config into tmp_path, runs the real ``Service`` in a thread and drops
files into the inbox; results are read from the emulator's admin API and the journal.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import CorpusFile, wait_for
from tests.daemon_helpers import Site, running_service


@pytest.fixture
def site(tmp_path: Path, emulator: EmbeddedEmulator) -> Site:
    return Site(tmp_path, emulator)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stored(site: Site) -> dict[str, list[dict[str, object]]]:
    """Stored files by content hash."""
    out: dict[str, list[dict[str, object]]] = {}
    for f in site.files():
        out.setdefault(str(f["sha256"]), []).append(f)
    return out


def archived(folder: Path, notes: bool = False) -> list[Path]:
    """Files in the archive (without the ``.duplicate.json`` notes unless ``notes``)."""
    found = (p for p in (folder / ".archive").rglob("*") if p.is_file())
    return sorted(p for p in found if notes or not p.name.endswith(".duplicate.json"))


def test_dropped_files_are_uploaded_byte_identical_and_archived(
    site: Site, corpus_by_name: dict[str, CorpusFile]
) -> None:
    case_id = site.case("SR00042")
    inbox = site.inbox()
    config = site.write_config()
    names = ["filetype-fixture.pdf", "filetype-fixture.docx", "wavefile-16bit-8kHz-stereo.wav"]
    with running_service(config):
        for name in names:
            shutil.copyfile(corpus_by_name[name].path, inbox / f"SR00042_{name}")
        wait_for(lambda: len(archived(inbox)) == 3, timeout=20, what="three archived files")
    by_hash = stored(site)
    for name in names:
        c = corpus_by_name[name]
        assert len(by_hash[c.sha256]) == 1, name
        record = by_hash[c.sha256][0]
        assert record["parent_id"] == case_id
        assert record["entity"] == "CaseFile"
        assert record["name"] == f"SR00042_{name}"
    assert not [p for p in inbox.iterdir() if p.is_file()]
    assert site.state_count("done") == 3


def test_content_wins_in_the_record_name(site: Site, corpus_by_name: dict[str, CorpusFile]) -> None:
    site.case("SR1")
    inbox = site.inbox()
    config = site.write_config()
    with running_service(config):
        shutil.copyfile(corpus_by_name["filetype-fixture.pdf"].path, inbox / "SR1_scan")
        shutil.copyfile(corpus_by_name["filetype-fixture.xlsx"].path, inbox / "SR1_report.xls")
        wait_for(lambda: len(site.files()) == 2, timeout=20, what="two uploads")
        wait_for(lambda: len(archived(inbox)) == 2, timeout=10, what="archived")
    names = sorted(str(f["name"]) for f in site.files())
    assert names == ["SR1_report.xlsx", "SR1_scan.pdf"]
    # the local files keep their names
    assert sorted(p.name for p in archived(inbox)) == ["SR1_report.xls", "SR1_scan"]


def test_a_file_written_slowly_is_uploaded_once_complete(
    site: Site, corpus: list[CorpusFile]
) -> None:
    site.case("SR2")
    inbox = site.inbox(settle="0.8s", watch="poll", poll_interval="0.1s")
    config = site.write_config()
    source = next(c for c in corpus if c.name == "filetype-fixture.pdf").path.read_bytes()
    target = inbox / "SR2_slow.pdf"
    with running_service(config):
        with target.open("wb") as fh:  # one open file, written in pieces with pauses
            for start in range(0, len(source), len(source) // 6 + 1):
                fh.write(source[start : start + len(source) // 6 + 1])
                fh.flush()
                time.sleep(0.3)  # the writer's pace, not synchronisation
        wait_for(lambda: len(archived(inbox)) == 1, timeout=20, what="the slow file archived")
    files = site.files()
    assert len(files) == 1
    assert files[0]["sha256"] == hashlib.sha256(source).hexdigest()


def test_a_file_renamed_into_the_inbox_is_taken(site: Site, corpus: list[CorpusFile]) -> None:
    site.case("SR3")
    inbox = site.inbox(settle="30s")  # only the rename can make it complete this soon
    config = site.write_config()
    outside = site.root / "outside"
    outside.mkdir()
    pdf = next(c for c in corpus if c.name == "filetype-fixture.pdf")
    with running_service(config):
        shutil.copyfile(pdf.path, outside / "SR3_moved.pdf")
        (inbox / "SR3_partial.pdf.part").write_bytes(pdf.path.read_bytes())
        (outside / "SR3_moved.pdf").rename(inbox / "SR3_moved.pdf")
        (inbox / "SR3_partial.pdf.part").rename(inbox / "SR3_partial.pdf")
        wait_for(lambda: len(archived(inbox)) == 2, timeout=15, what="both renamed files")
    # the same content to the same parent: uploaded once, the second archived as a duplicate
    assert len(site.files()) == 1
    assert site.state_count("duplicate") == 1
    notes = [p for p in archived(inbox, notes=True) if p.name.endswith(".duplicate.json")]
    assert len(notes) == 1


def test_files_present_at_start_are_picked_up(site: Site, corpus: list[CorpusFile]) -> None:
    site.case("SR4")
    inbox = site.inbox()
    (inbox / "sub").mkdir()
    shutil.copyfile(corpus[0].path if corpus[0].size else corpus[1].path, inbox / "SR4_a.bin")
    pdf = next(c for c in corpus if c.name == "filetype-fixture.pdf")
    shutil.copyfile(pdf.path, inbox / "sub" / "SR4 b.pdf")
    config = site.write_config()
    with running_service(config):
        wait_for(lambda: site.state_count("done") == 1, timeout=20, what="one upload")
        wait_for(lambda: site.state_count("failed") == 1, timeout=10, what="one no_match")
    failed = site.root / "cases" / ".failed" / "sub"
    assert (failed / "SR4 b.pdf").exists()
    note = json.loads((failed / "SR4 b.pdf.error.json").read_text())
    assert note["reason"] == "no_match"
    assert note["attempts"] == 0


def test_unmatched_file_waits_and_is_uploaded_when_the_parent_appears(
    site: Site, corpus: list[CorpusFile]
) -> None:
    inbox = site.inbox(unmatched_retry={"every": "0.3s", "for": "1h"})
    config = site.write_config()
    pdf = next(c for c in corpus if c.name == "filetype-fixture.pdf")
    with running_service(config):
        shutil.copyfile(pdf.path, inbox / "SR77_late.pdf")
        unmatched = inbox / ".unmatched" / "SR77_late.pdf"
        wait_for(unmatched.exists, timeout=15, what="the file in .unmatched")
        assert site.state_count("unmatched") == 1
        case_id = site.case("SR77")
        wait_for(lambda: len(archived(inbox)) == 1, timeout=15, what="archived after the parent")
    files = site.files()
    assert [f["parent_id"] for f in files] == [case_id]
    assert not unmatched.exists()


def test_unmatched_file_fails_when_its_time_is_up(site: Site, corpus: list[CorpusFile]) -> None:
    inbox = site.inbox(unmatched_retry={"every": "0.2s", "for": "0.6s"})
    config = site.write_config()
    pdf = next(c for c in corpus if c.name == "filetype-fixture.pdf")
    with running_service(config):
        shutil.copyfile(pdf.path, inbox / "SR78_never.pdf")
        note = inbox / ".failed" / "SR78_never.pdf.error.json"
        wait_for(note.exists, timeout=15, what="the error note")
    doc = json.loads(note.read_text())
    assert doc["reason"] == "parent_not_found"
    assert doc["attempts"] >= 2
    assert site.files() == []


def test_two_candidates_fail_the_file_with_both_listed(
    site: Site, corpus: list[CorpusFile]
) -> None:
    a, b = site.case("SR5"), site.case("SR5")
    inbox = site.inbox()
    config = site.write_config()
    pdf = next(c for c in corpus if c.name == "filetype-fixture.pdf")
    with running_service(config):
        shutil.copyfile(pdf.path, inbox / "SR5_x.pdf")
        note = inbox / ".failed" / "SR5_x.pdf.error.json"
        wait_for(note.exists, timeout=15, what="the error note")
    doc = json.loads(note.read_text())
    assert doc["reason"] == "parent_ambiguous"
    assert sorted(doc["details"]["candidates"]) == sorted([a, b])


@pytest.mark.parametrize(
    ("after", "check"),
    [
        ("delete", lambda inbox: not any(inbox.rglob("*.pdf"))),
        ("keep", lambda inbox: (inbox / "SR6_k.pdf").exists()),
    ],
)
def test_after_delete_and_keep(
    site: Site, corpus: list[CorpusFile], after: str, check: Callable[[Path], bool]
) -> None:
    site.case("SR6")
    inbox = site.inbox(after=after)
    site.daemon["rescan_every"] = "0.3s"  # a rescan must not upload a kept file again
    config = site.write_config()
    pdf = next(c for c in corpus if c.name == "filetype-fixture.pdf")
    with running_service(config) as service:
        shutil.copyfile(pdf.path, inbox / "SR6_k.pdf")
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="done")
        assert service.watcher is not None and service.engine is not None
        engine = service.engine
        for _ in range(3):  # rescans, the same code the periodic rescan runs
            found = service.watcher.rescan()
            assert found == (1 if after == "keep" else 0)  # the kept file is seen again
            # idle: every event noted, settled files leased, their jobs finished
            wait_for(engine.is_idle, timeout=10, what="the rescan handled")
        assert site.state_count("done") == 1
        assert sum(sum(c.values()) for c in site.counts().values()) == 1  # no second row
    assert check(inbox)
    assert len(site.files()) == 1


def test_a_file_changed_during_its_upload_is_uploaded_again_onto_the_same_record(
    site: Site, corpus_by_name: dict[str, CorpusFile]
) -> None:
    site.case("SR8")
    site.concurrency = 1
    inbox = site.inbox(settle="0.5s")
    config = site.write_config()
    first = corpus_by_name["filetype-fixture.pdf"].path.read_bytes()
    target = inbox / "SR8_growing.pdf"
    site.faults("latency=500ms")  # a slow upload, so the write lands during it
    with running_service(config) as service:
        target.write_bytes(first)
        wait_for(lambda: site.state_count("uploading") == 1, timeout=15, what="uploading")
        assert service.journal is not None
        (row,) = [r for r in service.journal.in_flight()]
        record_id = row.record_id
        with target.open("ab") as fh:
            fh.write(b"\n% appended while the upload ran\n")
        final = target.read_bytes()
        site.faults(None)
        wait_for(lambda: len(archived(inbox)) == 1, timeout=20, what="archived once settled")
    (record,) = site.files()
    assert record["id"] == record_id
    assert record["sha256"] == hashlib.sha256(final).hexdigest()
    assert archived(inbox)[0].read_bytes() == final


def test_a_file_changed_during_its_upload_into_a_duplicate_leaves_no_record_behind(
    site: Site, corpus_by_name: dict[str, CorpusFile]
) -> None:
    """B is rewritten during its upload with the content A already has on the same Case: B is
    a duplicate, and the record B got for its old content is deleted (one copy on the parent)."""
    site.case("SR9")
    site.concurrency = 1
    inbox = site.inbox(settle="0.5s")
    config = site.write_config()
    content_a = corpus_by_name["filetype-fixture.pdf"].path.read_bytes()
    content_b = corpus_by_name["filetype-fixture.docx"].path.read_bytes()
    with running_service(config) as service:
        (inbox / "SR9_a.pdf").write_bytes(content_a)
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="A uploaded")
        site.faults("latency=500ms")  # a slow upload, so the rewrite lands during it
        target = inbox / "SR9_b.docx"
        target.write_bytes(content_b)
        wait_for(lambda: site.state_count("uploading") == 1, timeout=15, what="B uploading")
        assert service.journal is not None
        (row,) = [r for r in service.journal.in_flight()]
        staged = inbox / ".SR9_b.tmp"  # a dotfile: never input
        staged.write_bytes(content_a)
        staged.replace(target)
        site.faults(None)
        wait_for(lambda: site.state_count("duplicate") == 1, timeout=20, what="B a duplicate")
        wait_for(lambda: len(site.files()) == 1, timeout=10, what="B's old record deleted")
    (record,) = site.files()
    assert record["sha256"] == hashlib.sha256(content_a).hexdigest()
    assert record["id"] != row.record_id


def test_a_recording_of_a_preset_inbox_goes_to_its_call(
    site: Site, corpus_by_name: dict[str, CorpusFile]
) -> None:
    rows = site.admin("POST", "/__emulator__/records/Call", {"IntegrationId": "1732790400.1234"})
    call_id = str((rows[0] if isinstance(rows, list) else rows)["Id"]).lower()
    folder = site.root / "spool"
    folder.mkdir()
    site.inboxes["spool"] = {
        "name": "spool",
        "folder": str(folder),
        "preset": "asterisk",
        "settle": "0.3s",
    }
    config = site.write_config()
    wav = corpus_by_name["wavefile-16bit-8kHz-stereo.wav"]
    with running_service(config):
        shutil.copyfile(wav.path, folder / "1732790400.1234.wav")
        wait_for(lambda: site.state_count("done") == 1, timeout=20, what="the recording")
    (record,) = site.files()
    assert (record["entity"], record["parent_id"]) == ("CallFile", call_id)
    assert record["sha256"] == wav.sha256


def test_an_asterisk_recording_starts_at_its_unique_id_not_when_it_was_found(
    site: Site, corpus_by_name: dict[str, CorpusFile]
) -> None:
    """MixMonitor writing ``${UNIQUEID}-${CALLERID(num)}``: the call started an hour before the
    daemon found the file. Its unique id says when; the daemon's own {date}/{time} of discovery
    must not. A Call from the same number at discovery time is the wrong one."""
    started = int(time.time()) - 3600
    when = dt.datetime.fromtimestamp(started, dt.UTC)

    def call_at(moment: dt.datetime) -> str:
        row = {
            "StartDate": moment.isoformat().replace("+00:00", "Z"),
            "CallerId": "+1 555 010 2030",
        }
        rows = site.admin("POST", "/__emulator__/records/Call", row)
        return str((rows[0] if isinstance(rows, list) else rows)["Id"]).lower()

    right = call_at(when)
    call_at(dt.datetime.now(dt.UTC).replace(microsecond=0))  # when the file is found
    folder = site.root / "monitor"
    folder.mkdir()
    site.inboxes["monitor"] = {
        "name": "monitor",
        "folder": str(folder),
        "pattern": r"(?:^|/)(?P<uniqueid>\d{10}\.\d+)-(?P<caller>\d+)\.(?P<ext>\w+)$",
        "settle": "0.3s",
        "match": {
            "steps": ["call_by_number"],
            "timezone": "UTC",
            "country_code": "1",
            "name": "{caller} {date} {time} {matched_by}.{ext}",
        },
    }
    config = site.write_config()
    wav = corpus_by_name["wavefile-16bit-8kHz-stereo.wav"]
    with running_service(config):
        # named .mp3 by a misconfigured PBX: the content says WAV, and so does the record Name
        shutil.copyfile(wav.path, folder / f"{started}.17-15550102030.mp3")
        wait_for(lambda: site.state_count("done") == 1, timeout=20, what="the recording")
    (record,) = site.files()
    assert (record["entity"], record["parent_id"]) == ("CallFile", right)
    assert record["name"] == f"15550102030 {when:%Y-%m-%d %H-%M-%S} call_by_number.wav"
    assert record["sha256"] == wav.sha256


def test_metrics_and_health_follow_the_uploads(
    site: Site, corpus_by_name: dict[str, CorpusFile]
) -> None:
    site.case("SR9")
    inbox = site.inbox()
    site.metrics = "127.0.0.1:0"
    config = site.write_config()
    with running_service(config) as service:
        shutil.copyfile(corpus_by_name["filetype-fixture.pdf"].path, inbox / "SR9_m.pdf")
        wait_for(lambda: len(archived(inbox)) == 1, timeout=15, what="archived")
        url = service._metrics_server.url
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:  # noqa: S310
            assert response.status == 200
    assert 'creatio_attach_files_uploaded_total{inbox="cases"} 1.0' in text
    assert "creatio_attach_creatio_reachable 1.0" in text
