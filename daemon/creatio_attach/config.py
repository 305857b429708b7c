"""TOML config -> validated, frozen settings; every problem reported at once; secrets resolved.

Imports only ``errors`` from the project (adapters import the settings types from here); no
network, no logging set-up. The whole file is validated before anything uses it: each problem
is reported as ``key.path: what is wrong`` and all of them together in one ``ConfigError``
(exit status 78), in the manner of borgmatic's ``validate.py``.

The file's shape is ``ConfigFile`` (``extra="forbid"``: unknown tables and keys are problems).
The daemon adds its tables (``[state]``, ``[defaults]``, ``[[inbox]]``, ``[metrics]``) as fields of
``ConfigFile`` and of ``Config``; ``parse_size``/``parse_duration`` and the ``Size``/``Duration``
types are shared with them.

Secrets (``password``, ``client_secret``) are resolved here, in this order:
``$CREDENTIALS_DIRECTORY/creatio-password`` (``creatio-client-secret``), the config's
``password_file`` (``client_secret_file``), the inline value, the environment
(``CREATIO_ATTACH_PASSWORD``, ``CREATIO_ATTACH_CLIENT_SECRET``). No message ever shows a secret.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from creatio_attach.errors import ConfigError

KiB = 1024
MiB = 1024 * KiB

DEFAULT_CONFIG_PATH = Path("/etc/creatio-attach/config.toml")
CONFIG_ENV = "CREATIO_ATTACH_CONFIG"

# ---------------------------------------------------------------------------------------------
# sizes and durations ("8MiB", "5m"), shared with the inbox settings of the daemon

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": KiB,
    "kb": 1000,
    "kib": KiB,
    "m": MiB,
    "mb": 1000**2,
    "mib": MiB,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)


def _shown(value: object) -> str:
    """A value as the user wrote it, quoted like TOML, shortened."""
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + '..."'


def parse_size(value: object) -> int:
    """Bytes from ``"8MiB"``, ``"4 MiB"``, ``"512KiB"``, ``"1.5GiB"``, ``"10MB"`` or a bare int.

    Binary units (KiB, MiB, GiB, TiB; K, M, G, T) are powers of 1024, decimal ones (kB, MB, GB,
    TB) powers of 1000; case does not matter. Raises ``ValueError`` with a message for people.
    """
    if isinstance(value, bool):
        raise ValueError(f'must be a size like "4MiB", got {_shown(value)}')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return round(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ValueError(f'must be a size like "4MiB", got {_shown(value)}')


def parse_duration(value: object) -> float:
    """Seconds from ``"60s"``, ``"5m"``, ``"24h"``, ``"2d"``, ``"500ms"``, ``"1h30m"`` or a number.

    A bare number (or a string holding one) means seconds. Raises ``ValueError`` for people.
    """
    if isinstance(value, bool):
        raise ValueError(f'must be a duration like "30s" or "5m", got {_shown(value)}')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)
        if text and re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d))+\s*", text, re.I):
            return sum(
                float(n) * _DURATION_UNITS[u.lower()] for n, u in _DURATION_PART_RE.findall(text)
            )
    raise ValueError(f'must be a duration like "30s" or "5m", got {_shown(value)}')


def _size_before(value: object) -> int:
    try:
        return parse_size(value)
    except ValueError as e:
        raise PydanticCustomError("size", "{reason}", {"reason": str(e)}) from None


def _duration_before(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(e)}) from None


#: an int of bytes, written in the file as "8MiB" or a bare number
Size = Annotated[int, BeforeValidator(_size_before)]
#: float seconds, written in the file as "5m" or a bare number
Duration = Annotated[float, BeforeValidator(_duration_before)]


def _custom(kind: str, reason: str) -> PydanticCustomError:
    return PydanticCustomError(kind, "{reason}", {"reason": reason})


def _check_http_url(value: object, example: str) -> str:
    if not isinstance(value, str):
        raise _custom("url", f'must be a URL like "{example}", got {_shown(value)}')
    text = value.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^/\s?#]+(?:/[^\s?#]*)?", text):
        raise _custom("url", f'must be a URL like "{example}", got {_shown(value)}')
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
    verify_tls: bool = True
    ca_bundle: Path | None = None
    timeout: float = 60.0  # read timeout, seconds
    connect_timeout: float = 10.0
    concurrency: int = 4
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
            raise _custom("blank", "must not be empty")
        return value

    @field_validator("timeout", "connect_timeout", mode="before")
    @classmethod
    def _duration(cls, value: object) -> float:
        seconds = _duration_before(value)
        if seconds <= 0:
            raise _custom("duration", f"must be more than 0 seconds, got {_shown(value)}")
        return seconds

    @field_validator("chunk_threshold", "chunk_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        size = _size_before(value)
        if size <= 0:
            raise _custom("size", f"must be more than 0 bytes, got {_shown(value)}")
        return size

    @field_validator("concurrency", mode="after")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        if not 1 <= value <= 64:
            raise _custom("range", f"must be between 1 and 64, got {value}")
        return value


class CreatioTable(CreatioSettings):
    """The ``[creatio]`` table as written: the settings plus where secrets are read from."""

    password_file: Path | None = None
    client_secret_file: Path | None = None


class ConfigFile(BaseModel):
    """The whole file. The daemon adds ``state``, ``defaults``, ``inbox`` and ``metrics`` here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    creatio: CreatioTable


@dataclass(frozen=True)
class Config:
    """The validated configuration, secrets resolved."""

    creatio: CreatioSettings
    #: the file it was read from; None when built from ``--url`` and the environment only
    path: Path | None
    #: things that work but should be fixed (e.g. a secret in a file others can read)
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------
# loading


def resolve_config_path(explicit: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    """``--config``, else ``$CREATIO_ATTACH_CONFIG``, else ``/etc/creatio-attach/config.toml``."""
    if explicit is not None:
        return explicit
    from_env = env.get(CONFIG_ENV, "").strip()
    return Path(from_env) if from_env else DEFAULT_CONFIG_PATH


_SECRETS = {
    # key: (credential name, file key, environment variable)
    "password": ("creatio-password", "password_file", "CREATIO_ATTACH_PASSWORD"),
    "client_secret": (
        "creatio-client-secret",
        "client_secret_file",
        "CREATIO_ATTACH_CLIENT_SECRET",
    ),
}
_SECRET_KEY_RE = re.compile(r"password|secret|token|cookie|authorization", re.IGNORECASE)


def load_config(
    path: Path | None,
    *,
    env: Mapping[str, str] = os.environ,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read, validate and resolve the config; raise ``ConfigError`` listing every problem.

    ``path`` None means the default lookup (``resolve_config_path``); a missing file is then
    allowed when ``overrides`` give ``creatio.url`` (quick use from the command line, the
    password coming from the environment or a credential). ``overrides`` map dotted key paths
    (``"creatio.url"``, ``"creatio.username"``) to values; None values are ignored.
    """
    explicit = path is not None
    file = resolve_config_path(path, env)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}

    raw: dict[str, Any]
    source: Path | None = file
    if not file.exists() and not explicit and "creatio.url" in given:
        raw, source = {}, None
    else:
        raw = _read_toml(file)

    for dotted, value in given.items():
        _set_dotted(raw, dotted, value)

    where = str(source) if source else "command line"
    problems: list[str] = []
    model: ConfigFile | None = None
    try:
        model = ConfigFile.model_validate(raw)
    except ValidationError as e:
        problems.extend(_format_error(err) for err in e.errors())

    table = raw.get("creatio")
    if "creatio" in raw and not isinstance(table, dict):
        table = None  # reported by pydantic
    secrets, secret_problems, warnings = _resolve_secrets(table or {}, env, source)
    problems.extend(secret_problems)
    if isinstance(table, dict):
        problems.extend(_required(table, secrets))
        ca = table.get("ca_bundle")
        if isinstance(ca, str) and not _relative_to(source, ca).is_file():
            problems.append(f"creatio.ca_bundle: no such file: {_relative_to(source, ca)}")

    if problems or model is None:
        unique = _in_file_order(list(dict.fromkeys(problems)), raw)
        count = len(unique)
        raise ConfigError(
            f"the config has {count} problem{'s' if count != 1 else ''}",
            problems=unique,
            path=where,
            hint="fix each key listed; config/example.toml documents every key",
        )

    values = model.creatio.model_dump(exclude={"password_file", "client_secret_file"})
    values.update(secrets)
    if model.creatio.ca_bundle is not None:
        values["ca_bundle"] = _relative_to(source, str(model.creatio.ca_bundle))
    settings = CreatioSettings.model_validate(values)
    return Config(creatio=settings, path=source, warnings=tuple(warnings))


def _in_file_order(problems: list[str], raw: Mapping[str, Any]) -> list[str]:
    """Problems sorted by where their key is in the file; missing keys after, stable."""
    order: dict[str, int] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            order.setdefault(path, len(order))
            if isinstance(value, Mapping):
                walk(value, path)

    walk(raw, "")
    return sorted(problems, key=lambda p: order.get(p.split(":", 1)[0], len(order)))


def _read_toml(file: Path) -> dict[str, Any]:
    hint = f"pass --config PATH, set ${CONFIG_ENV}, or give --url for quick use"
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


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


_KNOWN_KEYS: dict[str, list[str]] = {
    "": list(ConfigFile.model_fields),
    "creatio": list(CreatioTable.model_fields),
}


def _format_error(err: Mapping[str, Any]) -> str:
    """One pydantic error as ``key.path: what is wrong``; never echoes a secret."""
    loc: tuple[int | str, ...] = tuple(err["loc"])
    key = _key_path(loc)
    kind = err["type"]
    value = err.get("input")
    secret = any(isinstance(p, str) and _SECRET_KEY_RE.search(p) for p in loc)
    got = "" if secret else f", got {_shown(value)}"
    if kind == "extra_forbidden":
        parent = _key_path(loc[:-1]) if len(loc) > 1 else ""
        known = _KNOWN_KEYS.get(parent, [])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        where = f"[{parent}]" if parent else "the top level"
        text = f"unknown key in {where}"
        if close:
            text += f' (did you mean "{close[0]}"?)'
        elif known:
            text += " (known: " + ", ".join(k for k in known) + ")"
        return f"{key}: {text}"
    if kind == "missing":
        return f"{key}: required"
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", ""))
        expected = re.sub(r"'([^']*)'", r'"\1"', expected).replace(" or ", ", ")
        return f"{key}: must be one of {expected}{got}"
    if kind in {"size", "duration", "url", "range", "blank"}:
        return f"{key}: {err['msg']}"
    if kind in {"model_type", "dict_type"}:
        return f"{key}: must be a table{got}"
    if kind.startswith("bool"):
        return f"{key}: must be true or false{got}"
    if kind.startswith("int"):
        return f"{key}: must be a whole number{got}"
    if kind.startswith("float"):
        return f"{key}: must be a number{got}"
    if kind.startswith("string") or kind == "path_type":
        return f"{key}: must be a string{got}"
    msg = str(err.get("msg", "is invalid"))
    return f"{key}: {msg[0].lower() + msg[1:] if msg else msg}{got}"


def _relative_to(source: Path | None, value: str) -> Path:
    """A path from the config: ``~`` expanded, relative ones taken from the config's folder."""
    path = Path(value).expanduser()
    if source is not None and not path.is_absolute():
        return source.parent / path
    return path


def _read_secret_file(file: Path) -> str:
    text = file.read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def _others_can_read(file: Path) -> int | None:
    """The file's mode when group or others may read it, else None."""
    try:
        mode = file.stat().st_mode
    except OSError:
        return None
    return stat.S_IMODE(mode) if mode & (stat.S_IRGRP | stat.S_IROTH) else None


def _resolve_secrets(
    table: Mapping[str, Any], env: Mapping[str, str], source: Path | None
) -> tuple[dict[str, SecretStr], list[str], list[str]]:
    """Secrets by the documented order; problems and warnings never contain their values."""
    found: dict[str, SecretStr] = {}
    problems: list[str] = []
    warnings: list[str] = []
    creds_dir = env.get("CREDENTIALS_DIRECTORY", "").strip()
    for key, (credential, file_key, env_name) in _SECRETS.items():
        inline = table.get(key)
        mode = _others_can_read(source) if source and isinstance(inline, str) and inline else None
        if mode is not None:
            # even when another source wins, the secret sits in a file others can read
            warnings.append(
                f"{source} holds a secret (creatio.{key}) and is readable by group or "
                f"others (mode {mode:04o}): chmod 600 it, or move the secret to "
                f"{file_key} or the systemd credential {credential}"
            )
        value: str | None = None
        if creds_dir and (Path(creds_dir) / credential).is_file():
            cred = Path(creds_dir) / credential
            try:
                value = _read_secret_file(cred)
            except (OSError, UnicodeDecodeError) as e:
                problems.append(f"creatio.{key}: cannot read the credential {cred}: {_why(e)}")
                continue
            if not value:
                problems.append(f"creatio.{key}: the credential {cred} is empty")
                continue
        elif isinstance(table.get(file_key), str):
            secret_file = _relative_to(source, table[file_key])
            try:
                value = _read_secret_file(secret_file)
            except (OSError, UnicodeDecodeError) as e:
                problems.append(f"creatio.{file_key}: cannot read {secret_file}: {_why(e)}")
                continue
            if not value:
                problems.append(f"creatio.{file_key}: {secret_file} is empty")
                continue
            mode = _others_can_read(secret_file)
            if mode is not None:
                warnings.append(
                    f"{secret_file} (creatio.{file_key}) is readable by group or others "
                    f"(mode {mode:04o}): chmod 600 it"
                )
        elif isinstance(table.get(key), str):
            value = table[key]
            if not value:
                problems.append(f"creatio.{key}: must not be empty")
                continue
        elif env.get(env_name):
            value = env[env_name]
        if value:
            found[key] = SecretStr(value)
    return found, problems, warnings


def _why(e: BaseException) -> str:
    if isinstance(e, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__


def _required(table: Mapping[str, Any], secrets: Mapping[str, SecretStr]) -> list[str]:
    """What the chosen ``auth`` needs, checked after the secrets are resolved."""
    auth = table.get("auth", "forms")
    out: list[str] = []
    if auth == "forms":
        if table.get("username") in (None, ""):
            out.append('creatio.username: required for auth = "forms"')
        if not {"password", "password_file"} & (set(secrets) | set(table)):
            out.append(
                'creatio.password: required for auth = "forms": set password_file, or the '
                "systemd credential creatio-password, or $CREATIO_ATTACH_PASSWORD"
            )
    elif auth == "oauth2":
        if table.get("client_id") in (None, ""):
            out.append('creatio.client_id: required for auth = "oauth2"')
        if not {"client_secret", "client_secret_file"} & (set(secrets) | set(table)):
            out.append(
                'creatio.client_secret: required for auth = "oauth2": set client_secret_file, '
                "or the systemd credential creatio-client-secret, or "
                "$CREATIO_ATTACH_CLIENT_SECRET"
            )
    return out
