"""A known password never leaks: not into a log line (JSON or terminal), an ``.error.json``,
the journal's bytes, nor the output of any command.

The emulator's only user gets a distinctive password, which the daemon reads from a systemd
credential (``$CREDENTIALS_DIRECTORY/creatio-password``). The daemon uploads, fails files (no
parent; a 500 fault), and the one-shot commands run beside it: ``status``, ``status --json``,
``check``, a ``check`` and a ``run`` with a wrong password. Then every byte they produced is
searched for both passwords.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import CorpusFile, wait_for
from tests.daemon_helpers import (
    Site,
    cli_args,
    daemon_env,
    run_cli,
    start_daemon,
    stop_daemon,
    wait_ready,
)

PASSWORD = "Pa55-w0rd!xyzzy-42"
WRONG = "Wr0ng-pa55!plugh-17"
USER = "ApiUser"


def credential(folder: Path, secret: str) -> dict[str, str]:
    folder.mkdir()
    (folder / "creatio-password").write_text(secret, encoding="utf-8")
    (folder / "creatio-password").chmod(0o600)
    return {"CREDENTIALS_DIRECTORY": str(folder)}


class PtyDaemon:
    """The daemon with its stderr on a pseudo-terminal, so it logs readable lines."""

    def __init__(self, config: Path, env: dict[str, str], stdout: Path) -> None:
        master, slave = os.openpty()
        self._master = master
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        with stdout.open("ab") as out:
            self.proc = subprocess.Popen(
                cli_args("run", "--config", str(config), "--log-level", "debug"),
                stdout=out,
                stderr=slave,
                env=daemon_env(env),
            )
        os.close(slave)
        self._thread = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            with self._lock:
                self._chunks.append(data)

    def text(self) -> str:
        with self._lock:
            return b"".join(self._chunks).decode(errors="replace")

    def stop(self) -> int:
        rc = stop_daemon(self.proc, signal.SIGTERM)
        self._thread.join(10)
        os.close(self._master)
        return rc


def test_a_known_password_never_appears_anywhere(
    tmp_path: Path,
    emulator_factory: Callable[..., EmbeddedEmulator],
    corpus_by_name: dict[str, CorpusFile],
) -> None:
    emulator = emulator_factory(users={USER: PASSWORD})
    site = Site(tmp_path / "site", emulator, username=USER, password=None)
    site.root.mkdir()
    site.case("SR20")
    inbox = site.inbox(unmatched_retry={"every": "0.2s", "for": "0.6s"})
    config = site.write_config()
    assert PASSWORD not in config.read_text()
    env = credential(tmp_path / "credentials", PASSWORD)
    wrong_env = credential(tmp_path / "wrong-credentials", WRONG)
    pdf = corpus_by_name["filetype-fixture.pdf"]
    docx = corpus_by_name["filetype-fixture.docx"]
    outputs: list[str] = []

    def command(*args: str, rc: int, creds: dict[str, str] = env) -> str:
        done = run_cli(*args, "--config", str(config), env=creds)
        out = done.stdout + done.stderr
        outputs.append(out)
        assert done.returncode == rc, out
        return out

    # 1. JSON logs (stdout and stderr are a file)
    json_log = tmp_path / "daemon.json.log"
    proc = start_daemon(config, json_log, level="debug", env=env)
    try:
        wait_ready(proc, json_log)
        shutil.copyfile(pdf.path, inbox / "SR20_ok.pdf")
        shutil.copyfile(pdf.path, inbox / "SR99_orphan.pdf")  # no such Case: fails in time
        wait_for(lambda: site.state_count("done") == 1, timeout=20, what="the upload")
        wait_for(lambda: site.state_count("failed") == 1, timeout=20, what="the orphan failed")
        site.faults("500@every=1:method=PUT")  # every upload of content answers 500
        shutil.copyfile(docx.path, inbox / "SR20_fault.docx")
        wait_for(
            lambda: site.state_count("retry_wait") + site.state_count("failed") == 2,
            timeout=30,
            what="the 500 recorded",
        )
        status = command("status", rc=0)
        assert "SR99_orphan.pdf" in status and "parent_not_found" in status
        command("status", "--json", rc=0)
        command("check", rc=0)
        refused = command("check", rc=78, creds=wrong_env)
        assert "refused" in refused
        site.faults(None)
        wait_for(lambda: site.state_count("done") == 2, timeout=30, what="the docx after 500s")
        assert stop_daemon(proc) == 0
    finally:
        stop_daemon(proc, signal.SIGKILL)

    # 2. readable lines on a terminal, with one more upload through a 500
    site.faults("500@every=2:method=PUT")
    shutil.copyfile(corpus_by_name["wavefile-16bit-8kHz-stereo.wav"].path, inbox / "SR20_t.wav")
    tty_stdout = tmp_path / "daemon.tty.stdout"
    daemon = PtyDaemon(config, env, tty_stdout)
    try:
        wait_for(lambda: site.state_count("done") == 3, timeout=30, what="the tty upload")
    finally:
        assert daemon.stop() == 0
    terminal = daemon.text()
    assert "daemon.ready" in terminal and "file.done" in terminal
    assert not terminal.lstrip().startswith("{")  # readable lines, not JSON

    # 3. a run with a wrong password ends at once
    wrong_log = tmp_path / "daemon.wrong.log"
    wrong = start_daemon(config, wrong_log, env=wrong_env)
    assert wrong.wait(30) == 78

    # every byte any of them produced
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    written = [p for p in written if "credentials" not in p.parts[len(tmp_path.parts)]]
    notes = [p for p in written if p.name.endswith(".error.json")]
    assert len(notes) >= 1  # the orphan's note at least
    journal = [p for p in written if p.name.startswith("journal.sqlite3")]
    assert journal
    logs = [json_log, tty_stdout, wrong_log]
    assert all(p in written for p in logs)
    assert json_log.read_text().lstrip().startswith("{")  # the JSON format was searched
    assert "file.done" in json_log.read_text() and "file.failed" in json_log.read_text()
    assert "refused the login" in wrong_log.read_text()
    for secret in (PASSWORD, WRONG):
        for path in written:
            if "emulator-" in str(path):
                continue  # the emulator's own store: the other side of the wire
            assert secret.encode() not in path.read_bytes(), f"{secret} in {path}"
        assert secret not in terminal
        for out in outputs:
            assert secret not in out, out
