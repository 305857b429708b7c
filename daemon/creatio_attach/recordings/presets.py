"""PBX spool presets: file-name patterns, and the named groups parsed into a typed ``CallInfo``.

Pure: no I/O, no network; imports only ``errors``, ``routing`` (template rendering) and this
package's ``phones``. Must not import requests, sqlite3, watchdog or magic.

Every pattern is searched (``re.search``) in the path relative to the inbox folder, with ``/``
separators, like any inbox ``pattern``; an optional dated folder ``YYYY/MM/DD/`` in front of the
name fills ``year``/``month``/``day``. The group names shared by presets and custom patterns:

=============  =================================================================================
``uniqueid``   the PBX's call id (Asterisk/FreePBX ``1732790400.1234``, FreeSWITCH UUID);
               ``uuid`` is another name for it
``callid``     another call id (3CX's call number)
``direction``  ``in``/``out``/``internal``/``external``/... -> inbound/outbound/internal/unknown
``caller``     the calling number;  ``callee``: the called number
``date``       ``YYYYMMDD`` (or ``YYYY-MM-DD``); ``time``: ``HHMMSS`` (or ``HH-MM-SS``, ``HH:MM``);
               ``call_date``/``call_time`` are other names for them
``epoch``      the start as Unix seconds
``year``, ``month``, ``day``  from dated sub-folders
``ext``        the file extension;  ``name``: a display name (3CX)
=============  =================================================================================
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from creatio_attach.errors import ConfigError, FileRefused
from creatio_attach.routing import check_template, render

from .phones import normalise

Direction = Literal["inbound", "outbound", "internal", "unknown"]

KNOWN_GROUPS = frozenset(
    {
        "uniqueid",
        "uuid",
        "call_date",
        "call_time",
        "callid",
        "direction",
        "caller",
        "callee",
        "date",
        "time",
        "epoch",
        "year",
        "month",
        "day",
        "ext",
        "name",
    }
)
#: other names for the shared groups (``config``'s presets name the call's date and time
#: ``call_date``/``call_time`` so that they never hide the daemon's ``{date}``/``{time}``)
GROUP_ALIASES = {"uuid": "uniqueid", "call_date": "date", "call_time": "time"}
#: the groups of which a custom pattern needs at least one, or nothing can be matched
IDENTIFYING_GROUPS = frozenset({"uniqueid", "uuid", "callid", "caller", "callee"})

_DATED = r"(?:^|/)(?:(?P<year>\d{4})/(?P<month>\d{2})/(?P<day>\d{2})/)?"
_EXT = r"\.(?P<ext>[A-Za-z0-9]{1,8})$"

#: preset name -> pattern source (documented in the README, one section each)
PRESETS: dict[str, str] = {
    # MixMonitor's default: ${UNIQUEID}.wav
    "asterisk": _DATED + r"(?P<uniqueid>\d{6,}\.\d+)" + _EXT,
    # {direction}-{callee}-{caller}-{YYYYMMDD}-{HHMMSS}-{uniqueid}.{ext}
    "freepbx": _DATED + r"(?P<direction>[A-Za-z]+)-(?P<callee>[^-/]*)-(?P<caller>[^-/]*)-"
    r"(?P<date>\d{8})-(?P<time>\d{6})-(?P<uniqueid>\d+(?:\.\d+)?)" + _EXT,
    # {uuid}.{ext}
    "freeswitch": _DATED
    + r"(?P<uniqueid>[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12})"
    + _EXT,
    # [{name}]_{caller}-{callee}_{YYYYMMDDHHMMSS}({callid}).{ext}
    "3cx": _DATED + r"\[(?P<name>[^\]/]*)\]_(?P<caller>[^_/]*?)-(?P<callee>[^_/]*)_"
    r"(?P<date>\d{8})(?P<time>\d{6})\((?P<callid>[^()/]*)\)" + _EXT,
}

DIRECTIONS: dict[str, Direction] = {
    "in": "inbound",
    "inbound": "inbound",
    "incoming": "inbound",
    "q": "inbound",  # FreePBX queue
    "rg": "inbound",  # FreePBX ring group
    "out": "outbound",
    "outbound": "outbound",
    "outgoing": "outbound",
    "external": "outbound",  # FreePBX: a call leaving through a trunk
    "internal": "internal",
    "local": "internal",
}

DEFAULT_NAME = "{caller} -> {callee} {date} {time}.{ext}"
#: fields a recording's Name template may use
NAME_FIELDS = frozenset(
    {
        "caller",
        "callee",
        "caller_e164",
        "callee_e164",
        "date",
        "time",
        "ext",
        "direction",
        "uniqueid",
        "callid",
        "name",
        "matched_by",
    }
)


class TimeSettings(Protocol):
    """What parsing needs from ``[inbox.match]`` (``config.MatchSettings`` has these)."""

    @property
    def timezone(self) -> str: ...
    @property
    def country_code(self) -> str | None: ...


@dataclass(frozen=True)
class CallInfo:
    """What a recording's name (and ``submit --set`` metadata) says about its call."""

    direction: Direction = "unknown"
    caller: str = ""  # as written ("" when absent or withheld)
    callee: str = ""
    caller_e164: str = ""  # normalised (phones.normalise), "" when no number
    callee_e164: str = ""
    start: dt.datetime | None = None  # aware; the configured zone's offset at that time
    uniqueid: str = ""
    callid: str = ""
    ext: str = ""
    name: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)  # the raw groups and metadata

    @property
    def call_ids(self) -> tuple[str, ...]:
        """The ids a ``Call.IntegrationId`` may hold, most specific first, without repeats."""
        return tuple(dict.fromkeys(i for i in (self.uniqueid, self.callid) if i))

    def external(self) -> tuple[tuple[str, str], ...]:
        """(role, number) of the external party to look up, in order: the caller of an
        inbound call, the callee of an outbound one, otherwise the caller then the callee."""
        parties = {"caller": self.caller, "callee": self.callee}
        order: tuple[str, ...]
        if self.direction == "inbound":
            order = ("caller",)
        elif self.direction == "outbound":
            order = ("callee",)
        else:
            order = ("caller", "callee")
        return tuple((role, parties[role]) for role in order if parties[role])


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def preset_pattern(name: str) -> re.Pattern[str]:
    """The compiled pattern of a preset; ConfigError (with the known names) otherwise."""
    try:
        return re.compile(PRESETS[name.strip().lower()])
    except KeyError:
        raise ConfigError(
            f"unknown recording preset {name!r}",
            hint=f"use one of {', '.join(PRESETS)}, or a pattern with the same group names",
        ) from None


def pattern_problems(pattern: re.Pattern[str]) -> list[str]:
    """What is wrong with a custom recording pattern (for config validation)."""
    groups = set(pattern.groupindex)
    problems = []
    unknown = sorted(groups - KNOWN_GROUPS)
    if unknown:
        problems.append(
            f"unknown group(s) {', '.join(unknown)}; recording patterns use "
            + ", ".join(sorted(KNOWN_GROUPS))
        )
    if not groups & IDENTIFYING_GROUPS:
        problems.append("needs at least one of the groups " + ", ".join(sorted(IDENTIFYING_GROUPS)))
    return problems


def timezone_problem(name: str) -> str | None:
    """A problem with a configured time zone, or None (``local``, ``UTC``, IANA names)."""
    try:
        zone(name)
    except ConfigError as exc:
        return exc.message
    return None


def zone(name: str) -> dt.tzinfo | None:
    """``None`` for the system's local time, else the tzinfo of ``UTC`` or an IANA name."""
    text = name.strip()
    if text.lower() == "local":
        return None
    if text.upper() in ("UTC", "Z", "GMT", "ETC/UTC"):
        return dt.UTC
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown time zone {name!r}",
            hint='use "local", "UTC" or an IANA name such as "Europe/Berlin"',
        ) from None


def localize(naive: dt.datetime, timezone: str) -> dt.datetime:
    """A wall-clock time in ``timezone`` as an aware datetime.

    A time that occurs twice (clocks going back) is taken as the first occurrence; one that
    does not exist (clocks going forward) keeps the offset from before the change (zoneinfo's
    ``fold=0`` rule) - e.g. 02:30 on a spring-forward night in New York is 07:30 UTC.
    """
    tz = zone(timezone)
    if tz is None:
        return naive.replace(fold=0).astimezone()  # the C library's local time rules
    return _fixed(naive.replace(tzinfo=tz, fold=0))


def _fixed(when: dt.datetime) -> dt.datetime:
    """The same instant and wall clock with a fixed UTC offset: aware datetimes inside a
    repeated hour never compare equal across zones (PEP 495), fixed offsets always do."""
    offset = when.utcoffset()
    return when.replace(tzinfo=dt.timezone(offset)) if offset is not None else when


def _refuse(message: str) -> FileRefused:
    return FileRefused(
        message,
        reason="bad_recording_name",
        hint="check the inbox pattern's date/time groups against the PBX's file names",
    )


def _parse_date(text: str) -> dt.date:
    d = re.sub(r"\D", "", text)
    if len(d) != 8:
        raise _refuse(f"date {text!r} is not YYYYMMDD")
    try:
        return dt.date(int(d[:4]), int(d[4:6]), int(d[6:]))
    except ValueError:
        raise _refuse(f"date {text!r} is not a calendar date") from None


def _parse_time(text: str) -> dt.time:
    d = re.sub(r"\D", "", text)
    if len(d) not in (4, 6):
        raise _refuse(f"time {text!r} is not HHMMSS or HHMM")
    try:
        return dt.time(int(d[:2]), int(d[2:4]), int(d[4:6] or 0))
    except ValueError:
        raise _refuse(f"time {text!r} is not a time of day") from None


def _from_epoch(seconds: float, timezone: str) -> dt.datetime:
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    tz = zone(timezone)
    return _fixed(when.astimezone(tz)) if tz is not None else when.astimezone()


_UNIQUEID_EPOCH = re.compile(r"(\d{9,10})\.\d+")
#: epochs before this are not call start times (2001-09-09)
_MIN_EPOCH = 1_000_000_000


def _start(values: Mapping[str, str], timezone: str) -> dt.datetime | None:
    if values.get("start"):
        try:
            when = dt.datetime.fromisoformat(values["start"].strip().replace("Z", "+00:00"))
        except ValueError:
            raise _refuse(f"start {values['start']!r} is not an ISO 8601 date and time") from None
        return when if when.tzinfo else localize(when, timezone)
    if values.get("epoch"):
        try:
            return _from_epoch(float(values["epoch"]), timezone)
        except (ValueError, OverflowError, OSError):
            raise _refuse(f"epoch {values['epoch']!r} is not Unix seconds") from None
    day: dt.date | None = None
    if values.get("date"):
        day = _parse_date(values["date"])
    elif values.get("year") and values.get("month") and values.get("day"):
        day = _parse_date(values["year"] + values["month"] + values["day"])
    if day is not None and values.get("time"):
        return localize(dt.datetime.combine(day, _parse_time(values["time"])), timezone)
    # Asterisk's unique id starts with the call's start in Unix seconds
    m = _UNIQUEID_EPOCH.fullmatch(values.get("uniqueid", ""))
    if m and int(m.group(1)) >= _MIN_EPOCH:
        return _from_epoch(int(m.group(1)), timezone)
    return None


def parse_call_info(
    fields: Mapping[str, str | None],
    settings: TimeSettings,
    *,
    metadata: Mapping[str, str] | None = None,
    groups: Collection[str] | None = None,
) -> CallInfo:
    """The pattern's named groups (``match.groupdict()``), overridden by ``submit --set``
    metadata, as a ``CallInfo``. FileRefused(reason="bad_recording_name") when a date or time
    group holds something that is not one.

    ``groups``: when ``fields`` holds more than the pattern's groups (the daemon's path fields
    and its ``date``/``time`` of discovery), the names of the pattern's groups
    (``pattern.groupindex``); only those are read. ``call_date``/``call_time`` win over
    ``date``/``time``.
    """
    wanted = set(groups) if groups is not None else None
    values: dict[str, str] = {
        k: v.strip() for k, v in fields.items() if v and (wanted is None or k in wanted)
    }
    for key, value in (metadata or {}).items():
        if value is not None and str(value).strip():
            values[key.strip().lower()] = str(value).strip()
    for alias, canonical in GROUP_ALIASES.items():
        if alias in values and (canonical not in values or alias.startswith("call_")):
            values[canonical] = values[alias]
    cc = settings.country_code
    caller, callee = values.get("caller", ""), values.get("callee", "")
    caller_e164, callee_e164 = normalise(caller, cc), normalise(callee, cc)
    return CallInfo(
        direction=DIRECTIONS.get(values.get("direction", "").lower(), "unknown"),
        caller=caller if caller_e164 else "",
        callee=callee if callee_e164 else "",
        caller_e164=caller_e164,
        callee_e164=callee_e164,
        start=_start(values, settings.timezone),
        uniqueid=values.get("uniqueid", ""),
        callid=values.get("callid", ""),
        ext=values.get("ext", "").lower(),
        name=values.get("name", ""),
        fields=values,
    )


def name_fields(info: CallInfo, *, ext: str | None = None) -> dict[str, str]:
    """The fields of a recording's Name template (``NAME_FIELDS``); ``ext`` overrides the
    file name's (e.g. the extension the content calls for)."""
    start = info.start
    return {
        "caller": info.caller or "unknown",
        "callee": info.callee or "unknown",
        "caller_e164": info.caller_e164 or "unknown",
        "callee_e164": info.callee_e164 or "unknown",
        "date": start.strftime("%Y-%m-%d") if start else "",
        "time": start.strftime("%H-%M-%S") if start else "",
        "ext": (ext or info.ext or "").lower(),
        "direction": info.direction,
        "uniqueid": info.uniqueid,
        "callid": info.callid,
        "name": info.name,
        "matched_by": "",
    }


def name_template_problems(template: str) -> list[str]:
    """What is wrong with an ``[inbox.match]``-inbox Name template (config validation)."""
    return check_template(template, NAME_FIELDS)


def default_record_name(
    info: CallInfo,
    *,
    ext: str | None = None,
    template: str = DEFAULT_NAME,
    extra: Mapping[str, str] | None = None,
    matched_by: str = "",
) -> str:
    """The record's Name: ``template`` over ``name_fields`` (``{caller} -> {callee} {date}
    {time}.{ext}`` by default), spaces tidied when a part is empty.

    ``extra``: more fields under those (the daemon's ``file``, ``stem``, ``inbox``, and its
    ``date``/``time`` of discovery, used when the name gives no start time).
    ``matched_by``: the step that found the record (``Match.matched_by``), for ``{matched_by}``.
    """
    values = dict(extra or {})
    own = name_fields(info, ext=ext)
    own["matched_by"] = matched_by
    if info.start is None and values.get("date") and values.get("time"):
        own.pop("date")
        own.pop("time")
    values.update(own)
    text = render(template, values)
    text = re.sub(r" {2,}", " ", text).strip()
    return re.sub(r" +\.", ".", text).rstrip(".") or "recording"
