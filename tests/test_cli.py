"""The one-shot commands as a user runs them: the real `creatio-attach` against the emulator.

Each test starts the embedded emulator (real HTTP on 127.0.0.1), writes a real config file and
runs the installed console script as a subprocess; results are checked through the emulator's
admin API and against the real-file corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from tests.conftest import CorpusFile

PASSWORD = "Pa55-not-for-logs"  # the emulator user's password; must never be printed
ENTRY = shutil.which("creatio-attach", path=str(Path(sys.executable).parent))
COMMANDS = ("upload", "list", "download", "check")


@dataclass
class Cli:
    """Runs the console script with a config that points at one emulator."""

    url: str
    config: Path
    cwd: Path
    env: dict[str, str]

    def __call__(self, *args: str, extra_env: dict[str, str] | None = None) -> Any:
        assert ENTRY, "creatio-attach is not installed next to this Python"
        return subprocess.run(
            [ENTRY, *args],
            capture_output=True,
            text=True,
            cwd=self.cwd,
            env={**self.env, **(extra_env or {})},
            timeout=120,
        )

    def seed(self, entity: str, **row: Any) -> str:
        answer = requests.post(f"{self.url}/__emulator__/records/{entity}", json=row, timeout=10)
        answer.raise_for_status()
        return str(answer.json()["Id"])

    def files(self) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/__emulator__/files", timeout=10)
        answer.raise_for_status()
        rows: list[dict[str, Any]] = answer.json()
        return rows


def clean_env() -> dict[str, str]:
    drop = ("CREATIO_ATTACH", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def write_config(folder: Path, url: str, password: str = PASSWORD) -> Path:
    secret = folder / "password"
    secret.write_text(password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    config = folder / "config.toml"
    config.write_text(
        f'[creatio]\nurl = "{url}"\nusername = "Supervisor"\npassword_file = "password"\n'
        'chunk_threshold = "1MiB"\nchunk_size = "256KiB"\n',
        encoding="utf-8",
    )
    config.chmod(0o600)
    return config


@pytest.fixture
def cli(emulator_factory: Callable[..., Any], tmp_path: Path) -> Cli:
    emu = emulator_factory(users={"Supervisor": PASSWORD}, custom_schemas=("UsrRealty",))
    conf_dir = tmp_path / "etc"
    conf_dir.mkdir()
    config = write_config(conf_dir, emu.url)
    work = tmp_path / "work"
    work.mkdir()
    return Cli(emu.url, config, work, {**clean_env(), "CREATIO_ATTACH_CONFIG": str(config)})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def no_leak(done: Any) -> None:
    text = done.stdout + done.stderr
    assert PASSWORD not in text
    assert "Traceback" not in text


# --- upload -----------------------------------------------------------------------------------


def test_upload_prints_one_line_per_file_and_the_bytes_arrive_intact(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    case_id = cli.seed("Case", Number="SR00000001", Subject="scanner")
    docx = corpus_by_name["filetype-fixture.docx"]
    pdf = corpus_by_name["filetype-fixture.pdf"]
    done = cli(
        "upload", str(docx.path), str(pdf.path), "--entity", "CaseFile", "--parent-id", case_id
    )
    assert done.returncode == 0, done.stderr
    no_leak(done)
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    stored = {f["id"]: f for f in cli.files()}
    for line, item in zip(lines, (docx, pdf), strict=True):
        assert line.startswith(f"{item.path}  ->  CaseFile ")
        assert line.endswith(f"  {item.size} bytes")
        record_id = line.split()[3]
        assert stored[record_id]["sha256"] == item.sha256
        assert stored[record_id]["parent_id"] == case_id
        assert stored[record_id]["name"] == item.name


def test_upload_json_has_exactly_the_documented_keys(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    case_id = cli.seed("Case", Number="SR00001234", Subject="json")
    xlsx = corpus_by_name["filetype-fixture.xlsx"]
    done = cli(
        "upload",
        str(xlsx.path),
        "--entity",
        "CaseFile",
        "--parent",
        "Case:Number=SR00001234",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar, no log line when stderr is not a terminal
    (row,) = json.loads(done.stdout)
    assert set(row) == {
        "file",
        "entity",
        "record_id",
        "parent_schema",
        "parent_id",
        "bytes",
        "mime",
        "sha256",
    }
    assert row["file"] == str(xlsx.path)
    assert (row["entity"], row["parent_schema"], row["parent_id"]) == ("CaseFile", "Case", case_id)
    assert (row["bytes"], row["sha256"], row["mime"]) == (
        xlsx.size,
        xlsx.sha256,
        xlsx.expected_mime,
    )
    (stored,) = cli.files()
    assert stored["id"] == row["record_id"] and stored["sha256"] == xlsx.sha256


def test_parent_spec_is_split_at_the_first_colon_and_the_first_equals(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    cli.seed("Case", Number="SR1", Subject="x")
    wanted = cli.seed("Case", Number="SR2", Subject="a=b: it's 100% #1")
    png = corpus_by_name["filetype-fixture.png"]
    done = cli(
        "upload",
        str(png.path),
        "--entity",
        "CaseFile",
        "--parent",
        "Case:Subject=a=b: it's 100% #1",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["parent_id"] == wanted


def test_audio_goes_into_sysfile_of_a_custom_section_record(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    realty = cli.seed("UsrRealty", Name="Flat 12, Main St")
    mp3 = corpus_by_name["filetype-fixture.mp3"]
    done = cli(
        "upload",
        str(mp3.path),
        "--entity",
        "SysFile",
        "--parent",
        f"UsrRealty:Id={realty.upper()}",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert (row["entity"], row["parent_schema"], row["parent_id"]) == (
        "SysFile",
        "UsrRealty",
        realty,
    )
    assert row["mime"] == "audio/mpeg"
    (stored,) = cli.files()
    assert (stored["entity"], stored["parent_schema"], stored["parent_id"]) == (
        "SysFile",
        "UsrRealty",
        realty,
    )
    assert stored["sha256"] == mp3.sha256


def test_a_large_file_goes_up_in_chunks_with_a_progress_bar_on_a_terminal(
    cli: Cli, tmp_path: Path
) -> None:
    # above the config's 1 MiB chunk threshold: the FileApiService path, 256 KiB at a time
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    case_id = cli.seed("Case", Number="SR9", Subject="big")
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [
                str(ENTRY),
                "upload",
                str(big),
                "--entity",
                "CaseFile",
                "--parent-id",
                case_id,
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=terminal,
            cwd=cli.cwd,
            env={**cli.env, "COLUMNS": "100"},
            text=True,
        )
        os.close(terminal)
        shown = bytearray()
        while True:  # drain the terminal until the command closes it
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            shown += chunk
        out, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
    assert process.returncode == 0, shown.decode(errors="replace")
    assert json.loads(out)[0]["bytes"] == big.stat().st_size  # stdout stays clean JSON
    text = shown.decode("utf-8", errors="replace")
    assert "big.bin" in text and "3.0/3.0 MiB" in text  # the bar, finished
    (stored,) = cli.files()
    assert stored["sha256"] == sha256(big) and stored["size"] == big.stat().st_size


def test_a_missing_parent_is_one_line_with_a_hint(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    pdf = corpus_by_name["filetype-fixture.pdf"]
    done = cli("upload", str(pdf.path), "--entity", "CaseFile", "--parent", "Case:Number=SR404")
    assert done.returncode == 1
    no_leak(done)
    lines = done.stderr.splitlines()
    assert lines[0].startswith("creatio-attach: no Case record with Number=")
    assert lines[1].startswith("hint: ") and len(lines) == 2
    assert cli.files() == []


def test_sysfile_with_parent_id_is_refused_and_says_how(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    pdf = corpus_by_name["filetype-fixture.pdf"]
    guid = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    done = cli("upload", str(pdf.path), "--entity", "SysFile", "--parent-id", guid)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "creatio-attach: SysFile needs the parent's schema name"
    assert "--parent UsrRealty:Id=" in done.stderr


def test_upload_option_mistakes_are_usage_errors(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    pdf = str(corpus_by_name["filetype-fixture.pdf"].path)
    neither = cli("upload", pdf, "--entity", "CaseFile")
    assert neither.returncode == 2 and "exactly one of --parent-id" in neither.stderr
    bad_spec = cli("upload", pdf, "--entity", "CaseFile", "--parent", "Case=SR1")
    assert bad_spec.returncode == 2 and "SCHEMA:COLUMN=VALUE" in bad_spec.stderr
    mismatch = cli("upload", pdf, "--entity", "CaseFile", "--parent", "Contact:Name=x")
    assert mismatch.returncode == 2 and "CaseFile holds files of Case records" in mismatch.stderr
    not_guid = cli("upload", pdf, "--entity", "CaseFile", "--parent-id", "SR1")
    assert not_guid.returncode == 2 and "is not a GUID" in not_guid.stderr


def test_an_empty_file_is_refused_and_the_others_still_go(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    case_id = cli.seed("Case", Number="SR5", Subject="mixed")
    empty = corpus_by_name["empty.txt"].path
    pdf = corpus_by_name["filetype-fixture.pdf"]
    done = cli(
        "upload",
        str(empty),
        str(pdf.path),
        "--entity",
        "CaseFile",
        "--parent-id",
        case_id,
        "--json",
    )
    assert done.returncode == 1
    assert done.stderr.splitlines()[0].startswith(f"creatio-attach: {empty}: ")
    assert "empty" in done.stderr.splitlines()[0]
    (row,) = json.loads(done.stdout)
    assert row["sha256"] == pdf.sha256
    assert len(cli.files()) == 1


# --- list -------------------------------------------------------------------------------------


def _upload(cli: Cli, path: Path, *args: str) -> dict[str, Any]:
    done = cli("upload", str(path), *args, "--json")
    assert done.returncode == 0, done.stderr
    row: dict[str, Any] = json.loads(done.stdout)[0]
    return row


def test_list_shows_a_records_files_from_its_file_object_and_sysfile(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    case_id = cli.seed("Case", Number="SR7", Subject="list")
    other = cli.seed("Case", Number="SR8", Subject="other")
    pdf, wav = corpus_by_name["filetype-fixture.pdf"], corpus_by_name["filetype-fixture.wav"]
    a = _upload(cli, pdf.path, "--entity", "CaseFile", "--parent-id", case_id)
    b = _upload(cli, wav.path, "--entity", "SysFile", "--parent", f"Case:Id={case_id}")
    _upload(cli, pdf.path, "--entity", "CaseFile", "--parent-id", other)

    done = cli("list", "Case", case_id, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["id"], r["object"], r["name"], r["size"]) for r in rows] == [
        (a["record_id"], "CaseFile", pdf.name, pdf.size),
        (b["record_id"], "SysFile", wav.name, wav.size),
    ]
    assert all(set(r) == {"id", "object", "name", "size", "created_on"} for r in rows)
    assert all(r["created_on"] for r in rows)

    table = cli("list", "Case", case_id)
    assert table.returncode == 0, table.stderr
    assert f"2 attachments of Case {case_id}" in table.stdout
    for row in rows:
        line = next(x for x in table.stdout.splitlines() if row["id"] in x)
        assert row["object"] in line and row["name"] in line


def test_list_of_a_record_without_files_says_so(cli: Cli) -> None:
    case_id = cli.seed("Case", Number="SR0", Subject="none")
    done = cli("list", "Case", case_id)
    assert done.returncode == 0 and done.stdout == f"no attachments on Case {case_id}\n"
    assert json.loads(cli("list", "Case", case_id, "--json").stdout) == []


def test_verbose_logs_go_to_stderr_and_stdout_stays_json(cli: Cli) -> None:
    case_id = cli.seed("Case", Number="SR3", Subject="verbose")
    done = cli("list", "Case", case_id, "--json", "-v")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert done.stderr.strip(), "-v logs something"
    assert all(json.loads(line)["level"] for line in done.stderr.splitlines())
    no_leak(done)


# --- download ---------------------------------------------------------------------------------


def test_download_is_byte_identical_and_named_after_the_record(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    case_id = cli.seed("Case", Number="SR4", Subject="download")
    pptx = corpus_by_name["filetype-fixture.pptx"]
    row = _upload(cli, pptx.path, "--entity", "CaseFile", "--parent-id", case_id)

    done = cli("download", "CaseFile", row["record_id"])
    assert done.returncode == 0, done.stderr
    saved = cli.cwd / pptx.name
    assert sha256(saved) == pptx.sha256
    assert done.stdout == f"{saved}  {pptx.size} bytes\n"

    again = cli("download", "CaseFile", row["record_id"])
    assert again.returncode == 1 and "already exists" in again.stderr and "--force" in again.stderr

    elsewhere = cli.cwd / "copy.bin"
    assert cli("download", "CaseFile", row["record_id"], "-o", str(elsewhere)).returncode == 0
    assert sha256(elsewhere) == pptx.sha256
    assert sorted(p.name for p in cli.cwd.iterdir()) == sorted([pptx.name, "copy.bin"])


def test_download_of_an_unknown_id_is_one_line(cli: Cli) -> None:
    done = cli("download", "CaseFile", "3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        "creatio-attach: no CaseFile record with Id 3fa85f64-5717-4562-b3fc-2c963f66afa6"
    )


# --- check ------------------------------------------------------------------------------------


def test_check_passes_against_a_healthy_site(cli: Cli) -> None:
    done = cli("check", "--entity", "CaseFile", "--entity", "SysFile", "--entity", "UsrRealtyFile")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"✓ config: {cli.config} is valid"
    assert lines[1] == f"✓ login: {cli.url} as Supervisor (runtime netframework)"
    assert lines[2] == "✓ CaseFile: parent lookup Case -> Case; readable"
    assert lines[3] == "✓ SysFile: parent by RecordSchemaName + RecordId; readable"
    assert lines[4] == "✓ UsrRealtyFile: parent lookup UsrRealty -> UsrRealty; readable"
    no_leak(done)


def test_check_logs_in_with_oauth2_and_a_client_secret_credential(cli: Cli, tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "creatio-client-secret").write_text("attach-secret\n")
    cli.config.write_text(
        f'[creatio]\nurl = "{cli.url}"\nauth = "oauth2"\nclient_id = "attach"\n'
        f'token_url = "{cli.url}/connect/token"\n'
    )
    done = cli("check", "--entity", "CaseFile", extra_env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"✓ login: {cli.url} as attach (runtime netframework)" in done.stdout
    assert "attach-secret" not in done.stdout + done.stderr


def test_check_by_default_looks_at_the_standard_file_objects(cli: Cli) -> None:
    done = cli("check")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("SysFile", "ActivityFile", "ContactFile", "AccountFile", "CaseFile"):
        assert f"✓ {name}: " in done.stdout


def test_check_fails_for_a_file_object_the_site_lacks(cli: Cli) -> None:
    done = cli("check", "--entity", "UsrNopeFile")
    assert done.returncode == 1
    assert "✗ UsrNopeFile: not in $metadata" in done.stdout
    assert done.stderr.splitlines()[0] == "creatio-attach: 1 of 3 checks failed: UsrNopeFile"


def test_check_with_a_wrong_password_fails_without_printing_it(cli: Cli, tmp_path: Path) -> None:
    wrong = "Wr0ng-pa55word-xyz"
    write_config(cli.config.parent, cli.url, password=wrong)
    done = cli("check")
    assert done.returncode == 78
    text = done.stdout + done.stderr
    assert wrong not in text and PASSWORD not in text and "Traceback" not in text
    assert "✗ login: " in done.stdout
    assert done.stderr.splitlines()[0] == "creatio-attach: 1 of 2 checks failed: login"


def test_a_wrong_password_on_upload_is_one_line_and_exit_78(
    cli: Cli, corpus_by_name: dict[str, CorpusFile]
) -> None:
    wrong = "Wr0ng-pa55word-xyz"
    write_config(cli.config.parent, cli.url, password=wrong)
    pdf = corpus_by_name["filetype-fixture.pdf"].path
    done = cli(
        "upload",
        str(pdf),
        "--entity",
        "CaseFile",
        "--parent-id",
        "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    )
    assert done.returncode == 78
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith("creatio-attach: ")
    assert (
        all(line.startswith(("creatio-attach: ", "hint: ")) for line in lines) and len(lines) <= 2
    )
    assert wrong not in done.stderr


# --- config, quick use, help ------------------------------------------------------------------


def test_quick_use_with_url_and_the_password_in_the_environment(cli: Cli, tmp_path: Path) -> None:
    case_id = cli.seed("Case", Number="SR6", Subject="quick")
    env = {
        "CREATIO_ATTACH_CONFIG": str(tmp_path / "absent.toml"),
        "CREATIO_ATTACH_PASSWORD": PASSWORD,
    }
    done = cli(
        "list",
        "Case",
        case_id,
        "--json",
        "--url",
        cli.url,
        "--username",
        "Supervisor",
        extra_env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_a_bad_config_exits_78_and_lists_each_problem(cli: Cli) -> None:
    cli.config.write_text(
        '[creatio]\nurl = "nope"\nusername = "Supervisor"\npassword_file = "password"\n'
        'concurrency = "lots"\n[[inboxes]]\nname = "x"\n'
    )
    done = cli("list", "Case", "3fa85f64-5717-4562-b3fc-2c963f66afa6")
    assert done.returncode == 78
    assert done.stderr.splitlines() == [
        f"creatio-attach: {cli.config}: the config has 3 problems",
        '  - creatio.url: must be a URL like "https://acme.creatio.com", got "nope"',
        '  - creatio.concurrency: must be a whole number, got "lots"',
        '  - inboxes: unknown key in the top level (did you mean "inbox"?)',
        "hint: fix each key listed; config/example.toml documents every key",
    ]


def test_a_secret_in_a_readable_config_is_warned_about_but_never_shown(cli: Cli) -> None:
    case_id = cli.seed("Case", Number="SR2", Subject="warn")
    cli.config.write_text(
        f'[creatio]\nurl = "{cli.url}"\nusername = "Supervisor"\npassword = "{PASSWORD}"\n'
    )
    cli.config.chmod(0o644)
    done = cli("list", "Case", case_id)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"creatio-attach: warning: {cli.config} holds a secret")
    no_leak(done)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_secret(tmp_path: Path, command: str | None) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[creatio]\nurl = "http://127.0.0.1:9"\nusername = "Supervisor"\npassword = "{PASSWORD}"\n'
    )
    env = {**clean_env(), "CREATIO_ATTACH_CONFIG": str(config), "CREATIO_ATTACH_PASSWORD": PASSWORD}
    cli = Cli("http://127.0.0.1:9", config, tmp_path, env)
    args = ["--help"] if command is None else [command, "--help"]
    done = cli(*args)
    assert done.returncode == 0
    assert "Usage: creatio-attach" in done.stdout
    no_leak(done)
