"""``run --dry-run``, ``status``, ``retry``, ``submit`` and SIGHUP, as a user runs them:
subprocesses of ``python -m creatio_attach``, a real config, the emulator over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from creatio_attach.journal import Journal, State
from tests.conftest import CorpusFile, wait_for
from tests.daemon_helpers import (
    Site,
    cli_args,
    run_cli,
    running_service,
    start_daemon,
    stop_daemon,
    wait_ready,
)


@pytest.fixture
def site(tmp_path: Path, emulator: EmbeddedEmulator) -> Site:
    return Site(tmp_path, emulator)


@pytest.fixture
def pdf(corpus_by_name: dict[str, CorpusFile]) -> CorpusFile:
    return corpus_by_name["filetype-fixture.pdf"]


def test_dry_run_shows_what_would_happen_and_uploads_nothing(
    site: Site, pdf: CorpusFile, corpus_by_name: dict[str, CorpusFile]
) -> None:
    case_id = site.case("SR20")
    inbox = site.inbox()
    shutil.copyfile(pdf.path, inbox / "SR20_scan")
    shutil.copyfile(corpus_by_name["filetype-fixture.docx"].path, inbox / "SR21_letter.docx")
    shutil.copyfile(pdf.path, inbox / "unrouted.pdf")
    config = site.write_config()
    done = run_cli("run", "--config", str(config), "--dry-run")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "cases: SR20_scan" in out
    assert "application/pdf" in out
    assert "CaseFile" in out
    assert f"found {case_id}" in out
    assert "SR20_scan.pdf" in out  # the record Name the content calls for
    assert "Number = 'SR21': not found" in out
    assert "failed: no_match" in out
    as_json = run_cli("run", "--config", str(config), "--dry-run", "--json")
    plans = {p["file"]: p for p in json.loads(as_json.stdout)}
    assert plans["SR21_letter.docx"]["outcome"] == "unmatched"
    assert plans["SR20_scan"]["outcome"] == "upload"
    assert site.files() == []
    assert sorted(p.name for p in inbox.iterdir()) == [
        "SR20_scan",
        "SR21_letter.docx",
        "unrouted.pdf",
    ]
    alone = run_cli("run", "--config", str(config), "--json")  # without --dry-run: refused
    assert alone.returncode == 2
    assert "--json goes with --dry-run" in alone.stderr
    assert run_cli("status", "--config", str(config), "--last", "-1").returncode == 2


def test_status_while_running_then_retry_a_failed_file(site: Site, pdf: CorpusFile) -> None:
    site.case("SR22")
    inbox = site.inbox(unmatched_retry={"every": "0.2s", "for": "0.3s"})
    config = site.write_config()
    with running_service(config):
        shutil.copyfile(pdf.path, inbox / "SR22_ok.pdf")
        (inbox / "SR23_later.pdf").write_bytes(pdf.path.read_bytes() + b"\n% other\n")
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="one done")
        wait_for(lambda: site.state_count("failed") == 1, timeout=15, what="one failed")
        status = run_cli("status", "--config", str(config), "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["counts"]["cases"] == {"done": 1, "failed": 1}
        (failure,) = doc["failures"]
        assert failure["file"] == "SR23_later.pdf"
        assert failure["reason"] == "parent_not_found"
        assert doc["recent"][0]["file"] == "SR22_ok.pdf"
        text = run_cli("status", "--config", str(config)).stdout
        assert "SR23_later.pdf: parent_not_found" in text
        assert "SR22_ok.pdf -> CaseFile" in text

        failed_copy = inbox / ".failed" / "SR23_later.pdf"
        assert failed_copy.exists()
        site.case("SR23")
        retry = run_cli("retry", "--config", str(config), str(failed_copy))
        assert retry.returncode == 0, retry.stderr
        assert "requeued cases: SR23_later.pdf" in retry.stdout
        wait_for(lambda: site.state_count("done") == 2, timeout=15, what="the retried file")
    assert not failed_copy.exists()
    assert not (inbox / ".failed" / "SR23_later.pdf.error.json").exists()
    assert len(site.files()) == 2
    unknown = run_cli("retry", "--config", str(config), "no-such.pdf")
    assert unknown.returncode == 1
    assert "no failed or unmatched file no-such.pdf" in unknown.stderr


def test_status_before_the_daemon_ever_ran_says_nothing_is_recorded(site: Site) -> None:
    site.inbox()
    site.inbox("contracts")
    config = site.write_config()
    text = run_cli("status", "--config", str(config))
    assert text.returncode == 0, text.stderr
    assert "nothing has been recorded yet" in text.stdout
    assert "cases: no files yet" in text.stdout and "contracts: no files yet" in text.stdout
    as_json = run_cli("status", "--json", "--config", str(config))
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert doc["journal"] is None
    assert doc["counts"] == {"cases": {}, "contracts": {}}
    assert doc["recent"] == doc["failures"] == doc["waiting"] == []
    assert not site.state.exists() or not any(site.state.iterdir())  # status created nothing


def test_retry_all_failed_while_the_daemon_is_stopped(site: Site, pdf: CorpusFile) -> None:
    inbox = site.inbox(pattern=r"^(?P<number>SR\d+)_")
    config = site.write_config()
    with running_service(config):
        (inbox / "SR30 a.pdf").write_bytes(pdf.path.read_bytes())
        (inbox / "SR30 b.pdf").write_bytes(pdf.path.read_bytes() + b"\n% b\n")
        wait_for(lambda: site.state_count("failed") == 2, timeout=15, what="two no_match")
    site.case("SR30")
    site.inboxes["cases"]["pattern"] = r"^(?P<number>SR\d+)[ _]"  # the fix
    config = site.write_config()
    retry = run_cli("retry", "--config", str(config), "--all-failed")
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout.count("requeued") == 2
    assert site.state_count("ready") == 2
    with running_service(config):
        wait_for(lambda: site.state_count("done") == 2, timeout=15, what="both uploaded")
    assert sorted(str(f["name"]) for f in site.files()) == ["SR30 a.pdf", "SR30 b.pdf"]


def test_submit_marks_a_file_complete_at_once_with_its_metadata(
    site: Site, pdf: CorpusFile
) -> None:
    site.case("SR40")
    # polling sees no close-after-write: only the submit can complete it during this test
    inbox = site.inbox(settle="1h", watch="poll", poll_interval="0.1s")
    config = site.write_config()
    with running_service(config):
        target = inbox / "SR40_call.pdf"
        shutil.copyfile(pdf.path, target)
        done = run_cli(
            "submit",
            "--config",
            str(config),
            str(target),
            "--set",
            "uniqueid=1732790400.1234",
            "--set",
            "caller=$(reboot) `id`",
        )
        assert done.returncode == 0, done.stderr
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="the submitted file")
    with Journal.open_readonly(site.state) as journal:
        (row,) = journal.by_state(State.DONE)
    assert row.metadata == {"uniqueid": "1732790400.1234", "caller": "$(reboot) `id`"}
    bad = run_cli("submit", "--config", str(config), str(target), "--set", "novalue")
    assert bad.returncode == 2
    assert "expected key=value" in bad.stderr


def test_submit_refuses_at_once_what_the_daemon_would_never_take(
    site: Site, pdf: CorpusFile
) -> None:
    """A hook must hear a refusal (exit 1), not "submitted" followed by a warning in the
    daemon's log: a file outside every inbox, a missing file, a symlink, a folder."""
    inbox = site.inbox()
    site.inbox("other", pattern=r"^(?P<number>SR\d+)-")
    config = site.write_config()
    outside = site.root / "password"
    outside.write_text("secret")
    (inbox / "SR41_link.pdf").symlink_to(outside)
    (inbox / "SR41 folder").mkdir()
    shutil.copyfile(pdf.path, inbox / "SR41_real.pdf")
    cases = [
        (outside, [], "not in any inbox"),
        (inbox / "SR41_missing.pdf", [], "cannot submit: No such file or directory"),
        (inbox / "SR41_link.pdf", [], "not a regular file"),
        (inbox / "SR41 folder", [], "not a regular file"),
        (inbox / "SR41_real.pdf", ["--inbox", "other"], "not in inbox 'other'"),
        (inbox / ".archive" / "x.pdf", [], "not in any inbox"),
    ]
    for path, extra, said in cases:
        done = run_cli("submit", "--config", str(config), str(path), *extra)
        assert done.returncode == 1, (path, done.stdout, done.stderr)
        assert said in done.stderr, (path, done.stderr)
        assert "submitted" not in done.stdout
    ok = run_cli("submit", "--config", str(config), str(inbox / "SR41_real.pdf"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"submitted {inbox / 'SR41_real.pdf'} (#1)")


def test_sighup_reloads_the_config_without_dropping_work(site: Site, pdf: CorpusFile) -> None:
    site.case("SR50")
    first = site.inbox()
    config = site.write_config()
    log = site.root / "daemon.log"
    proc = start_daemon(config, log)
    try:
        wait_ready(proc, log)
        site.faults("latency=300ms")
        shutil.copyfile(pdf.path, first / "SR50_before.pdf")
        wait_for(lambda: site.state_count("uploading") == 1, timeout=15, what="in flight")
        second = site.inbox("more", pattern=r"^(?P<number>SR\d+)-")
        site.write_config()
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: b"daemon.reloaded" in log.read_bytes(), timeout=15, what="reloaded")
        site.faults(None)
        (second / "SR50-after.pdf").write_bytes(pdf.path.read_bytes() + b"\n% after\n")
        wait_for(lambda: site.state_count("done") == 2, timeout=20, what="both done")
        assert stop_daemon(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sorted(str(f["name"]) for f in site.files()) == ["SR50-after.pdf", "SR50_before.pdf"]


def test_a_bad_config_exits_78_with_every_problem(site: Site) -> None:
    site.inbox(after="shred", settle="soon")
    config = site.write_config()
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 78
    assert "after" in done.stderr
    assert "settle" in done.stderr


def test_submit_for_an_unmatched_file_merges_its_metadata_and_tries_again(
    site: Site, pdf: CorpusFile
) -> None:
    inbox = site.inbox(unmatched_retry={"every": "1h", "for": "24h"})
    config = site.write_config()
    with running_service(config):
        original = inbox / "SR60_call.pdf"
        shutil.copyfile(pdf.path, original)
        wait_for(lambda: site.state_count("unmatched") == 1, timeout=15, what="unmatched")
        site.case("SR60")
        done = run_cli("submit", "--config", str(config), str(original), "--set", "agent=42")
        assert done.returncode == 0, done.stderr
        # tried again at once (its next scheduled try is an hour away)
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="uploaded")
    with Journal.open_readonly(site.state) as journal:
        (row,) = journal.by_state(State.DONE)
        assert journal.pending_submissions() == []
    assert row.metadata == {"agent": "42"}


def _without_password(*args: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a PBX hook or a shell beside the systemd service runs it: no password in the
    environment, no systemd credential."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CREATIO_ATTACH_")
        and k not in {"CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC"}
    }
    return subprocess.run(
        cli_args(*args), capture_output=True, text=True, timeout=30, env=env, check=False
    )


def test_status_retry_and_submit_need_no_password_but_run_does(site: Site, pdf: CorpusFile) -> None:
    site.case("SR70")
    # nothing settles during the test: only the submits complete the files
    inbox = site.inbox(settle="1h", watch="poll", poll_interval="0.1s")
    config = site.write_config()
    text = config.read_text(encoding="utf-8")
    assert 'password = "Supervisor"\n' in text
    no_file = site.root / "no-file.toml"  # the password file is the service's credential only
    no_file.write_text(
        text.replace('password = "Supervisor"', 'password_file = "/nonexistent/password"'),
        encoding="utf-8",
    )
    none = site.root / "none.toml"
    none.write_text(text.replace('password = "Supervisor"\n', ""), encoding="utf-8")
    shutil.copyfile(pdf.path, inbox / "SR70_call.pdf")
    (inbox / "unrouted.pdf").write_bytes(pdf.path.read_bytes() + b"\n% unrouted\n")

    # the daemon is stopped: submit writes to the journal (creating it)
    for name in ("SR70_call.pdf", "unrouted.pdf"):
        done = _without_password(
            "submit", "--config", str(no_file), str(inbox / name), "--set", "agent=7"
        )
        assert done.returncode == 0, done.stderr
        assert f"submitted {inbox / name}" in done.stdout
    with running_service(config):
        wait_for(lambda: site.state_count("done") == 1, timeout=15, what="the submitted file")
        wait_for(lambda: site.state_count("failed") == 1, timeout=15, what="the unrouted one")
    assert [str(f["name"]) for f in site.files()] == ["SR70_call.pdf"]

    for cfg in (no_file, none):
        status = _without_password("status", "--config", str(cfg), "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["counts"]["cases"] == {"done": 1, "failed": 1}
        (failure,) = doc["failures"]
        assert (failure["file"], failure["reason"]) == ("unrouted.pdf", "no_match")

    retry = _without_password("retry", "--config", str(none), "--all-failed")
    assert retry.returncode == 0, retry.stderr
    assert "requeued cases: unrouted.pdf" in retry.stdout
    assert site.state_count("ready") == 1

    missing_file = _without_password("run", "--config", str(no_file))
    assert missing_file.returncode == 78
    assert (
        "creatio.password_file: cannot read /nonexistent/password: No such file or directory"
        in missing_file.stderr
    )
    no_password = _without_password("run", "--config", str(none))
    assert no_password.returncode == 78
    assert 'creatio.password: required for auth = "forms"' in no_password.stderr
    assert site.state_count("ready") == 1  # neither run started
