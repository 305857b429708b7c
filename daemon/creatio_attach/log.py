"""structlog, set up once: JSON lines for machines and journald, readable lines on a terminal.

Imports nothing from the project. Every log record (structlog's and the standard library's,
e.g. urllib3 or uvicorn) goes through the same processors to one stream (stderr by default,
so that a command's stdout stays its output):

- timestamps in ISO 8601, UTC; ``level`` and, for journald, the syslog ``PRIORITY`` number;
- any key named like password/secret/token/cookie/authorization/csrf is redacted, at any depth;
- JSON, one object per line, when the stream is not a terminal or ``JOURNAL_STREAM`` is set
  (systemd); under systemd each line also starts with ``<N>``, the priority prefix journald
  strips and stores as the entry's priority, so ``journalctl -p warning`` works;
- coloured, aligned lines on a terminal.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

#: syslog priorities, as journald understands them
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "critical": 2}
REDACTED = "[redacted]"
_SECRET_KEY = re.compile(r"passw|secret|token|cookie|authori[sz]ation|csrf", re.IGNORECASE)
_HANDLER_NAME = "creatio-attach"


#: value types that cannot hold a secret under a key of their own (the fast path: most values)
_PLAIN = frozenset({str, int, float, bool, type(None), bytes})
#: key -> whether it names a secret (log lines use few distinct keys: asked once each)
_secret_keys: dict[str, bool] = {}
#: structlog's processor chain: always this one list object, changed in place by
#: ``setup_logging``, so loggers cached on first use follow a later reconfiguration
_PROCESSORS: list[Processor] = []


def _is_secret(key: str) -> bool:
    found = _secret_keys.get(key)
    if found is None:
        found = bool(_SECRET_KEY.search(key))
        if len(_secret_keys) < 4096:  # bounded: keys are code, not data
            _secret_keys[key] = found
    return found


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else _redact_value(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Replace the value of every key that names a secret, in nested mappings too."""
    for key, value in list(event_dict.items()):
        if _is_secret(key):
            event_dict[key] = REDACTED
        elif type(value) not in _PLAIN and isinstance(value, Mapping | list | tuple):
            event_dict[key] = _redact_value(value)
    return event_dict


def add_priority(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """``PRIORITY``: the syslog number journald and log shippers filter on."""
    level = str(event_dict.get("level", method)).lower()
    event_dict["PRIORITY"] = PRIORITIES.get(level, 6)
    return event_dict


class _JournalPrefix:
    """Wraps the JSON renderer: ``<6>{...}`` so journald takes the priority from the line."""

    def __init__(self, render: structlog.processors.JSONRenderer) -> None:
        self._render = render

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        priority = event_dict.get("PRIORITY", 6)
        line = self._render(logger, method, event_dict)
        text = line.decode() if isinstance(line, bytes) else line
        return f"<{priority}>{text}"


def _wants_json(stream: TextIO, env: Mapping[str, str]) -> bool:
    if env.get("JOURNAL_STREAM"):
        return True
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return True


def setup_logging(
    *,
    json: bool | None = None,
    level: str = "info",
    stream: TextIO | None = None,
    env: Mapping[str, str] = os.environ,
) -> None:
    """Configure structlog and the standard library's logging; calling it again reconfigures.

    ``json`` None chooses by where the lines go (see the module docstring). ``level`` is a
    name: debug, info, warning, error. ``stream`` defaults to stderr.
    """
    out = stream if stream is not None else sys.stderr
    as_json = _wants_json(out, env) if json is None else json
    journald = as_json and bool(env.get("JOURNAL_STREAM"))
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Processor
    if as_json:
        json_renderer = structlog.processors.JSONRenderer(sort_keys=False, default=str)
        renderer = _JournalPrefix(json_renderer) if journald else json_renderer
        tail: list[Processor] = [
            add_priority,
            structlog.processors.format_exc_info,
            structlog.processors.UnicodeDecoder(),
        ]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=_colour_ok(out, env))
        tail = []

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tail,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)

    # Loggers are cached on first use (a module's ``get_logger()`` proxy otherwise builds a
    # new logger, walking the stack for its name, on every line). A cached logger keeps the
    # processor list it was built with, so the list is one object changed in place; the
    # stream, level and renderer live in the standard library handler set above, which every
    # logger reaches at call time: calling this again reconfigures loggers already in use.
    _PROCESSORS[:] = [
        structlog.stdlib.filter_by_level,
        *shared,
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]
    structlog.configure(
        processors=_PROCESSORS,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def _colour_ok(stream: TextIO, env: Mapping[str, str]) -> bool:
    if env.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger; ``initial`` key/values are bound to every line it writes."""
    logger = structlog.stdlib.get_logger(name)
    return logger.bind(**initial) if initial else logger
