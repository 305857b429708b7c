"""The config file: validation (every problem at once, with key paths), secrets, sizes, durations.

Real TOML files in a temporary folder; the exit status is checked by running the real CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from creatio_attach.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    CreatioSettings,
    MiB,
    load_config,
    parse_duration,
    parse_size,
    resolve_config_path,
)
from creatio_attach.errors import EX_CONFIG, ConfigError

REPO = Path(__file__).resolve().parents[1]
SECRET = "Tr0ub4dor&3-not-shown"


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def problems_of(path: Path | None, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    return caught.value


MINIMAL = """
[creatio]
url = "https://acme.creatio.com"
username = "ApiUser"
"""


# --- the example and a good file ----------------------------------------------------------


def test_example_config_loads_with_the_password_from_the_environment() -> None:
    config = load_config(REPO / "config" / "example.toml", env={"CREATIO_ATTACH_PASSWORD": SECRET})
    s = config.creatio
    assert s.url == "https://acme.creatio.com"
    assert s.username == "ApiUser"
    assert s.password is not None and s.password.get_secret_value() == SECRET
    assert (s.chunk_threshold, s.chunk_size) == (8 * MiB, 4 * MiB)
    assert (s.timeout, s.connect_timeout) == (60.0, 10.0)
    assert config.path == REPO / "config" / "example.toml"


def test_example_config_documents_every_key_it_accepts() -> None:
    text = (REPO / "config" / "example.toml").read_text(encoding="utf-8")
    from pydantic import BaseModel

    from creatio_attach.config import ConfigFile, CreatioTable
    from creatio_attach.settings_models import (
        DaemonSettings,
        InboxTable,
        MatchTable,
        MetricsTable,
        ParentSettings,
        StateTable,
        UnmatchedRetry,
    )

    tables: dict[str, type[BaseModel]] = {
        "creatio": CreatioTable,
        "state": StateTable,
        "daemon": DaemonSettings,
        "metrics": MetricsTable,
        "inbox": InboxTable,
        "inbox.match": MatchTable,
        "inbox.parent": ParentSettings,
        "unmatched_retry": UnmatchedRetry,
    }
    for table in ConfigFile.model_fields:
        assert f"[{table}]" in text or f"[[{table}]]" in text, f"no [{table}] in example.toml"
    for table, model in tables.items():
        for name, info in model.model_fields.items():
            key = info.alias or name
            documented = f"{key} =" in text or f"[inbox.{key}]" in text
            assert documented, f"config/example.toml does not document {table}.{key}"


def test_sizes_and_durations_in_the_file_become_bytes_and_seconds(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        MINIMAL
        + 'password = "x"\nchunk_threshold = "4 MiB"\nchunk_size = 524288\n'
        + 'timeout = "2m"\nconnect_timeout = 3\n',
    )
    s = load_config(cfg, env={}).creatio
    assert s.chunk_threshold == 4 * MiB
    assert s.chunk_size == 524288
    assert s.timeout == 120.0
    assert s.connect_timeout == 3.0


def test_a_trailing_slash_on_the_url_is_removed(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL.replace(".com", ".com/") + 'password = "x"\n')
    assert load_config(cfg, env={}).creatio.url == "https://acme.creatio.com"


def test_settings_can_still_be_built_directly_by_code() -> None:
    s = CreatioSettings(url="http://127.0.0.1:8080", username="Supervisor", password="Supervisor")  # type: ignore[arg-type]
    assert s.chunk_size == 4 * MiB and s.password is not None


# --- validation: every problem at once ------------------------------------------------------


def test_every_problem_is_reported_at_once_with_its_key_path_and_the_file_name(
    tmp_path: Path,
) -> None:
    cfg = write(
        tmp_path / "bad.toml",
        """
[creatio]
url = "acme.creatio.com"
runtime = "fast"
auth = "forms"
chunk_size = "lots"
chunk_threshold = -1
timeout = "soon"
concurrency = 0
verify_tls = "yes please"
verify = "hash"
""",
    )
    error = problems_of(cfg, env={"CREATIO_ATTACH_PASSWORD": "x"})
    assert error.path == str(cfg)
    assert error.exit_code == EX_CONFIG
    expected = [
        'creatio.url: must be a URL like "https://acme.creatio.com", got "acme.creatio.com"',
        'creatio.runtime: must be one of "auto", "netframework", "netcore", got "fast"',
        'creatio.chunk_size: must be a size like "4MiB", got "lots"',
        "creatio.chunk_threshold: must not be negative, got -1",
        'creatio.timeout: must be a duration like "30s" or "5m", got "soon"',
        "creatio.concurrency: must be between 1 and 64, got 0",
        'creatio.verify_tls: must be true or false, got "yes please"',
        'creatio.verify: must be one of "size", "download", got "hash"',
        'creatio.username: required for auth = "forms"',
    ]
    assert error.problems == expected  # in the order of the file, missing keys last
    assert "the config has 9 problems" in str(error)
    assert str(cfg) in str(error)


@pytest.mark.parametrize("written", ['"no"', '"off"', '"false"', "0", '""'])
def test_verify_tls_takes_only_true_or_false_so_a_word_never_turns_tls_off(
    tmp_path: Path, written: str
) -> None:
    cfg = write(
        tmp_path / "v.toml",
        f"""
[creatio]
url = "https://acme.creatio.com"
username = "u"
verify_tls = {written}
concurrency = "4"
""",
    )
    error = problems_of(cfg, env={"CREATIO_ATTACH_PASSWORD": "x"})
    assert error.problems == [
        f"creatio.verify_tls: must be true or false, got {written}",
        'creatio.concurrency: must be a whole number, got "4"',
    ]


def test_the_remaining_rules_each_name_their_key(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        """
[creatio]
url = "https://acme.creatio.com/?x=1"
auth = "basic"
username = "  "
password = ""
token_url = "acme-is.creatio.com/connect/token"
connect_timeout = 0
chunk_size = "0 MiB"
ca_bundle = 5
""",
    )
    assert problems_of(cfg, env={}).problems == [
        'creatio.url: must be a URL like "https://acme.creatio.com", got '
        '"https://acme.creatio.com/?x=1"',
        'creatio.auth: must be one of "forms", "oauth2", got "basic"',
        "creatio.username: must not be empty",
        "creatio.password: must not be empty",
        'creatio.token_url: must be a URL like "https://acme-is.creatio.com/connect/token", '
        'got "acme-is.creatio.com/connect/token"',
        "creatio.connect_timeout: must be more than 0 seconds, got 0",
        'creatio.chunk_size: must be more than 0 bytes, got "0 MiB"',
        "creatio.ca_bundle: must be a string, got 5",
    ]


def test_unknown_keys_and_tables_are_problems_with_a_suggestion(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        MINIMAL
        + 'pasword = "hunter2-typo"\nchunksize = "1MiB"\n\n[stat]\ndir = "/var/lib/x"\n'
        + '\n[[inboxes]]\nname = "a"\n\n[daemon]\ngrase = "1s"\n',
    )
    error = problems_of(cfg, env={"CREATIO_ATTACH_PASSWORD": "x"})
    assert error.problems == [
        'creatio.pasword: unknown key in [creatio] (did you mean "password"?)',
        'creatio.chunksize: unknown key in [creatio] (did you mean "chunk_size"?)',
        'stat: unknown key in the top level (did you mean "state"?)',
        'inboxes: unknown key in the top level (did you mean "inbox"?)',
        'daemon.grase: unknown key in [daemon] (did you mean "grace"?)',
    ]
    assert "hunter2-typo" not in str(error)


def test_a_file_without_creatio_table_says_it_is_required(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "# nothing yet\n")
    assert problems_of(cfg, env={}).problems == ["creatio: required"]


def test_url_and_forms_credentials_are_required(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", "[creatio]\n")
    error = problems_of(cfg, env={})
    assert error.problems[0] == "creatio.url: required"
    assert 'creatio.username: required for auth = "forms"' in error.problems
    assert any(
        p.startswith('creatio.password: required for auth = "forms"') for p in error.problems
    )
    assert len(error.problems) == 3


def test_oauth2_needs_a_client_id_and_a_client_secret(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[creatio]\nurl = "https://a.creatio.com"\nauth = "oauth2"\n')
    error = problems_of(cfg, env={"CREATIO_ATTACH_PASSWORD": "irrelevant"})
    assert error.problems[0] == 'creatio.client_id: required for auth = "oauth2"'
    assert error.problems[1].startswith('creatio.client_secret: required for auth = "oauth2"')
    assert len(error.problems) == 2


def test_oauth2_with_its_secret_from_the_environment_loads(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        '[creatio]\nurl = "https://a.creatio.com"\nauth = "oauth2"\nclient_id = "attach"\n'
        'token_url = "https://a-is.creatio.com/connect/token"\n',
    )
    s = load_config(cfg, env={"CREATIO_ATTACH_CLIENT_SECRET": SECRET}).creatio
    assert s.client_secret is not None and s.client_secret.get_secret_value() == SECRET
    assert s.token_url == "https://a-is.creatio.com/connect/token"


def test_wrong_types_are_reported_without_echoing_secret_values(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        '[creatio]\nurl = "https://a.creatio.com"\nusername = "u"\npassword = 73105\n'
        'concurrency = "many"\ncreatio_extra = { password = "hunter2" }\n',
    )
    error = problems_of(cfg, env={})
    assert "creatio.password: must be a string" in error.problems
    assert 'creatio.concurrency: must be a whole number, got "many"' in error.problems
    assert "73105" not in str(error) and "hunter2" not in str(error)


def test_a_table_where_a_value_belongs_is_reported(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", 'creatio = "https://a.creatio.com"\n')
    assert problems_of(cfg, env={}).problems == [
        'creatio: must be a table, got "https://a.creatio.com"'
    ]


def test_invalid_toml_reports_line_and_column(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[creatio]\nurl = "https://a"\nusername = \n')
    error = problems_of(cfg, env={})
    assert error.path == str(cfg)
    assert len(error.problems) == 1
    assert error.problems[0].startswith("line 3, column 12: invalid TOML:")


def test_a_config_that_is_not_utf8_is_reported(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b'[creatio]\nurl = "https://caf\xe9.com"\n')
    assert problems_of(cfg, env={}).problems == ["line 2: not UTF-8 text"]


def test_a_missing_config_file_names_the_path_and_the_ways_out(tmp_path: Path) -> None:
    error = problems_of(tmp_path / "nope.toml", env={})
    assert error.message == "config file not found"
    assert error.path == str(tmp_path / "nope.toml")
    # the daemon's commands (run, status, retry, submit) take no --url: the hint says none
    assert error.hint == "pass --config PATH or set $CREATIO_ATTACH_CONFIG"
    assert error.exit_code == EX_CONFIG
    quick = problems_of(tmp_path / "nope.toml", env={}, overrides={"creatio.url": None})
    assert quick.hint is not None and quick.hint.endswith("or give --url for quick use")


def test_a_folder_given_as_config_is_reported(tmp_path: Path) -> None:
    assert "directory" in problems_of(tmp_path, env={}).message


def test_a_missing_ca_bundle_is_a_problem(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password = "x"\nca_bundle = "ca.pem"\n')
    error = problems_of(cfg, env={})
    assert error.problems == [f"creatio.ca_bundle: no such file: {tmp_path / 'ca.pem'}"]
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_config(cfg, env={}).creatio.ca_bundle == tmp_path / "ca.pem"


# --- where the config comes from; quick use ----------------------------------------------------


def test_config_path_is_option_then_environment_then_etc(tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    assert resolve_config_path(given, {"CREATIO_ATTACH_CONFIG": "/x.toml"}) == given
    assert resolve_config_path(None, {"CREATIO_ATTACH_CONFIG": "/x.toml"}) == Path("/x.toml")
    assert resolve_config_path(None, {}) == DEFAULT_CONFIG_PATH


def test_the_environment_names_the_config_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "env.toml", MINIMAL + 'password = "x"\n')
    config = load_config(None, env={"CREATIO_ATTACH_CONFIG": str(cfg)})
    assert config.path == cfg


def test_url_override_without_a_config_file_is_enough_for_quick_use(tmp_path: Path) -> None:
    env = {
        "CREATIO_ATTACH_CONFIG": str(tmp_path / "absent.toml"),
        "CREATIO_ATTACH_PASSWORD": SECRET,
    }
    config = load_config(
        None, env=env, overrides={"creatio.url": "http://127.0.0.1:9", "creatio.username": "U"}
    )
    assert config.path is None
    assert config.creatio.url == "http://127.0.0.1:9"
    assert config.creatio.username == "U"


def test_an_explicit_config_that_is_missing_is_an_error_even_with_url(tmp_path: Path) -> None:
    error = problems_of(
        tmp_path / "absent.toml",
        env={"CREATIO_ATTACH_PASSWORD": "x"},
        overrides={"creatio.url": "http://127.0.0.1:9", "creatio.username": "U"},
    )
    assert error.message == "config file not found"


def test_overrides_win_over_the_file_and_are_validated_too(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password = "x"\n')
    config = load_config(cfg, env={}, overrides={"creatio.username": "Other", "creatio.url": None})
    assert config.creatio.username == "Other"
    assert config.creatio.url == "https://acme.creatio.com"
    error = problems_of(cfg, env={}, overrides={"creatio.url": "ftp://x"})
    assert error.problems == [
        'creatio.url: must be a URL like "https://acme.creatio.com", got "ftp://x"'
    ]


# --- secrets ----------------------------------------------------------------------------------


@pytest.fixture
def secret_sources(tmp_path: Path) -> dict[str, Path]:
    """One password in each place: systemd credential, password_file, inline; plus env."""
    creds = tmp_path / "credentials"
    creds.mkdir()
    write(creds / "creatio-password", "from-credential\n")
    write(tmp_path / "password", "from-file\n")
    cfg = write(
        tmp_path / "c.toml",
        MINIMAL + 'password_file = "password"\npassword = "from-inline"\n',
    )
    return {"creds": creds, "config": cfg}


def test_a_systemd_credential_wins_over_every_other_source(secret_sources: dict[str, Path]) -> None:
    env = {"CREDENTIALS_DIRECTORY": str(secret_sources["creds"]), "CREATIO_ATTACH_PASSWORD": "e"}
    s = load_config(secret_sources["config"], env=env).creatio
    assert s.password is not None and s.password.get_secret_value() == "from-credential"


def test_password_file_comes_next_and_loses_its_trailing_newline(
    secret_sources: dict[str, Path],
) -> None:
    # a credentials directory without our credential does not count
    env = {
        "CREDENTIALS_DIRECTORY": str(secret_sources["creds"].parent),
        "CREATIO_ATTACH_PASSWORD": "e",
    }
    s = load_config(secret_sources["config"], env=env).creatio
    assert s.password is not None and s.password.get_secret_value() == "from-file"


def test_inline_password_comes_before_the_environment(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password = "from-inline"\n')
    s = load_config(cfg, env={"CREATIO_ATTACH_PASSWORD": "from-env"}).creatio
    assert s.password is not None and s.password.get_secret_value() == "from-inline"


def test_the_environment_is_the_last_resort(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL)
    s = load_config(cfg, env={"CREATIO_ATTACH_PASSWORD": "from-env"}).creatio
    assert s.password is not None and s.password.get_secret_value() == "from-env"


def test_only_one_trailing_newline_is_stripped_from_a_secret_file(tmp_path: Path) -> None:
    write(tmp_path / "password", " spaced secret \n\n")
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password_file = "password"\n')
    s = load_config(cfg, env={}).creatio
    assert s.password is not None and s.password.get_secret_value() == " spaced secret \n"


def test_client_secret_comes_from_its_own_systemd_credential(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    write(creds / "creatio-client-secret", SECRET + "\n")
    cfg = write(
        tmp_path / "c.toml",
        '[creatio]\nurl = "https://a.creatio.com"\nauth = "oauth2"\nclient_id = "attach"\n'
        'client_secret = "inline"\n',
    )
    s = load_config(cfg, env={"CREDENTIALS_DIRECTORY": str(creds)}).creatio
    assert s.client_secret is not None and s.client_secret.get_secret_value() == SECRET
    assert s.password is None


def test_an_unreadable_or_empty_password_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "pw-dir").mkdir()
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password_file = "pw-dir"\n')
    error = problems_of(cfg, env={"CREATIO_ATTACH_PASSWORD": "x"})
    assert error.problems == [
        f"creatio.password_file: cannot read {tmp_path / 'pw-dir'}: Is a directory"
    ]
    write(tmp_path / "empty", "")
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password_file = "empty"\n')
    assert problems_of(cfg, env={}).problems == [
        f"creatio.password_file: {tmp_path / 'empty'} is empty"
    ]


def test_a_missing_password_file_is_a_problem_and_nothing_else_is_reported(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password_file = "/nonexistent/pw"\n')
    error = problems_of(cfg, env={})
    assert error.problems == [
        "creatio.password_file: cannot read /nonexistent/pw: No such file or directory"
    ]


def test_a_secret_in_a_config_others_can_read_gets_a_warning(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL + f'password = "{SECRET}"\n', mode=0o644)
    config = load_config(cfg, env={})
    assert len(config.warnings) == 1
    warning = config.warnings[0]
    assert str(cfg) in warning and "creatio.password" in warning and "0644" in warning
    assert SECRET not in warning


def test_the_warning_stands_even_when_a_credential_wins(tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    write(creds / "creatio-password", "from-credential")
    cfg = write(tmp_path / "c.toml", MINIMAL + f'password = "{SECRET}"\n', mode=0o604)
    config = load_config(cfg, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.creatio.password is not None
    assert config.creatio.password.get_secret_value() == "from-credential"
    (warning,) = config.warnings
    assert "0604" in warning and SECRET not in warning


def test_a_private_config_with_a_secret_gets_no_warning(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL + f'password = "{SECRET}"\n', mode=0o600)
    assert load_config(cfg, env={}).warnings == ()


def test_a_readable_config_without_a_secret_gets_no_warning(tmp_path: Path) -> None:
    write(tmp_path / "password", SECRET)
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password_file = "password"\n', mode=0o644)
    assert load_config(cfg, env={}).warnings == ()


def test_a_password_file_others_can_read_gets_a_warning(tmp_path: Path) -> None:
    write(tmp_path / "password", SECRET, mode=0o640)
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password_file = "password"\n')
    (warning,) = load_config(cfg, env={}).warnings
    assert "creatio.password_file" in warning and "0640" in warning


def test_secrets_never_show_in_the_settings_repr(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL + f'password = "{SECRET}"\n')
    config = load_config(cfg, env={})
    assert SECRET not in repr(config) and SECRET not in str(config.creatio)


# --- without secrets (status, retry, submit) ----------------------------------------------------


def test_without_secrets_a_missing_password_is_not_a_problem(tmp_path: Path) -> None:
    for table in ("", 'password_file = "/nonexistent/pw"\n', 'password_file = "pw-dir"\n'):
        (tmp_path / "pw-dir").mkdir(exist_ok=True)
        cfg = write(tmp_path / "c.toml", MINIMAL + table + '[state]\ndir = "state"\n')
        with pytest.raises(ConfigError):
            load_config(cfg, env={})  # the same file still needs its password to log in
        config = load_config(cfg, env={}, secrets=False)
        assert config.creatio.password is None and config.creatio.client_secret is None
        assert config.creatio.username == "ApiUser"
        assert config.state.dir == tmp_path / "state"
        assert config.warnings == ()


def test_without_secrets_oauth2_still_needs_its_client_id_only(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[creatio]\nurl = "https://a.creatio.com"\nauth = "oauth2"\n')
    assert problems_of(cfg, env={}, secrets=False).problems == [
        'creatio.client_id: required for auth = "oauth2"'
    ]
    cfg = write(cfg, cfg.read_text() + 'client_id = "attach"\nclient_secret_file = "/nope"\n')
    creatio = load_config(cfg, env={}, secrets=False).creatio
    assert creatio.client_id == "attach" and creatio.client_secret is None


def test_without_secrets_every_other_problem_is_still_reported(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "bad.toml",
        '[creatio]\nurl = "acme"\npassword_file = "/nonexistent/pw"\nchunk_size = "lots"\n'
        'ca_bundle = "no-ca.pem"\n[daemon]\ngrace = "soon"\n[metrics]\nlisten = 1\n'
        '[[inbox]]\nname = "x"\n',
    )
    with_secrets = problems_of(cfg, env={}).problems
    without = problems_of(cfg, env={}, secrets=False).problems
    assert "creatio.password_file: cannot read /nonexistent/pw: No such file or directory" in (
        with_secrets
    )
    assert without == [p for p in with_secrets if "password" not in p]
    assert len(without) == len(with_secrets) - 1 == 8
    for key in ("url", "chunk_size", "ca_bundle", "username"):
        assert any(p.startswith(f"creatio.{key}: ") for p in without), key
    for prefix in ("daemon.grace: ", "metrics.listen: ", "inbox[0]"):
        assert any(p.startswith(prefix) for p in without), prefix


def test_without_secrets_an_inline_secret_is_dropped_and_still_warned_about(
    tmp_path: Path,
) -> None:
    cfg = write(tmp_path / "c.toml", MINIMAL + f'password = "{SECRET}"\n', mode=0o644)
    config = load_config(cfg, env={}, secrets=False)
    assert config.creatio.password is None
    assert SECRET not in repr(config)
    (warning,) = config.warnings
    assert "creatio.password" in warning and "0644" in warning


def test_without_secrets_no_secret_file_credential_or_variable_is_read(tmp_path: Path) -> None:
    """A FIFO blocks whoever opens it for reading until a writer comes: a load that opened the
    password file would hang here, and is then released and reported."""
    fifo = tmp_path / "pw.fifo"
    os.mkfifo(fifo)
    creds = tmp_path / "credentials"
    creds.mkdir()
    write(creds / "creatio-password", "")  # read, it would be the problem "is empty"
    cfg = write(tmp_path / "c.toml", MINIMAL + 'password_file = "pw.fifo"\n')
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "CREATIO_ATTACH_PASSWORD": SECRET}
    results: list[object] = []

    def load() -> None:
        try:
            results.append(load_config(cfg, env=env, secrets=False))
        except ConfigError as e:
            results.append(e)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # stuck in open(): give it a writer so that it ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(10)
        pytest.fail("load_config(secrets=False) opened the password file")
    (config,) = results
    assert isinstance(config, Config)
    assert config.creatio.password is None  # neither the credential nor the environment
    env["CREDENTIALS_DIRECTORY"] = str(creds)
    assert load_config(cfg, env=env, secrets=False).creatio.password is None
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, env=env)  # with secrets, the (empty) credential is read
    assert caught.value.problems == [
        f"creatio.password: the credential {creds / 'creatio-password'} is empty"
    ]


# --- sizes and durations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8MiB", 8 * MiB),
        ("4 MiB", 4 * MiB),
        ("512KiB", 512 * 1024),
        ("512kib", 512 * 1024),
        ("1.5GiB", 3 * 512 * MiB),
        ("10MB", 10_000_000),
        ("1kB", 1000),
        ("2G", 2 * 1024**3),
        ("100", 100),
        ("100B", 100),
        (0, 0),
        (1048576, MiB),
    ],
)
def test_sizes_parse(text: object, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "bad", ["lots", "", "4 XB", "-1MiB", "MiB", "1.2.3MB", True, 1.5, None, -1]
)
def test_bad_sizes_are_refused_with_a_readable_reason(bad: object) -> None:
    with pytest.raises(ValueError, match=r"must (be a size like \"4MiB\"|not be negative)"):
        parse_size(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("60s", 60.0),
        ("5m", 300.0),
        ("24h", 86400.0),
        ("2d", 172800.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1h 30m", 5400.0),
        ("2.5s", 2.5),
        ("90", 90.0),
        (90, 90.0),
        (0.25, 0.25),
    ],
)
def test_durations_parse(text: object, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["soon", "", "5 minutes", "m5", "-5s", True, None, -2])
def test_bad_durations_are_refused_with_a_readable_reason(bad: object) -> None:
    with pytest.raises(ValueError, match=r"must (be a duration like|not be negative)"):
        parse_duration(bad)


# --- the CLI's exit status --------------------------------------------------------------------


def _creatio_attach() -> str:
    return str(Path(sys.executable).parent / "creatio-attach")


def test_a_bad_config_exits_78_listing_every_problem_without_a_traceback(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "bad.toml",
        '[creatio]\nurl = "acme"\nchunk_size = "lots"\npassword = "' + SECRET + '"\n'
        "[metrics]\nlisten = 1\n",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREATIO_ATTACH")}
    done = subprocess.run(
        [_creatio_attach(), "check", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == EX_CONFIG, done.stderr
    assert f"creatio-attach: {cfg}: the config has 4 problems" in done.stderr
    for line in (
        '  - creatio.url: must be a URL like "https://acme.creatio.com", got "acme"',
        '  - creatio.chunk_size: must be a size like "4MiB", got "lots"',
        '  - creatio.username: required for auth = "forms"',
        "  - metrics.listen: must be a string, got 1",
    ):
        assert line in done.stderr.splitlines()
    assert "Traceback" not in done.stderr + done.stdout
    assert SECRET not in done.stderr + done.stdout
