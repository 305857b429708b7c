"""The systemd units: they verify, they are locked down, and the install guide's file steps work.

``systemd-analyze`` does the checking (installed from Debian's ``systemd`` package when missing
and we are root). No running systemd is needed: ``verify`` and ``security --offline=true`` read
unit files only, ``systemctl --root`` and ``useradd --prefix`` work on a temporary root.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from creatio_attach.emulator import EmbeddedEmulator
from tests.conftest import CorpusFile

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "systemd"
MAIN, TEMPLATE = "creatio-attach.service", "creatio-attach@.service"
INSTALLED_BIN = "/opt/creatio-attach/bin/creatio-attach"
MAX_EXPOSURE = 2.0


# ---------------------------------------------------------------------------------------------
# systemd's tools


def _install_systemd() -> str:
    """apt-get systemd (root only), once across xdist workers; the path of systemd-analyze."""
    with Path("/tmp/creatio-attach-tests-apt.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker may be installing right now
        found = shutil.which("systemd-analyze")
        if found:
            return found
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        started = time.monotonic()
        policy = subprocess.run(
            ["apt-cache", "policy", "systemd"], capture_output=True, text=True, env=env
        )
        if "Candidate: (none)" in policy.stdout or "Candidate:" not in policy.stdout:
            subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "systemd"],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        took = time.monotonic() - started
        found = shutil.which("systemd-analyze")
        if not found:
            pytest.fail(
                "systemd-analyze is missing and `apt-get install systemd` did not provide it "
                f"(exit {done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )
        print(f"\ninstalled Debian's systemd for systemd-analyze in {took:.1f} s", file=sys.stderr)
        return found


@pytest.fixture(scope="session")
def systemd_analyze() -> str:
    """The path of ``systemd-analyze``, installed first when missing."""
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(
            "systemd-analyze is missing: install Debian's package systemd "
            "(apt-get install --no-install-recommends systemd), or run the tests as root "
            "and they install it"
        )
    return _install_systemd()


def analyze(
    tool: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat"} | (env or {}),
    )


def dev_binary() -> Path:
    """The test environment's console script, which stands in for the installed one."""
    binary = Path(sys.executable).parent / "creatio-attach"
    assert binary.is_file(), f"{binary} is missing: install the project into this venv"
    return binary


def unit_copy(tmp_path: Path, name: str, as_name: str | None = None) -> Path:
    """A copy of a unit whose ExecStart points at the test environment's creatio-attach."""
    text = (UNITS / name).read_text()
    assert INSTALLED_BIN in text
    out = tmp_path / (as_name or name)
    out.write_text(text.replace(INSTALLED_BIN, str(dev_binary())))
    return out


def exposure(output: str, unit: str) -> float:
    m = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", output)
    assert m, output[-2000:]
    return float(m.group(1))


# ---------------------------------------------------------------------------------------------
# verify


@pytest.mark.parametrize(
    ("name", "as_name"),
    [(MAIN, MAIN), (TEMPLATE, TEMPLATE), (TEMPLATE, "creatio-attach@sales.service")],
)
def test_units_pass_systemd_analyze_verify(
    systemd_analyze: str, tmp_path: Path, name: str, as_name: str
) -> None:
    unit = unit_copy(tmp_path, name, as_name)
    done = analyze(systemd_analyze, "verify", str(unit))
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # warnings (unknown keys, bad values) count too


def test_units_verify_with_the_inboxes_drop_in(systemd_analyze: str, tmp_path: Path) -> None:
    unit = unit_copy(tmp_path, MAIN)
    dropins = tmp_path / f"{MAIN}.d"
    dropins.mkdir()
    shutil.copy(UNITS / "inboxes.conf", dropins / "inboxes.conf")
    search = {"SYSTEMD_UNIT_PATH": f"{tmp_path}:"}  # trailing ":" keeps the default path
    done = analyze(systemd_analyze, "verify", str(unit), env=search)
    assert (done.returncode, done.stderr) == (0, "")
    # the drop-in really is read: a broken line in it is reported
    (dropins / "zz-broken.conf").write_text("[Service]\nReadWritePaths=/srv/x\nNoSuchKey=1\n")
    done = analyze(systemd_analyze, "verify", str(unit), env=search)
    assert "zz-broken.conf:3: Unknown key 'NoSuchKey'" in done.stderr


def test_verify_catches_a_broken_unit(systemd_analyze: str, tmp_path: Path) -> None:
    unit = unit_copy(tmp_path, MAIN, "broken.service")
    text = unit.read_text().replace("UMask=0077", "UMask=0999\nWatchdogSecs=10")
    unit.write_text(text.replace(str(dev_binary()), "/nonexistent/creatio-attach"))
    done = analyze(systemd_analyze, "verify", str(unit))
    assert done.returncode != 0
    assert "Failed to parse mode value" in done.stderr
    assert "Unknown key 'WatchdogSecs'" in done.stderr
    assert "/nonexistent/creatio-attach is not executable" in done.stderr


# ---------------------------------------------------------------------------------------------
# security


@pytest.mark.parametrize(
    ("name", "as_name"), [(MAIN, MAIN), (TEMPLATE, "creatio-attach@a.service")]
)
def test_systemd_analyze_security_rates_the_units_at_most_2(
    systemd_analyze: str, tmp_path: Path, name: str, as_name: str
) -> None:
    unit = unit_copy(tmp_path, name, as_name)
    done = analyze(systemd_analyze, "security", "--offline=true", "--no-pager", str(unit))
    assert done.returncode == 0, done.stderr
    figure = exposure(done.stdout, as_name)
    print(f"systemd-analyze security {as_name}: {figure}")
    assert figure <= MAX_EXPOSURE, done.stdout


def test_security_with_the_inboxes_drop_in_stays_at_most_2(
    systemd_analyze: str, tmp_path: Path
) -> None:
    unit = unit_copy(tmp_path, MAIN)
    (tmp_path / f"{MAIN}.d").mkdir()
    dropin = (
        (UNITS / "inboxes.conf").read_text().replace("#SupplementaryGroups", "SupplementaryGroups")
    )
    (tmp_path / f"{MAIN}.d" / "inboxes.conf").write_text(dropin)
    done = analyze(
        systemd_analyze,
        "security",
        "--offline=true",
        "--no-pager",
        str(unit),
        env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
    )
    assert "Service runs with supplementary groups" in done.stdout  # the drop-in counted
    figure = exposure(done.stdout, MAIN)
    print(f"systemd-analyze security {MAIN} + inboxes.conf: {figure}")
    assert figure <= MAX_EXPOSURE


MDWE_CHILD = textwrap.dedent(
    """
    import ctypes, mmap, sqlite3, ssl, sys
    from pathlib import Path

    libc = ctypes.CDLL(None, use_errno=True)
    # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: what MemoryDenyWriteExecute=yes enforces
    if libc.prctl(65, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_MDWE) failed: this kernel is older than 6.3")
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        pass
    else:
        sys.exit("writable+executable memory was still allowed")
    import requests, structlog, watchdog.observers  # noqa: F401
    from creatio_attach import config, detect, journal, log, metrics, notify, watcher  # noqa
    found = detect.detect(Path(sys.argv[1]))
    ssl.create_default_context()
    sqlite3.connect(":memory:").execute("select 1")
    assert ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)() == 7  # libffi closures too
    print(found.mime)
    """
)


def test_python_and_libmagic_run_without_writable_executable_memory(
    tmp_path: Path, corpus: list[CorpusFile]
) -> None:
    """MemoryDenyWriteExecute=yes is safe: the daemon's imports and libmagic work under it."""
    pdf = next(c for c in corpus if c.expected_mime == "application/pdf")
    script = tmp_path / "mdwe.py"
    script.write_text(MDWE_CHILD)
    done = subprocess.run(
        [sys.executable, str(script), str(pdf.path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "application/pdf"


# ---------------------------------------------------------------------------------------------
# what the units say


def directives(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of every setting line, in file order."""
    out, section = [], ""
    for line in (UNITS / name).read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.append((section, key, value))
    return out


@pytest.mark.parametrize("name", [MAIN, TEMPLATE, "inboxes.conf"])
def test_every_setting_is_explained_by_a_comment(name: str) -> None:
    """Each run of setting lines is preceded by a comment saying why (borgmatic's habit)."""
    lines = (UNITS / name).read_text().splitlines()
    previous = ""
    for number, line in enumerate(lines, 1):
        is_setting = bool(line) and not line.startswith(("#", "["))
        if is_setting and not (previous.startswith("#") or _is_setting(previous)):
            pytest.fail(f"{name}:{number}: {line!r} has no comment above it")
        previous = line


def _is_setting(line: str) -> bool:
    return bool(line) and not line.startswith(("#", "["))


def test_the_unit_has_what_the_issue_asks_for() -> None:
    have = {(s, k): v for s, k, v in directives(MAIN)}
    service = {k: v for (s, k), v in have.items() if s == "Service"}
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "78",
        "User": "creatio-attach",
        "StateDirectory": "creatio-attach",
        "ConfigurationDirectory": "creatio-attach",
        "ExecStart": f"{INSTALLED_BIN} run --config /etc/creatio-attach/config.toml",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "CapabilityBoundingSet": "",
        "MemoryDenyWriteExecute": "yes",
        "UMask": "0077",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert service["WatchdogSec"]
    assert ("Service", "SystemCallFilter", "@system-service") in directives(MAIN)
    credentials = [v for s, k, v in directives(MAIN) if k == "LoadCredential"]
    # relative names: looked up in /etc/credstore and skipped when missing
    assert credentials == [
        "creatio-password:creatio-attach.creatio-password",
        "creatio-client-secret:creatio-attach.creatio-client-secret",
    ]


def test_the_template_differs_from_the_unit_only_by_the_instance() -> None:
    def normalise(value: str) -> str:
        return (
            value.replace("/etc/creatio-attach/%i.toml", "/etc/creatio-attach/config.toml")
            .replace("creatio-attach/%i", "creatio-attach")
            .replace("creatio-attach@%i.", "creatio-attach.")
            .replace(" (%i):", ":")
        )

    template = [(s, k, normalise(v)) for s, k, v in directives(TEMPLATE)]
    assert template == directives(MAIN)
    assert "%i" in dict((k, v) for _, k, v in directives(TEMPLATE))["ExecStart"]


# ---------------------------------------------------------------------------------------------
# the install guide's steps, on a temporary root (/tmp/readme-s.md, "Run as a service")


def host_units_into(root: Path) -> None:
    """What a Debian root has and verify --root needs: systemd's own units and /bin/kill."""
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy2(shutil.which("kill") or "/usr/bin/kill", root / "usr/bin/kill")
    (root / "bin").symlink_to("usr/bin")  # merged /usr, as on Debian 12
    (root / "lib").symlink_to("usr/lib")


def sh(script: str, root: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run guide commands with ``$ROOT`` standing for ``/``."""
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=os.environ | {"ROOT": str(root)},
    )
    assert done.returncode == 0, f"{script}\n{done.stdout}{done.stderr}"
    return done


def test_install_guide_steps_give_a_unit_that_verifies_and_enables(
    systemd_analyze: str,
    tmp_path: Path,
    emulator_factory: Callable[..., EmbeddedEmulator],
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    host_units_into(root)
    password = "guide-Pa55-w0rd"

    # 1. the program in a venv under /opt/creatio-attach (pip install is replaced by a copy of
    #    this environment's console script: the same file pip writes)
    sh('python3 -m venv --without-pip "$ROOT/opt/creatio-attach"', root)
    shutil.copy2(dev_binary(), root / "opt/creatio-attach/bin/creatio-attach")

    # 2. the user
    for f in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc").mkdir(exist_ok=True)
        (root / "etc" / f).touch()
    useradd = (
        'useradd --prefix "$ROOT" --system --user-group --home-dir /var/lib/creatio-attach '
        "--shell /usr/sbin/nologin creatio-attach"
    )
    if os.geteuid() != 0:  # useradd writes /etc/passwd only as root, even under --prefix
        useradd = f"unshare --user --map-root-user {useradd}"
    sh(useradd, root)
    passwd = (root / "etc/passwd").read_text()
    assert re.search(
        r"^creatio-attach:x:\d+:\d+::/var/lib/creatio-attach:/usr/sbin/nologin$", passwd, re.M
    )

    # 3. the config and the secret (the secret read from the terminal, never on a command line)
    emu = emulator_factory(users={"Supervisor": password})
    sh('install -d -m 0755 "$ROOT/etc/creatio-attach"', root)
    (tmp_path / "config.toml").write_text(
        f'[creatio]\nurl = "{emu.url}"\nusername = "Supervisor"\n'
    )
    sh(f'install -m 0644 {tmp_path}/config.toml "$ROOT/etc/creatio-attach/config.toml"', root)
    sh(
        'install -d -m 0700 "$ROOT/etc/credstore"\n'
        'install -m 0600 /dev/null "$ROOT/etc/credstore/creatio-attach.creatio-password"\n'
        "read -rs -p 'Creatio password: ' pw\n"
        'printf "%s" "$pw" > "$ROOT/etc/credstore/creatio-attach.creatio-password"; unset pw',
        root,
        stdin=password + "\n",
    )
    secret = root / "etc/credstore/creatio-attach.creatio-password"
    assert secret.read_text() == password
    assert secret.stat().st_mode & 0o777 == 0o600
    assert (root / "etc/credstore").stat().st_mode & 0o777 == 0o700

    # 4. the units and the inbox drop-in
    (root / "etc/systemd/system").mkdir(parents=True)  # every systemd host has it
    sh(
        "install -m 0644 systemd/creatio-attach.service systemd/creatio-attach@.service "
        '"$ROOT/etc/systemd/system/"\n'
        "install -D -m 0644 systemd/inboxes.conf "
        '"$ROOT/etc/systemd/system/creatio-attach.service.d/inboxes.conf"',
        root,
    )
    done = analyze(systemd_analyze, "verify", f"--root={root}", MAIN)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    done = analyze(systemd_analyze, "verify", f"--root={root}", "creatio-attach@sales.service")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr

    # 5. enable (systemctl --root does what `systemctl enable` does, without a running systemd)
    sh('systemctl --root="$ROOT" enable creatio-attach.service creatio-attach@sales.service', root)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert (wants / MAIN).readlink() == Path(f"/etc/systemd/system/{MAIN}")
    assert (wants / "creatio-attach@sales.service").readlink() == Path(
        f"/etc/systemd/system/{TEMPLATE}"
    )

    # 6. check, as the service would run it: the credential under its systemd name
    creds = tmp_path / "run-credentials"
    creds.mkdir(mode=0o700)
    shutil.copy2(secret, creds / "creatio-password")
    done = subprocess.run(
        [
            str(root / "opt/creatio-attach/bin/creatio-attach"),
            "check",
            "--config",
            str(root / "etc/creatio-attach/config.toml"),
            "--entity",
            "CaseFile",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"CREDENTIALS_DIRECTORY": str(creds)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ login:" in done.stdout
    assert password not in done.stdout + done.stderr

    # 7. uninstall
    sh(
        'systemctl --root="$ROOT" disable creatio-attach.service creatio-attach@sales.service\n'
        'rm -f "$ROOT/etc/systemd/system/creatio-attach.service" '
        '"$ROOT/etc/systemd/system/creatio-attach@.service"\n'
        'rm -rf "$ROOT/etc/systemd/system/creatio-attach.service.d" "$ROOT/opt/creatio-attach"',
        root,
    )
    assert not (wants / MAIN).exists()
    assert not (root / "opt/creatio-attach").exists()
