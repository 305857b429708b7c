"""Logging: JSON lines for machines and journald, readable lines on a terminal, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from creatio_attach.log import REDACTED, get_logger, setup_logging

SECRET = "s3cr3t-value-never-logged"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    config = structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    # the configuration before the test, its processor list object included: loggers other
    # tests' modules cached on first use hold that list, and capture_logs changes it in place
    structlog.configure(**config)


def lines_of(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_json_lines_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    get_logger("daemon", inbox="cases").info("uploaded", file="a.pdf", bytes=12)
    get_logger("daemon").warning("slow")
    first, second = (json.loads(line) for line in lines_of(out))
    assert first["event"] == "uploaded"
    assert first["inbox"] == "cases" and first["file"] == "a.pdf" and first["bytes"] == 12
    assert first["level"] == "info" and first["PRIORITY"] == 6
    assert second["level"] == "warning" and second["PRIORITY"] == 4
    stamp = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0


def test_every_key_named_like_a_secret_is_redacted_at_any_depth() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    get_logger().info(
        "login",
        password=SECRET,
        client_secret=SECRET,
        access_token=SECRET,
        headers={"Cookie": SECRET, "Authorization": f"Bearer {SECRET}", "BPMCSRF": SECRET},
        attempts=[{"Set-Cookie": SECRET, "status": 200}],
        user="Supervisor",
    )
    text = out.getvalue()
    assert SECRET not in text
    line = json.loads(text)
    assert line["password"] == line["client_secret"] == line["access_token"] == REDACTED
    assert line["headers"] == {"Cookie": REDACTED, "Authorization": REDACTED, "BPMCSRF": REDACTED}
    assert line["attempts"] == [{"Set-Cookie": REDACTED, "status": 200}]
    assert line["user"] == "Supervisor"


def test_standard_library_loggers_write_the_same_json() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    logging.getLogger("urllib3.connectionpool").warning("Retrying %s", "GET /0/odata")
    (line,) = (json.loads(x) for x in lines_of(out))
    assert line["event"] == "Retrying GET /0/odata"
    assert line["logger"] == "urllib3.connectionpool"
    assert line["level"] == "warning" and line["PRIORITY"] == 4


def test_under_systemd_each_line_starts_with_the_journald_priority() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={"JOURNAL_STREAM": "8:12345"})
    get_logger().error("upload failed", token=SECRET)
    get_logger().info("idle")
    error_line, info_line = lines_of(out)
    assert error_line.startswith("<3>{") and info_line.startswith("<6>{")
    assert json.loads(error_line[3:])["level"] == "error"
    assert SECRET not in out.getvalue()


def test_the_level_filters_and_a_second_setup_does_not_double_lines() -> None:
    out = io.StringIO()
    setup_logging(stream=out, level="info", env={})
    setup_logging(stream=out, level="warning", env={})
    get_logger().info("hidden")
    get_logger().warning("shown")
    assert [json.loads(x)["event"] for x in lines_of(out)] == ["shown"]


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging(stream=io.StringIO(), level="chatty", env={})


def test_exceptions_keep_their_traceback_in_json() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        get_logger().exception("bug")
    line = json.loads(out.getvalue())
    assert "RuntimeError: disk on fire" in line["exception"] and "Traceback" in line["exception"]


def test_readable_coloured_lines_on_a_terminal() -> None:
    controller, terminal = pty.openpty()
    with os.fdopen(terminal, "w", encoding="utf-8", closefd=True) as tty:
        setup_logging(stream=tty, env={})
        get_logger("cli").info("uploaded", file="a.pdf", password=SECRET)
        tty.flush()
        raw = os.read(controller, 65536).decode("utf-8")
    os.close(controller)
    assert "\x1b[" in raw  # colours
    plain = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    assert "uploaded" in plain and "file=a.pdf" in plain and "[info" in plain
    assert not plain.lstrip().startswith("{")
    assert SECRET not in raw and REDACTED in plain


def test_json_can_be_forced_on_a_terminal_and_no_colour_is_honoured() -> None:
    controller, terminal = pty.openpty()
    with os.fdopen(terminal, "w", encoding="utf-8", closefd=True) as tty:
        setup_logging(stream=tty, json=True, env={})
        get_logger().info("forced")
        tty.flush()
        forced = os.read(controller, 65536).decode("utf-8")
        setup_logging(stream=tty, env={"NO_COLOR": "1"})
        get_logger().info("plain")
        tty.flush()
        plain = os.read(controller, 65536).decode("utf-8")
    os.close(controller)
    assert json.loads(forced.strip())["event"] == "forced"
    assert "plain" in plain and "\x1b[" not in plain


def test_a_logger_in_use_before_a_second_setup_follows_it() -> None:
    """Loggers are cached on first use: a module's logger made and used under the first
    setup still writes where, how and at the level the second setup says."""
    module_log = structlog.get_logger(component="engine")  # like a module-level logger
    first, second = io.StringIO(), io.StringIO()
    setup_logging(stream=first, level="info", env={})
    module_log.info("one", file="a.pdf")
    setup_logging(stream=second, level="warning", json=True, env={"JOURNAL_STREAM": "8:1"})
    module_log.info("hidden")
    module_log.warning("two", token=SECRET)
    assert [json.loads(x)["event"] for x in lines_of(first)] == ["one"]
    (line,) = lines_of(second)
    assert line.startswith("<4>{")
    fields = json.loads(line[3:])
    assert fields["event"] == "two" and fields["component"] == "engine"
    assert fields["token"] == REDACTED and SECRET not in second.getvalue()
    with structlog.testing.capture_logs() as captured:
        module_log.warning("captured")
    assert [c["event"] for c in captured] == ["captured"]
    assert "captured" not in second.getvalue()


def test_secrets_in_nested_values_and_unusual_keys_are_redacted() -> None:
    out = io.StringIO()
    setup_logging(stream=out, env={})
    get_logger().info(
        "nested",
        request={"headers": {"Authorization": SECRET, "Accept": "json"}},
        items=[{"csrf": SECRET}, ("x", {"BPMCSRF": SECRET})],
        Client_Secret=SECRET,
        count=3,
    )
    line = json.loads(out.getvalue())
    assert SECRET not in out.getvalue()
    assert line["request"]["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert line["Client_Secret"] == REDACTED and line["count"] == 3
