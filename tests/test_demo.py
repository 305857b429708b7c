"""``creatio-attach demo``, run for real as a subprocess: the emulator, the daemon, the files.

The demo checks itself (downloads each file back and compares SHA-256); these tests check
that it says so truthfully: every packaged sample file is listed with the SHA-256 of the
packaged bytes, a record Id and the record it must land on; ``--keep-running`` serves the web
page, takes a file a person drops, and stops cleanly on Ctrl-C; a failure is one clear line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from creatio_attach.config import load_config
from creatio_attach.creatio import CreatioClient, Target
from creatio_attach.demo_report import Landing, check_landings
from creatio_attach.demo_setup import seed
from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.emulator.schemas import build_schemas
from creatio_attach.emulator.store import Store
from tests.conftest import FIXTURES, CorpusFile, wait_for

REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "daemon" / "creatio_attach" / "demo_data"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: demo file -> (file object, parent shown in the table)
EXPECTED = {
    "SR00001_contract.docx": ("CaseFile", "Case SR00001"),
    "SR00001_invoice.pdf": ("CaseFile", "Case SR00001"),
    "SR00002 scan": ("CaseFile", "Case SR00002"),
    "SR00002-budget.xls": ("CaseFile", "Case SR00002"),
    "SR00003_damage.jpg": ("CaseFile", "Case SR00003"),
    "R-1001_floorplan.png": ("UsrRealtyFile", "UsrRealty R-1001"),
    "R-1002_facade.tiff": ("UsrRealtyFile", "UsrRealty R-1002"),
    "in-200-15550102030-20261120-091500-1795166100.17.wav": ("CallFile", "Call (call_by_id)"),
    "out-15550104040-201-20261120-093000-1795167000.23.mp3": (
        "CallFile",
        "Call (call_by_number)",
    ),
    "in-202-5550103030-20261120-101000-1795169400.31.wav": ("ContactFile", "Contact Ben Carter"),
}


#: the column that names a parent in the table
PARENT_KEYS = {"Case": "Number", "UsrRealty": "Name", "Contact": "Name"}


def demo_args(*args: str) -> list[str]:
    """``python -m creatio_attach demo``; the command itself while ``cli`` does not list it."""
    from creatio_attach.cli import main

    if "demo" in main.commands:
        return [sys.executable, "-m", "creatio_attach", "demo", *args]
    code = "from creatio_attach.demo import demo_command; demo_command()"
    return [sys.executable, "-c", code, *args]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sample_files() -> list[Path]:
    return sorted(p for p in DEMO_DATA.iterdir() if p.name != "NOTICE.md")


def json_line(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert len(lines) == 1, text
    doc: dict[str, Any] = json.loads(lines[0])
    return doc


def test_every_sample_file_is_a_corpus_file_named_in_the_notice(
    corpus: list[CorpusFile],
) -> None:
    by_sha = {c.sha256: c for c in corpus}
    notice = (DEMO_DATA / "NOTICE.md").read_text(encoding="utf-8")
    with (FIXTURES / "manifest.csv").open(newline="", encoding="utf-8") as f:
        manifest = {r["name"]: r for r in csv.DictReader(f)}
    assert sorted(p.name for p in sample_files()) == sorted(EXPECTED)
    for path in sample_files():
        source = by_sha.get(sha256(path))
        assert source is not None, f"{path.name} is not a byte-for-byte corpus file"
        row = manifest[source.name]
        line = next((x for x in notice.splitlines() if f"`{path.name}`" in x), None)
        assert line is not None, f"NOTICE.md does not name {path.name}"
        for value in (source.name, row["source_repo"], row["source_path"], row["license"]):
            assert value in line, f"NOTICE.md line of {path.name} lacks {value!r}"


def test_demo_uploads_every_sample_file_and_gets_the_same_bytes_back(tmp_path: Path) -> None:
    work = tmp_path / "work"
    done = subprocess.run(
        demo_args("--json", "--runtime", "netframework", "--workdir", str(work)),
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json_line(done.stdout)
    assert doc["ok"] is True and doc["runtime"] == "netframework"
    by_sample = {f["source"]: f for f in doc["files"]}
    assert len(by_sample) == len(doc["files"]), "a sample file is listed twice"
    assert sorted(by_sample) == sorted(p.name for p in sample_files())
    for name, f in by_sample.items():
        want = sha256(DEMO_DATA / name)
        assert f["sha256"] == want and f["downloaded_sha256"] == want, name
        assert GUID.match(f["record_id"]), f
        assert GUID.match(f["parent_id"]), f
        assert (f["object"], f["parent"]) == EXPECTED[name], name
        assert f["bytes"] == (DEMO_DATA / name).stat().st_size
    # what the emulator really holds (its data outlives the demo in --workdir), read
    # independently of what the demo reports
    store = Store(work / "emulator", build_schemas(["UsrRealty"]))
    try:
        held = {f["id"]: f for f in store.files_summary()}
        for name, f in by_sample.items():
            record = held[f["record_id"]]
            assert record["sha256"] == sha256(DEMO_DATA / name), name
            assert (record["entity"], record["parent_id"]) == (f["object"], f["parent_id"])
            parent = store.get(record["parent_schema"], record["parent_id"])
            assert parent is not None, name
            key = PARENT_KEYS.get(record["parent_schema"])
            if key:
                assert f["parent"].endswith(str(parent[key])), (name, parent)
        assert len(held) == len(by_sample)
    finally:
        store.close()
    # the content decides the record's Name; the extension-less scan becomes a .docx
    assert by_sample["SR00002 scan"]["name"] == "SR00002 scan.docx"
    assert by_sample["SR00002-budget.xls"]["name"] == "SR00002-budget.xlsx"
    assert by_sample["R-1002_facade.tiff"]["type"] == "image/png"
    # the password reaches the daemon through the environment, never the file
    config = (work / "config.toml").read_text(encoding="utf-8")
    assert not re.search(r"(?m)^\s*password\s*=", config)
    assert "[inbox.match]" in config and 'preset = "freepbx"' in config
    # the files were archived by the daemon, none failed
    inbox = Path(doc["inboxes"]["case-documents"])
    assert not (inbox / ".failed").exists()
    assert len(list((inbox / ".archive").rglob("*.*"))) >= 4


def test_demo_fails_with_one_clear_line_when_files_do_not_arrive_in_time(
    tmp_path: Path,
) -> None:
    work = tmp_path / "work"
    done = subprocess.run(
        demo_args("--timeout", "0", "--workdir", str(work)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "creatio-attach demo: FAILED: not uploaded within 0 s:" in done.stderr
    assert f"daemon log: {work / 'daemon.log'}" in done.stderr
    assert (work / "daemon.log").is_file()
    # the kept folder is not reused: an earlier run's records would make the next one lie
    again = subprocess.run(
        demo_args("--workdir", str(work)), capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 2 and "is not empty" in again.stderr, again.stderr


class Lines:
    """The lines a subprocess writes to stdout, collected by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str) -> str | None:
        return next((x for x in list(self.lines) if re.search(pattern, x)), None)


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
        return response.status, response.read().decode("utf-8", errors="replace")


def test_keep_running_serves_the_page_takes_a_dropped_file_and_stops_on_ctrl_c(
    tmp_path: Path, corpus_by_name: dict[str, CorpusFile]
) -> None:
    proc = subprocess.Popen(
        demo_args("--keep-running", "--json", "--workdir", str(tmp_path / "work")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = Lines(proc)
        first = wait_for(lambda: out.find(r"^\{"), timeout=120, what="the demo's JSON line")
        doc = json.loads(first)
        wait_for(lambda: out.find("press Ctrl-C"), timeout=10, what="the keep-running notice")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the daemon subprocess is not running"

        status, page = _get(doc["url"] + "/")
        assert status == 200 and "SR00001" in page

        source = corpus_by_name["filetype-fixture.odt"]
        dropped = Path(doc["inboxes"]["case-documents"]) / "SR00003 notes.odt"
        shutil.copyfile(source.path, dropped)
        line = wait_for(
            lambda: out.find(r"^arrived: case-documents/SR00003 notes\.odt -> CaseFile "),
            timeout=30,
            what="the dropped file to arrive",
        )
        record_id = line.split(" -> CaseFile ")[1].split()[0]
        files = json.loads(_get(doc["url"] + "/__emulator__/files")[1])
        stored = next(f for f in files if f["id"] == record_id)
        assert stored["sha256"] == source.sha256 and stored["size"] == source.size

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # both are down: the emulator's port is closed and the daemon has exited
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    try:
        _get(doc["url"] + "/__emulator__/health")
    except (urllib.error.URLError, ConnectionError):
        pass
    else:
        raise AssertionError("the emulator still answers after Ctrl-C")


def test_the_demo_check_catches_a_wrong_parent_other_bytes_and_a_missing_record(
    tmp_path: Path,
    emulator_factory: Callable[..., EmbeddedEmulator],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    emulator = emulator_factory(custom_schemas=("UsrRealty",))
    ids = seed(emulator.url)
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[creatio]\nurl = "{emulator.url}"\nusername = "Supervisor"\n', encoding="utf-8"
    )
    config = load_config(config_path, env={"CREATIO_ATTACH_PASSWORD": "Supervisor"})
    pdf = corpus_by_name["filetype-fixture.pdf"]
    case1, case2 = ids[("Case", "SR00001")], ids[("Case", "SR00002")]
    with CreatioClient(config.creatio) as client:
        client.login()
        uploaded = client.upload(pdf.path, Target.for_file_object("CaseFile", case1))
    record = uploaded.record_id

    def landing(label: str, parent: str, digest: str, record_id: str = record) -> Landing:
        return Landing(label, record_id, "CaseFile", "Case", parent, digest)

    missing = "6f1d3c52-0000-4000-8000-000000000001"
    downloaded, problems = check_landings(
        [
            landing("right", case1, pdf.sha256),
            landing("wrong-parent", case2, pdf.sha256),
            landing("other-bytes", case1, "0" * 64),
            landing("missing", case1, pdf.sha256, missing),
        ],
        emulator.url,
        config,
        tmp_path / "downloads",
    )
    assert downloaded == {record: pdf.sha256}
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"wrong-parent: landed on CaseFile of Case {case1}")
    assert problems[0].endswith(f"expected CaseFile of Case {case2}")
    assert problems[1].startswith("other-bytes: downloaded SHA-256 ")
    assert problems[2] == f"missing: record {missing} is not in Creatio"
