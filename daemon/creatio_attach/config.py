"""TOML config -> validated, frozen settings; every problem reported at once; secrets resolved.

Imports from the project only ``errors``, ``settings_*``, ``inbox_config`` and
``config_secrets`` (adapters import the settings types from here); no network, no logging
set-up. The whole file is validated before anything uses it: each problem is reported as
``key.path: what is wrong`` and all of them together in one ``ConfigError`` (exit status 78), in
the manner of borgmatic's ``validate.py``.

The file's shape is ``ConfigFile`` (``extra="forbid"``: unknown tables and keys are problems).
The daemon's tables (``[state]``, ``[daemon]``, ``[defaults]``, ``[[inbox]]``, ``[metrics]``) are
modelled in ``settings_models`` and checked in ``inbox_config``; sizes, durations and the
wording of problems live in ``settings_values`` (re-exported here: ``parse_size``,
``parse_duration``, ``Size``, ``Duration``).

Secrets (``password``, ``client_secret``) are resolved while loading, by ``config_secrets``
(which documents the order: credential, secret file, inline value, environment), and their
problems are reported with all the others. No message ever shows a secret.
Commands that only use the journal (``status``, ``retry``, ``submit``) load with
``secrets=False``: no secret is required or read, every other rule still applies.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, SecretStr, Strict, ValidationError, field_validator

from creatio_attach.config_secrets import required_problems, resolve_secrets
from creatio_attach.errors import ConfigError
from creatio_attach.inbox_config import (
    daemon_problems,
    state_problems,
    validate_defaults,
    validate_inboxes,
    validate_metrics,
    validate_state,
)
from creatio_attach.settings_models import (
    DaemonSettings,
    InboxDefaults,
    InboxSettings,
    InboxTable,
    MatchSettings,
    MetricsSettings,
    MetricsTable,
    ParentSettings,
    StateSettings,
    StateTable,
)
from creatio_attach.settings_values import (
    Duration,
    KiB,
    MiB,
    Size,
    custom,
    duration_before,
    format_error,
    in_file_order,
    parse_duration,
    parse_size,
    relative_to,
    shown,
    size_before,
)

DEFAULT_CONFIG_PATH = Path("/etc/creatio-attach/config.toml")
CONFIG_ENV = "CREATIO_ATTACH_CONFIG"

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ConfigFile",
    "CreatioSettings",
    "CreatioTable",
    "DaemonSettings",
    "Duration",
    "InboxDefaults",
    "InboxSettings",
    "KiB",
    "MatchSettings",
    "MetricsSettings",
    "MiB",
    "ParentSettings",
    "Size",
    "StateSettings",
    "load_config",
    "parse_duration",
    "parse_size",
    "resolve_config_path",
]


def _check_http_url(value: object, example: str) -> str:
    if not isinstance(value, str):
        raise custom("url", f'must be a URL like "{example}", got {shown(value)}')
    text = value.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^/\s?#]+(?:/[^\s?#]*)?", text):
        raise custom("url", f'must be a URL like "{example}", got {shown(value)}')
    return text


# ---------------------------------------------------------------------------------------------
# the [creatio] table


class CreatioSettings(BaseModel):
    """How to reach and talk to one Creatio site (the ``[creatio]`` table)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str  # site root, no trailing slash, e.g. https://acme.creatio.com
    runtime: Literal["auto", "netframework", "netcore"] = "auto"
    auth: Literal["forms", "oauth2"] = "forms"
    username: str | None = None
    password: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    token_url: str | None = None  # default: cloud rule <name>-is.creatio.com/connect/token
    verify_tls: Annotated[bool, Strict()] = True  # "no" must be an error, never False
    ca_bundle: Path | None = None
    timeout: float = 60.0  # read timeout, seconds
    connect_timeout: float = 10.0
    concurrency: Annotated[int, Strict()] = 4
    chunk_threshold: int = 8 * MiB
    chunk_size: int = 4 * MiB
    verify: Literal["size", "download"] = "size"

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: object) -> str:
        return _check_http_url(value, "https://acme.creatio.com")

    @field_validator("token_url", mode="before")
    @classmethod
    def _token_url(cls, value: object) -> str | None:
        if value is None:
            return None
        return _check_http_url(value, "https://acme-is.creatio.com/connect/token")

    @field_validator("username", "client_id", mode="after")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise custom("blank", "must not be empty")
        return value

    @field_validator("timeout", "connect_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        seconds = duration_before(value)
        if seconds <= 0:
            raise custom("duration", f"must be more than 0 seconds, got {shown(value)}")
        return seconds

    @field_validator("chunk_threshold", "chunk_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        size = size_before(value)
        if size <= 0:
            raise custom("size", f"must be more than 0 bytes, got {shown(value)}")
        return size

    @field_validator("concurrency", mode="after")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        if not 1 <= value <= 64:
            raise custom("range", f"must be between 1 and 64, got {value}")
        return value


class CreatioTable(CreatioSettings):
    """The ``[creatio]`` table as written: the settings plus where secrets are read from."""

    password_file: Path | None = None
    client_secret_file: Path | None = None


class ConfigFile(BaseModel):
    """The whole file. ``defaults`` and ``inbox`` are checked key by key in ``inbox_config``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    creatio: CreatioTable
    state: StateTable = StateTable()
    daemon: DaemonSettings = DaemonSettings()
    defaults: dict[str, Any] = {}
    inbox: list[Any] = []
    metrics: MetricsTable | None = None


@dataclass(frozen=True)
class Config:
    """The validated configuration, secrets resolved, inbox defaults merged."""

    creatio: CreatioSettings
    #: the file it was read from; None when built from ``--url`` and the environment only
    path: Path | None
    #: things that work but should be fixed (e.g. a secret in a file others can read)
    warnings: tuple[str, ...] = ()
    #: ``[state]``: where the journal lives
    state: StateSettings = field(default_factory=StateSettings)
    #: ``[daemon]``: grace period, rescans, retries, health limit
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    #: ``[defaults]``: the effective defaults of the optional inbox keys
    defaults: InboxDefaults = field(default_factory=InboxDefaults)
    #: ``[[inbox]]``, in the order of the file, ``[defaults]`` already merged in
    inboxes: tuple[InboxSettings, ...] = ()
    #: ``[metrics]``; None when the table is absent (no metrics server)
    metrics: MetricsSettings | None = None

    def inbox(self, name: str) -> InboxSettings | None:
        """The inbox with this name."""
        return next((i for i in self.inboxes if i.name == name), None)


# ---------------------------------------------------------------------------------------------
# loading


def resolve_config_path(explicit: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    """``--config``, else ``$CREATIO_ATTACH_CONFIG``, else ``/etc/creatio-attach/config.toml``."""
    if explicit is not None:
        return explicit
    from_env = env.get(CONFIG_ENV, "").strip()
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


def load_config(
    path: Path | None,
    *,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] | None = None,
    secrets: bool = True,
) -> Config:
    """Read, validate and resolve the config; raise ``ConfigError`` listing every problem.

    ``path`` None means the default lookup (``resolve_config_path``); a missing file is then
    allowed when ``overrides`` give ``creatio.url`` (quick use from the command line, the
    password coming from the environment or a credential). ``overrides`` map dotted key paths
    (``"creatio.url"``, ``"creatio.username"``) to values; None values are ignored.

    ``secrets=False`` is for commands that never talk to Creatio: the password and the client
    secret are neither required nor read (no credential or secret file is opened, the
    environment is not asked for them), every other rule is checked as usual, and the result's
    ``creatio.password`` and ``creatio.client_secret`` are None, even when the file has them
    inline. The warning about a config file others can read that holds a secret still comes.
    """
    explicit = path is not None
    file = resolve_config_path(path, env)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}

    raw: dict[str, Any]
    source: Path | None = file
    if not file.exists() and not explicit and "creatio.url" in given:
        raw, source = {}, None
    else:
        raw = _read_toml(file, quick_use=overrides is not None)

    for dotted, value in given.items():
        _set_dotted(raw, dotted, value)

    where = str(source) if source else "command line"
    problems: list[str] = []
    model: ConfigFile | None = None
    try:
        model = ConfigFile.model_validate(raw)
    except ValidationError as e:
        problems.extend(_format_error(err) for err in e.errors())

    def resolve(value: str) -> Path:
        return Path(os.path.abspath(relative_to(source, value)))  # noqa: PTH100 - no symlinks resolved

    defaults, found = validate_defaults(raw.get("defaults"))
    problems += found
    inboxes, found = validate_inboxes(raw.get("inbox"), defaults, resolve)
    problems += found
    metrics, found = validate_metrics(raw.get("metrics"))
    problems += found
    problems += state_problems(raw.get("state"))
    problems += daemon_problems(raw.get("daemon"))

    table = raw.get("creatio")
    if "creatio" in raw and not isinstance(table, dict):
        table = None  # reported by pydantic
    found_secrets, secret_problems, warnings = resolve_secrets(
        table or {}, env, source, read=secrets
    )
    problems.extend(secret_problems)
    if isinstance(table, dict):
        problems.extend(required_problems(table, found_secrets, secrets=secrets))
        ca = table.get("ca_bundle")
        if isinstance(ca, str) and not relative_to(source, ca).is_file():
            problems.append(f"creatio.ca_bundle: no such file: {relative_to(source, ca)}")

    if problems or model is None:
        unique = in_file_order(list(dict.fromkeys(problems)), raw)
        count = len(unique)
        raise ConfigError(
            f"the config has {count} problem{'s' if count != 1 else ''}",
            problems=unique,
            path=where,
            hint="fix each key listed; config/example.toml documents every key",
        )

    values = model.creatio.model_dump(
        exclude={"password_file", "client_secret_file", "password", "client_secret"}
    )
    values.update(found_secrets)
    if model.creatio.ca_bundle is not None:
        values["ca_bundle"] = relative_to(source, str(model.creatio.ca_bundle))
    settings = CreatioSettings.model_validate(values)
    return Config(
        creatio=settings,
        path=source,
        warnings=tuple(warnings),
        state=validate_state(model.state.model_dump(), env, resolve),
        daemon=model.daemon,
        defaults=defaults,
        inboxes=tuple(inboxes),
        metrics=metrics,
    )


def _read_toml(file: Path, *, quick_use: bool) -> dict[str, Any]:
    """``quick_use``: the command takes ``--url`` instead of a config (the one-shot ones)."""
    hint = f"pass --config PATH or set ${CONFIG_ENV}"
    if quick_use:
        hint += ", or give --url for quick use"
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError("config file not found", path=str(file), hint=hint) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", path=str(file)) from None
    except OSError as e:
        raise ConfigError(f"cannot read the config file: {e.strerror}", path=str(file)) from e
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            "the config has 1 problem",
            problems=[f"line {line}: not UTF-8 text"],
            path=str(file),
        ) from None
    except tomllib.TOMLDecodeError as e:
        text = str(e)
        m = re.search(r"\s*\(at line (\d+), column (\d+)\)\s*$", text)
        if m:
            text = f"line {m.group(1)}, column {m.group(2)}: invalid TOML: {text[: m.start()]}"
        else:
            text = f"invalid TOML: {text}"
        raise ConfigError(
            "the config has 1 problem",
            problems=[text],
            path=str(file),
            hint="see https://toml.io for the syntax",
        ) from None


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[last] = value


_KNOWN_KEYS: dict[str, type[BaseModel]] = {
    "": ConfigFile,
    "creatio": CreatioTable,
    "state": StateTable,
    "daemon": DaemonSettings,
    "metrics": MetricsTable,
    "inbox": InboxTable,
}


def _known(loc: tuple[int | str, ...]) -> list[str]:
    model = _KNOWN_KEYS.get(".".join(str(p) for p in loc if not isinstance(p, int)))
    return [f.alias or name for name, f in model.model_fields.items()] if model else []


def _format_error(err: Mapping[str, Any]) -> str:
    """One pydantic error as ``key.path: what is wrong``; never echoes a secret."""
    return format_error(err, known=_known)
