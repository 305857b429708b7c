"""The daemon's settings: ``[[inbox]]``, ``[defaults]``, ``[state]``, ``[daemon]``, ``[metrics]``.

Values here are already parsed (durations in float seconds, sizes in int bytes, regexes
compiled); ``inbox_config`` builds them from the file and reports problems. Also the call-
recording ``PRESETS`` (file-name patterns of the common PBX spools) and the folder templates
(``{folder}/.archive/{date}``). Imports from the project only the pure modules
``settings_values``, ``routing`` and ``events``; never ``engine``, ``service`` or ``cli``.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from creatio_attach.events import DEFAULT_IGNORE, WatchSpec
from creatio_attach.routing import Rule, check_template
from creatio_attach.settings_values import Duration, Size, custom, shown

DEFAULT_STATE_DIR = Path("/var/lib/creatio-attach")

#: executables and scripts; checked against the detected type, never the extension
DEFAULT_DENY_TYPES: tuple[str, ...] = (
    "application/x-executable",
    "application/x-sharedlib",
    "application/x-pie-executable",
    "application/x-dosexec",
    "application/vnd.microsoft.portable-executable",
    "application/x-msdownload",
    "application/x-mach-binary",
    "application/x-msi",
    "text/x-shellscript",
    "application/x-sh",
    "text/x-msdos-batch",
    "text/x-python",
    "text/x-script.python",
    "text/x-perl",
    "text/x-php",
)

#: an inbox name: used in logs, metrics labels and the journal
INBOX_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

_DATED = r"(?:^|/)"  # the file name may sit in dated subfolders (YYYY/MM/DD/)
_EXT = r"\.(?P<ext>[A-Za-z0-9]+)$"
_UNIQUEID = r"(?P<uniqueid>\d+\.\d+)"  # Asterisk's unique id: epoch seconds, a dot, a counter


@dataclass(frozen=True)
class Preset:
    """A PBX's recording file names: a regex over the path relative to the inbox folder."""

    name: str
    layout: str  # the file name as the PBX writes it, for people
    pattern: str

    @property
    def groups(self) -> frozenset[str]:
        return frozenset(re.compile(self.pattern).groupindex)


#: ``preset = "..."`` -> the pattern it fills. Dates and times in names are ``call_date``
#: (YYYYMMDD) and ``call_time`` (HHMMSS), so they never hide the ``{date}``/``{time}`` builtins.
PRESETS: Mapping[str, Preset] = {
    p.name: p
    for p in (
        Preset("asterisk", "{uniqueid}.wav", _DATED + _UNIQUEID + _EXT),
        Preset(
            "freepbx",
            "{direction}-{callee}-{caller}-{YYYYMMDD}-{HHMMSS}-{uniqueid}.{ext}",
            _DATED + r"(?P<direction>in|out|external|internal)-(?P<callee>[^/-]*)-"
            r"(?P<caller>[^/-]*)-(?P<call_date>\d{8})-(?P<call_time>\d{6})-" + _UNIQUEID + _EXT,
        ),
        Preset(
            "freeswitch",
            "{uuid}.{ext}",
            _DATED + r"(?P<uuid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-"
            r"[0-9A-Fa-f]{12})" + _EXT,
        ),
        Preset(
            "3cx",
            "[{name}]_{caller}-{callee}_{YYYYMMDDHHMMSS}({callid}).{ext}",
            _DATED + r"\[(?P<name>[^\]/]*)\]_(?P<caller>[^/_-]*)-(?P<callee>[^/_]*)_"
            r"(?P<call_date>\d{8})(?P<call_time>\d{6})\((?P<callid>[^)/]+)\)" + _EXT,
        ),
    )
}
PresetName = Literal["asterisk", "freepbx", "freeswitch", "3cx"]  # recordings.presets.PRESETS
PRESET_NAMES: tuple[str, ...] = get_args(PresetName)
#: every group a preset can give; a custom recording pattern must have one that says the call
RECORDING_FIELDS = frozenset().union(*(p.groups for p in PRESETS.values()))
RECORDING_ID_GROUPS = frozenset({"uniqueid", "uuid", "callid", "caller", "callee"})
#: the record Name of recordings whose file names carry both numbers (freepbx, 3cx)
RECORDING_NAME_TEMPLATE = "{caller} -> {callee} {date} {time}.{ext}"
#: the quiet period of a call-recording inbox unless the inbox sets its own ``settle``
RECORDING_SETTLE = 10.0
#: optional keys a call-recording inbox takes only from its own table, never from [defaults]
RECORDING_OWN_KEYS = frozenset({"settle", "name_template"})
#: the fields a folder template may use
FOLDER_FIELDS = frozenset({"folder", "date"})

MatchStep = Literal["call_by_id", "call_by_number", "contact_by_number"]
FolderKind = Literal["archive", "failed", "unmatched"]


class _Table(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# ---------------------------------------------------------------------------------------------
# [[inbox]] parts


class ParentSettings(_Table):
    """How an inbox finds the parent record: ``where`` column templates, or an ``id`` template."""

    schema_: str = Field(alias="schema")
    id: str | None = None
    where: dict[str, str] | None = None


class MatchSettings(_Table):
    """``[inbox.match]``: the call-recording matching chain (the recordings package runs it)."""

    steps: tuple[MatchStep, ...] = ("call_by_id", "call_by_number", "contact_by_number")
    time_window: Duration = 120.0
    timezone: str = "local"
    country_code: str | None = None
    last_digits: Annotated[int, Strict()] = 9
    contact_target: Literal["ContactFile", "activity"] = "ContactFile"
    # after a Call step missed, the contact step waits this long after the call's start: the
    # CTI may write the Call row after the recording (recordings.matcher); 0 takes it at once
    call_wait: Duration = 180.0

    @field_validator("steps", mode="after")
    @classmethod
    def _steps(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise custom("invalid", "needs at least one step")
        if len(set(value)) != len(value):
            raise custom("invalid", "names a step twice")
        return value

    @field_validator("timezone", mode="after")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value in ("local", "UTC"):
            return value
        import zoneinfo  # only when an IANA name is given

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise custom(
                "invalid",
                f'must be "local", "UTC" or an IANA time zone like "Europe/Berlin", '
                f"got {shown(value)}",
            ) from None
        return value

    @field_validator("country_code", mode="before")
    @classmethod
    def _country_code(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            digits = value.strip().lstrip("+")
            if not re.fullmatch(r"[1-9]\d{0,2}", digits):
                raise custom(
                    "invalid", f'must be 1 to 3 digits like "1" or "49", got {shown(value)}'
                )
            return digits
        return value

    @field_validator("last_digits", mode="after")
    @classmethod
    def _last_digits(cls, value: int) -> int:
        if not 6 <= value <= 15:
            raise custom("range", f"must be between 6 and 15, got {value}")
        return value


class MatchTable(MatchSettings):
    """``[inbox.match]`` as written: ``name`` there is the record Name template (issue 5)."""

    name: str | None = None


class UnmatchedRetry(_Table):
    """``unmatched_retry = { every = "5m", for = "24h" }``."""

    every: Duration = 300.0
    for_: Duration = Field(86400.0, alias="for")

    @field_validator("every", mode="after")
    @classmethod
    def _every(cls, value: float) -> float:
        if value <= 0:
            raise custom("duration", f"must be more than 0 seconds, got {value:g}")
        return value


#: TOML has real booleans: "yes" is a mistake, not true
TomlBool = Annotated[bool, Strict()]


class InboxDefaults(_Table):
    """``[defaults]``: every optional inbox key, merged under each ``[[inbox]]``.

    The values here are the effective defaults (built-in ones where ``[defaults]`` is silent);
    ``model_fields_set`` tells which keys the file set.
    """

    after: Literal["archive", "delete", "keep"] = "archive"
    recursive: TomlBool = True
    archive_dir: str = "{folder}/.archive/{date}"
    failed_dir: str = "{folder}/.failed"
    unmatched_dir: str = "{folder}/.unmatched"
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    types: tuple[str, ...] = ()
    deny_types: tuple[str, ...] = DEFAULT_DENY_TYPES
    max_size: Size | None = None
    min_size: Size = 1
    settle: Duration = 2.0
    watch: Literal["auto", "inotify", "poll"] = "auto"
    poll_interval: Duration = 2.0
    duplicates: Literal["skip", "upload"] = "skip"
    name_template: str | None = None
    unmatched_retry: UnmatchedRetry = UnmatchedRetry.model_validate({})

    @field_validator("ignore", mode="after")
    @classmethod
    def _globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not g.strip() or "/" in g for g in value):
            raise custom("invalid", 'each glob must be a non-empty file name pattern like "*.tmp"')
        return value

    @field_validator("types", "deny_types", mode="after")
    @classmethod
    def _mime_globs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for glob in value:
            if glob not in ("*", "*/*") and not re.fullmatch(r"[\w.+*?-]+/[\w.+*?\[\]-]+", glob):
                raise custom("invalid", f'{shown(glob)} is not a MIME type or glob like "audio/*"')
        return value

    @field_validator("poll_interval", mode="after")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise custom("duration", f"must be more than 0 seconds, got {value:g}")
        return value

    @field_validator("name_template", mode="after")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise custom("blank", "must not be empty")
        return value


class InboxTable(InboxDefaults):
    """One ``[[inbox]]`` as written."""

    name: str
    folder: str
    pattern: str | None = None
    preset: PresetName | None = None
    entity: str | None = None
    parent: ParentSettings | None = None
    match: MatchTable | None = None

    @field_validator("name", mode="after")
    @classmethod
    def _name(cls, value: str) -> str:
        if not INBOX_NAME_RE.fullmatch(value):
            raise custom(
                "invalid",
                "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or "
                f"digit, got {shown(value)}",
            )
        return value

    @field_validator("folder", mode="after")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value.strip():
            raise custom("blank", "must not be empty")
        return value

    @field_validator("pattern", mode="after")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as e:
                raise custom("invalid", f"not a valid regular expression: {e}") from None
        return value


class InboxSettings(_Table):
    """One inbox, ``[defaults]`` merged in, every value parsed; what the daemon works from."""

    name: str
    folder: Path  # absolute (relative ones are taken from the config file's folder)
    pattern: re.Pattern[str] | None  # from ``pattern`` or filled by ``preset``
    preset: PresetName | None = None
    entity: str | None = None  # the file object; None for a call-recording inbox
    parent: ParentSettings | None = None
    after: Literal["archive", "delete", "keep"] = "archive"
    recursive: bool = True
    archive_dir: str = "{folder}/.archive/{date}"  # templates: {folder}, {date} (YYYY-MM-DD)
    failed_dir: str = "{folder}/.failed"
    unmatched_dir: str = "{folder}/.unmatched"
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    types: tuple[str, ...] = ()  # allowed MIME globs; empty = all
    deny_types: tuple[str, ...] = DEFAULT_DENY_TYPES
    max_size: int | None = None
    min_size: int = 1
    settle: float = 2.0
    watch: Literal["auto", "inotify", "poll"] = "auto"
    poll_interval: float = 2.0
    duplicates: Literal["skip", "upload"] = "skip"
    name_template: str | None = None  # the record's Name; None -> the file name
    unmatched_retry_every: float = 300.0
    unmatched_retry_for: float = 86400.0
    match: MatchSettings | None = None  # set for call-recording inboxes (and only for them)

    @property
    def is_recordings(self) -> bool:
        """A call-recording inbox: its parent comes from the matching chain."""
        return self.match is not None

    def rule(self) -> Rule | None:
        """The routing rule of an ``entity`` + ``parent`` inbox; None for a recording inbox."""
        if self.entity is None or self.parent is None:
            return None
        return Rule(
            inbox=self.name,
            pattern=self.pattern,
            entity=self.entity,
            parent_schema=self.parent.schema_,
            parent_where=self.parent.where,
            parent_id=self.parent.id,
            name_template=self.name_template,
        )

    def folder_for(self, kind: FolderKind, date: str) -> Path:
        """The archive, failed or unmatched folder for a local date ``YYYY-MM-DD``."""
        template = {
            "archive": self.archive_dir,
            "failed": self.failed_dir,
            "unmatched": self.unmatched_dir,
        }[kind]
        return Path(expand_folder(template, self.folder, date))

    def excluded_folders(self) -> tuple[Path, ...]:
        """The archive, failed and unmatched folders as concrete folders (every date at once)."""
        found = (
            concrete_folder(t, self.folder)
            for t in (self.archive_dir, self.failed_dir, self.unmatched_dir)
        )
        return tuple(Path(p) for p in dict.fromkeys(f for f in found if f is not None))

    def watch_spec(self, rescan_every: float, also_excluded: Sequence[Path] = ()) -> WatchSpec:
        """What the watcher needs for this inbox."""
        return WatchSpec(
            inbox=self.name,
            folder=self.folder,
            recursive=self.recursive,
            ignore=self.ignore,
            excluded=(*self.excluded_folders(), *also_excluded),
            mode=self.watch,
            poll_interval=self.poll_interval,
            rescan_every=rescan_every,
        )


# ---------------------------------------------------------------------------------------------
# [state], [daemon], [metrics]


class StateTable(_Table):
    dir: str | None = None


class StateSettings(_Table):
    """``[state]``: where the journal lives."""

    dir: Path = DEFAULT_STATE_DIR


class DaemonSettings(_Table):
    """``[daemon]``: shutdown, rescans, retries, health."""

    grace: Duration = 30.0
    rescan_every: Duration = 300.0  # 0 turns the periodic rescan off
    retry_base: Duration = 2.0
    retry_cap: Duration = 600.0
    unreachable_limit: Duration = 3600.0  # /healthz answers 503 after this long without Creatio

    @field_validator("retry_base", "retry_cap", "unreachable_limit", mode="after")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise custom("duration", f"must be more than 0 seconds, got {value:g}")
        return value


class MetricsTable(_Table):
    listen: str


class MetricsSettings(_Table):
    """``[metrics] listen = "127.0.0.1:9464"``: where /metrics and /healthz are served."""

    host: str  # an IPv6 address without brackets
    port: int  # 0: a free port

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"``, ``"[::1]:9464"``, ``"localhost:9464"`` -> (host, port)."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d{1,5})|([\w.-]+):(\d{1,5})", value.strip())
    if m is None:
        raise ValueError(
            f'must be HOST:PORT like "127.0.0.1:9464" or "[::1]:9464", got {shown(value)}'
        )
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError(f"port must be 0 to 65535, got {port}")
    return host, port


# ---------------------------------------------------------------------------------------------
# folder templates


def expand_folder(template: str, folder: Path, date: str) -> str:
    """``{folder}/.archive/{date}`` with the inbox folder and a date filled in, normalised."""
    values = {"folder": str(folder), "date": date}
    out = "".join(
        literal + (values[name] if name is not None else "")
        for literal, name, _, _ in string.Formatter().parse(template)
    )
    return os.path.normpath(out)


def concrete_folder(template: str, folder: Path) -> str | None:
    """The folder above every expansion: the path up to the component holding ``{date}``."""
    parts = re.split(r"[/]", template)
    for i, part in enumerate(parts):
        if "{date}" in part:
            head = "/".join(parts[:i]) or "/"
            return expand_folder(head, folder, "")
    return expand_folder(template, folder, "")


def folder_template_problems(key: str, template: str, folder: Path) -> list[str]:
    problems = [f"{key}: {p}" for p in check_template(template, FOLDER_FIELDS)]
    if problems:
        return problems
    if "{date}" in template and "{date}" not in template.split("/")[-1]:
        return [f"{key}: {{date}} may only be in the last folder of the path"]
    expanded = expand_folder(template, folder, "2026-01-31")
    concrete = concrete_folder(template, folder)
    if not Path(expanded).is_absolute():
        problems.append(f'{key}: must be an absolute path or start with "{{folder}}"')
    elif concrete is not None and inside(str(folder), concrete):
        problems.append(
            f"{key}: {template!r} would take in the inbox folder itself; give it a folder of "
            'its own, e.g. "{folder}/.archive/{date}"'
        )
    return problems


def inside(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or below it (both absolute and normalised)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")
