"""Checks the daemon's tables of the config and builds their settings; every problem at once.

``[[inbox]]`` tables are parsed, ``[defaults]`` merged under each, a ``preset`` turned into its
``pattern``, templates checked against the pattern's groups, and inboxes cross-checked (one
folder each; none inside another's archive, failed or unmatched folder). Each problem carries
its key path, the inbox's index and name first: ``inbox[1] (recordings).settle: ...``
(``inbox[0]`` is the first ``[[inbox]]``).

Imports from the project only the pure modules ``settings_models``, ``settings_values``,
``routing`` and ``recordings.presets`` (the presets' patterns and the recording Name fields
live there, once); never ``engine``, ``service`` or ``cli``. No I/O: whether a folder exists is for
``creatio-attach check`` to say (a daemon may be configured before a mount is there).

Precedence of an optional inbox key: the inbox's own value, else ``[defaults]``, else the
built-in default. Exceptions: a call-recording inbox takes ``settle`` (default 10 s,
``RECORDING_SETTLE``) and ``name_template`` (default: ``recordings``' own) only from itself;
``[defaults]`` does not shorten its quiet period nor give it a document's Name template.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from creatio_attach.recordings.presets import (
    name_template_problems,
    pattern_problems,
    preset_pattern,
)
from creatio_attach.routing import Rule, rule_problems
from creatio_attach.settings_models import (
    INBOX_NAME_RE,
    PRESET_NAMES,
    RECORDING_OWN_KEYS,
    RECORDING_SETTLE,
    DaemonSettings,
    InboxDefaults,
    InboxSettings,
    InboxTable,
    MatchSettings,
    MatchTable,
    MetricsSettings,
    ParentSettings,
    StateSettings,
    UnmatchedRetry,
    concrete_folder,
    folder_template_problems,
    inside,
    parse_listen,
)
from creatio_attach.settings_values import format_error, parse_duration, shown

# ---------------------------------------------------------------------------------------------
# validation and merging


def _known_keys(loc: tuple[int | str, ...]) -> list[str]:
    models: dict[tuple[int | str, ...], type[BaseModel]] = {
        (): InboxTable,
        ("parent",): ParentSettings,
        ("match",): MatchTable,
        ("unmatched_retry",): UnmatchedRetry,
    }
    model = models.get(loc)
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _defaults_known(loc: tuple[int | str, ...]) -> list[str]:
    if loc == ():
        return list(InboxDefaults.model_fields)
    return _known_keys(loc)


def validate_defaults(raw: object) -> tuple[InboxDefaults, list[str]]:
    """``[defaults]``; on problems the built-in defaults stand in (the problems are reported)."""
    if raw is None:
        return InboxDefaults(), []
    if not isinstance(raw, Mapping):
        return InboxDefaults(), [f"defaults: must be a table, got {shown(raw)}"]
    try:
        return InboxDefaults.model_validate(raw), []
    except ValidationError as e:
        problems = [
            format_error(err, prefix="defaults", known=_defaults_known) for err in e.errors()
        ]
        good = {
            k: v for k, v in raw.items() if not any(err["loc"][:1] == (k,) for err in e.errors())
        }
        try:
            return InboxDefaults.model_validate(good), problems
        except ValidationError:
            return InboxDefaults(), problems


def _label(index: int, table: Mapping[str, Any]) -> str:
    name = table.get("name")
    if isinstance(name, str) and INBOX_NAME_RE.fullmatch(name):
        return f"inbox[{index}] ({name})"
    return f"inbox[{index}]"


def validate_inboxes(
    raw: object,
    defaults: InboxDefaults,
    resolve_path: Callable[[str], Path],
) -> tuple[list[InboxSettings], list[str]]:
    """Every ``[[inbox]]``: parsed, ``defaults`` merged, cross-checked; all problems at once.

    ``resolve_path`` turns a folder as written into an absolute path (relative ones from the
    config file's folder, ``~`` expanded).
    """
    if raw is None:
        return [], []
    if not isinstance(raw, list):
        return [], []  # the file's model says "inbox: must be an array"
    problems: list[str] = []
    inboxes: list[tuple[str, InboxSettings]] = []
    invalid: set[str] = set()
    seen_names: dict[str, str] = {}
    for index, table in enumerate(raw):
        if not isinstance(table, Mapping):
            problems.append(f"inbox[{index}]: must be a table, got {shown(table)}")
            continue
        label = _label(index, table)
        name = table.get("name")
        if isinstance(name, str) and name in seen_names:
            problems.append(f"{label}.name: {name!r} is already the name of {seen_names[name]}")
        elif isinstance(name, str):
            seen_names[name] = label
        inbox, found = _validate_inbox(label, table, defaults, resolve_path)
        problems += found
        if inbox is not None:
            inboxes.append((label, inbox))
            if found:
                invalid.add(label)  # checked against the others, never used
    problems += _overlap_problems(inboxes)
    return [inbox for label, inbox in inboxes if label not in invalid], problems


def _validate_inbox(
    label: str,
    table: Mapping[str, Any],
    defaults: InboxDefaults,
    resolve_path: Callable[[str], Path],
) -> tuple[InboxSettings | None, list[str]]:
    """The inbox's settings and its problems. With problems, the settings (when they can be
    built at all) serve only the checks against the other inboxes."""
    try:
        written = InboxTable.model_validate(table)
    except ValidationError as e:
        problems = [format_error(err, prefix=label, known=_known_keys) for err in e.errors()]
        problems += _shape_problems(label, table)
        # every problem at once: the keys in error left out, the rest is checked all the same
        bad = {str(err["loc"][0]) for err in e.errors() if err["loc"]}
        rest = {k: v for k, v in table.items() if k not in bad}
        try:
            written = InboxTable.model_validate(rest)
        except ValidationError:
            return None, problems  # a key everything depends on is in error
        partial, more = _check_inbox(label, rest, written, defaults, resolve_path)
        # what only comes from leaving a key out ("parent: required with entity", template
        # fields that the pattern in error would have named) is not said
        more = [p for p in more if not any(p.startswith(f"{label}.{k}") for k in bad)]
        if bad & {"pattern", "preset"}:
            more = [p for p in more if "unknown field" not in p]
        return partial, problems + more
    return _check_inbox(label, table, written, defaults, resolve_path)


def _check_inbox(
    label: str,
    table: Mapping[str, Any],
    written: InboxTable,
    defaults: InboxDefaults,
    resolve_path: Callable[[str], Path],
) -> tuple[InboxSettings | None, list[str]]:
    problems = _shape_problems(label, table)
    recordings = written.preset is not None or (
        written.match is not None and written.entity is None and written.parent is None
    )
    values: dict[str, Any] = {}
    for key in InboxDefaults.model_fields:
        if key in written.model_fields_set:
            values[key] = getattr(written, key)
        elif key in RECORDING_OWN_KEYS and recordings:
            # a recording grows during the call, and its Name has other fields: [defaults]
            # settle and name_template (meant for documents) do not apply to it
            values[key] = RECORDING_SETTLE if key == "settle" else None
        elif key in defaults.model_fields_set:
            values[key] = getattr(defaults, key)
        else:
            values[key] = getattr(defaults, key)
    retry: UnmatchedRetry = values.pop("unmatched_retry")
    values["unmatched_retry_every"] = retry.every
    values["unmatched_retry_for"] = retry.for_

    name_template = values.get("name_template")
    if written.match is not None and written.match.name is not None:
        if "name_template" in written.model_fields_set:
            problems.append(
                f"{label}.match.name: the record Name template is given twice "
                "(name_template and match.name); keep one"
            )
        name_template = written.match.name
    values["name_template"] = name_template

    if written.preset is not None:
        pattern: re.Pattern[str] | None = preset_pattern(written.preset)
    else:
        pattern = re.compile(written.pattern) if written.pattern is not None else None
    folder = Path(os.path.normpath(resolve_path(written.folder)))
    match: MatchSettings | None = None
    if recordings:
        base = written.match or MatchTable()
        match = MatchSettings.model_validate(base.model_dump(exclude={"name"}))

    if written.entity is not None and written.parent is not None and not recordings:
        rule = Rule(
            inbox=written.name,
            pattern=pattern,
            entity=written.entity,
            parent_schema=written.parent.schema_,
            parent_where=written.parent.where,
            parent_id=written.parent.id,
            name_template=name_template,
        )
        # routing calls the record Name template "name"; in the file it is name_template
        problems += [
            f"{label}.{'name_template' + p[4:] if p.startswith('name:') else p}"
            for p in rule_problems(rule)
        ]
    elif recordings and name_template is not None:
        where = "match.name" if written.match and written.match.name else "name_template"
        problems += [f"{label}.{where}: {p}" for p in name_template_problems(name_template)]
    if recordings and written.preset is None and pattern is not None:
        problems += [f"{label}.pattern: {p}" for p in pattern_problems(pattern)]

    for key in ("archive_dir", "failed_dir", "unmatched_dir"):
        problems += folder_template_problems(f"{label}.{key}", values[key], folder)
    if values["max_size"] is not None and values["max_size"] < values["min_size"]:
        problems.append(
            f"{label}.max_size: is smaller than min_size ({values['max_size']} < "
            f"{values['min_size']} bytes)"
        )
    try:
        inbox = InboxSettings(
            name=written.name,
            folder=folder,
            pattern=pattern,
            preset=written.preset,
            entity=None if recordings else written.entity,
            parent=None if recordings else written.parent,
            match=match,
            **values,
        )
    except (TypeError, ValueError):
        if not problems:
            raise  # a valid table must make valid settings: a bug
        return None, problems  # built only for the checks against the other inboxes
    return inbox, problems


def _shape_problems(label: str, table: Mapping[str, Any]) -> list[str]:
    """What an inbox needs: ``entity`` + ``parent``, or a ``preset``, or a recording pattern."""
    has = {k for k in ("entity", "parent", "preset", "pattern", "match") if k in table}
    out: list[str] = []
    if "preset" in has:
        if "pattern" in has:
            out.append(f"{label}.pattern: give either a pattern or a preset, not both")
        for key in sorted(has & {"entity", "parent"}):
            out.append(
                f"{label}.{key}: a preset inbox finds its parent by matching calls; "
                f"drop {key}, or drop the preset"
            )
        return out
    if "entity" in has and "parent" in has:
        if "match" in has:
            out.append(
                f"{label}.match: only for call-recording inboxes (a preset, or a pattern "
                "without entity and parent)"
            )
        return out
    if "entity" in has:
        return [f"{label}.parent: required with entity"]
    if "parent" in has:
        return [f"{label}.entity: required with parent"]
    if "match" in has:
        if "pattern" not in has:
            return [f"{label}.pattern: required for a call-recording inbox without a preset"]
        return []
    return [
        f'{label}: needs entity + parent (e.g. entity = "CaseFile", parent = {{ schema = '
        f'"Case", where = {{ Number = "{{number}}" }} }}), or a preset '
        f"({', '.join(PRESET_NAMES)})"
    ]


def _overlap_problems(inboxes: Sequence[tuple[str, InboxSettings]]) -> list[str]:
    """Two inboxes on one folder, or an inbox inside another's archive/failed/unmatched."""
    out: list[str] = []
    for j, (label_j, b) in enumerate(inboxes):
        folder_b = str(b.folder)
        for i, (label_i, a) in enumerate(inboxes):
            if i < j and str(a.folder) == folder_b:
                out.append(f"{label_j}.folder: the same folder as {label_i}: {folder_b}")
            if i == j:
                continue  # an inbox inside its own folders is a problem of the template
            for kind, excluded in zip(
                ("archive_dir", "failed_dir", "unmatched_dir"), _excluded_each(a), strict=True
            ):
                if excluded is not None and inside(folder_b, excluded):
                    out.append(
                        f"{label_j}.folder: {folder_b} is inside the {kind} of {label_i} "
                        f"({excluded}); files there are never taken"
                    )
    return out


def _excluded_each(inbox: InboxSettings) -> tuple[str | None, ...]:
    """The fixed part of each folder template; None for one that cannot be expanded (an
    inbox with problems, checked against the others all the same: its template is reported)."""
    out: list[str | None] = []
    for template in (inbox.archive_dir, inbox.failed_dir, inbox.unmatched_dir):
        try:
            out.append(concrete_folder(template, inbox.folder))
        except (KeyError, ValueError, IndexError):
            out.append(None)
    return tuple(out)


def validate_state(
    raw: object, env: Mapping[str, str], resolve_path: Callable[[str], Path]
) -> StateSettings:
    """``[state] dir``, else systemd's ``$STATE_DIRECTORY`` (first entry), else the default."""
    table = raw if isinstance(raw, Mapping) else {}
    written = table.get("dir")
    if isinstance(written, str) and written.strip():
        return StateSettings(dir=Path(os.path.normpath(resolve_path(written))))
    from_systemd = env.get("STATE_DIRECTORY", "").split(":")[0].strip()
    if from_systemd:
        return StateSettings(dir=Path(from_systemd))
    return StateSettings()


def state_problems(raw: object) -> list[str]:
    if isinstance(raw, Mapping) and isinstance(raw.get("dir"), str) and not raw["dir"].strip():
        return ["state.dir: must not be empty"]
    return []


def validate_metrics(raw: object) -> tuple[MetricsSettings | None, list[str]]:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("listen"), str):
        return None, []  # absent, or its shape is reported by the file's model
    try:
        host, port = parse_listen(raw["listen"])
    except ValueError as e:
        return None, [f"metrics.listen: {e}"]
    return MetricsSettings(host=host, port=port), []


def daemon_problems(raw: object) -> list[str]:
    """Cross-checks of ``[daemon]`` (its keys one by one are checked by the file's model)."""
    table = raw if isinstance(raw, Mapping) else {}
    try:
        base = parse_duration(table.get("retry_base", DaemonSettings().retry_base))
        cap = parse_duration(table.get("retry_cap", DaemonSettings().retry_cap))
    except ValueError:
        return []  # reported by the file's model
    if cap < base:
        return [f"daemon.retry_cap: must not be less than retry_base ({cap:g} s < {base:g} s)"]
    return []
