"""Routing: a file's relative path and sidecar -> what to upload where; pure, no I/O at all.

Imports only ``errors`` from the project. The caller reads the file system and the sidecar file;
this module only decides, so every rule is testable with plain strings.

Templates (``name``, ``parent.where`` values, ``parent.id``, folder templates) use ``{field}``
placeholders and ``{{``/``}}`` for literal braces. They are rendered by substitution only: a field
must be a plain name (no ``{a.b}``, ``{a[0]}``, ``{0}`` or ``{}``), with no conversion (``!r``) and
no format spec (``:>99``), and must be known. Nothing is ever evaluated.

Fields, later sources overriding earlier ones:

1. built from the path: ``path`` (relative path), ``dir`` (its folder, "" at the top), ``file``
   (the file name), ``stem``, ``ext`` (without the dot, "" if none), ``inbox``;
2. ``builtins`` given by the caller, e.g. ``date``/``time`` (the caller's clock) or a corrected
   ``file``/``ext`` when the content says the extension is wrong;
3. the pattern's named groups that took part in the match.

A sidecar (``<file>.json``) may override ``entity``, ``parent`` (``{"schema": ..., "id": ...}`` or
``{"schema": ..., "where": {...}}``, ``schema`` optional) and ``name`` for its file. Sidecar values
are literal: they are not templates.
"""

from __future__ import annotations

import functools
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from creatio_attach.errors import ConfigError, FileRefused

GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: object and column names as Creatio spells them (also keeps them safe in URLs and $filter)
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: fields every file has, whatever the caller passes
PATH_FIELDS = frozenset({"path", "dir", "file", "stem", "ext", "inbox"})
SIDECAR_SUFFIX = ".json"
SIDECAR_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class Rule:
    """How one inbox routes its files (built from an ``[[inbox]]`` config table)."""

    inbox: str
    pattern: re.Pattern[str] | None  # re.search over the relative path ('/' separators)
    entity: str  # the file object, e.g. "CaseFile", "SysFile", "UsrRealtyFile"
    parent_schema: str
    parent_where: Mapping[str, str] | None = None  # column -> template, e.g. {"Number": "{number}"}
    parent_id: str | None = None  # template, e.g. "{id}"
    name_template: str | None = None  # the record's Name; None -> the file name


@dataclass(frozen=True)
class Route:
    """The decision for one file."""

    entity: str
    parent_schema: str
    parent_where: dict[str, str] | None  # exactly one of parent_where / parent_id is set
    parent_id: str | None  # a lowercase GUID
    name: str
    fields: dict[str, str]  # every field available to the templates (named groups included)
    from_sidecar: tuple[str, ...] = field(default=())  # keys the sidecar overrode


# -- templates -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _parse(template: str) -> tuple[tuple[str, str | None], ...]:
    """(literal, field or None) pieces; ValueError says what is wrong with the template."""
    pieces: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is None:
            pieces.append((literal, None))
            continue
        if not _FIELD_RE.fullmatch(name):
            raise ValueError(
                f"{{{name}}} is not a plain field name (no attribute, index or position)"
            )
        if conversion is not None or spec:
            raise ValueError(f"field {{{name}}} may not have a conversion or format spec")
        pieces.append((literal, name))
    return tuple(pieces)


def template_fields(template: str) -> frozenset[str]:
    """The fields a template uses; ValueError when it is malformed or uses forbidden forms."""
    return frozenset(name for _, name in _parse(template) if name is not None)


def check_template(template: str, allowed: frozenset[str] | set[str]) -> list[str]:
    """Problems with ``template`` given the fields that will exist (for config validation)."""
    try:
        used = template_fields(template)
    except ValueError as exc:
        return [f"{template!r}: {exc}"]
    unknown = sorted(used - set(allowed))
    if unknown:
        return [
            f"{template!r}: unknown field(s) {', '.join(unknown)}; known: "
            + ", ".join(sorted(allowed))
        ]
    return []


def render(template: str, values: Mapping[str, str]) -> str:
    """Substitute ``values`` into ``template``; KeyError names a missing field."""
    out: list[str] = []
    for literal, name in _parse(template):
        out.append(literal)
        if name is not None:
            out.append(values[name])
    return "".join(out)


def rule_problems(rule: Rule) -> list[str]:
    """Everything wrong with a rule, each as ``key: problem`` (config validation calls this)."""
    problems: list[str] = []
    for key, name in (("entity", rule.entity), ("parent.schema", rule.parent_schema)):
        if not IDENTIFIER_RE.fullmatch(name):
            problems.append(f"{key}: {name!r} is not an object name")
    groups = set(rule.pattern.groupindex) if rule.pattern is not None else set()
    # date/time are supplied by the daemon (the local date and time of discovery)
    allowed = PATH_FIELDS | {"date", "time"} | groups
    if (rule.parent_where is None) == (rule.parent_id is None):
        problems.append("parent: give exactly one of 'where' and 'id'")
    if rule.parent_where is not None:
        if not rule.parent_where:
            problems.append("parent.where: needs at least one column")
        for column, template in rule.parent_where.items():
            if not IDENTIFIER_RE.fullmatch(column):
                problems.append(f"parent.where: {column!r} is not a column name")
            problems += [f"parent.where.{column}: {p}" for p in check_template(template, allowed)]
    if rule.parent_id is not None:
        problems += [f"parent.id: {p}" for p in check_template(rule.parent_id, allowed)]
    if rule.name_template is not None:
        problems += [f"name: {p}" for p in check_template(rule.name_template, allowed)]
    return problems


def expand_folder_template(template: str, *, folder: str, date: str) -> str:
    """Expand a folder template such as ``{folder}/.archive/{date}`` (fields: folder, date)."""
    problems = check_template(template, {"folder", "date"})
    if problems:
        raise ConfigError("bad folder template", problems=problems)
    return render(template, {"folder": folder, "date": date})


# -- sidecars --------------------------------------------------------------------------------


def sidecar_path(relative_path: str) -> str:
    """The sidecar of a file: ``<file>.json`` beside it."""
    return relative_path + SIDECAR_SUFFIX


def _refuse_sidecar(problem: str) -> FileRefused:
    return FileRefused(
        f"malformed sidecar: {problem}",
        reason="bad_sidecar",
        hint='expected JSON like {"entity": "CaseFile", "parent": {"schema": "Case", '
        '"id": "<guid>"}, "name": "Contract.pdf"}',
    )


def parse_sidecar(text: str) -> dict[str, Any]:
    """Parse and check a sidecar's JSON; FileRefused(reason="bad_sidecar") says what is wrong."""
    if len(text) > SIDECAR_MAX_BYTES:
        raise _refuse_sidecar(f"larger than {SIDECAR_MAX_BYTES} characters")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse_sidecar(
            f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except RecursionError as exc:
        raise _refuse_sidecar("nested too deeply") from exc
    _check_sidecar(doc)
    return dict(doc)


def _check_sidecar(doc: Any) -> None:
    if not isinstance(doc, dict):
        raise _refuse_sidecar(f"the top level must be an object, not {_json_type(doc)}")
    unknown = sorted(set(doc) - {"entity", "parent", "name"})
    if unknown:
        raise _refuse_sidecar(
            f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: entity, parent, name"
        )
    for key in ("entity", "name"):
        if key in doc and not (isinstance(doc[key], str) and doc[key].strip()):
            raise _refuse_sidecar(f"{key!r} must be a non-empty string, not {_json_type(doc[key])}")
    if "entity" in doc and not IDENTIFIER_RE.fullmatch(doc["entity"]):
        raise _refuse_sidecar(f"'entity' {doc['entity']!r} is not an object name")
    if "parent" not in doc:
        return
    parent = doc["parent"]
    if not isinstance(parent, dict):
        raise _refuse_sidecar(f"'parent' must be an object, not {_json_type(parent)}")
    unknown = sorted(set(parent) - {"schema", "id", "where"})
    if unknown:
        raise _refuse_sidecar(
            f"unknown key(s) in 'parent': {', '.join(map(repr, unknown))};"
            " allowed: schema, id, where"
        )
    if ("id" in parent) == ("where" in parent):
        raise _refuse_sidecar("'parent' needs exactly one of 'id' and 'where'")
    if "schema" in parent and not (
        isinstance(parent["schema"], str) and IDENTIFIER_RE.fullmatch(parent["schema"])
    ):
        raise _refuse_sidecar(f"'parent.schema' {parent['schema']!r} is not an object name")
    if "id" in parent and not isinstance(parent["id"], str):
        raise _refuse_sidecar(f"'parent.id' must be a string, not {_json_type(parent['id'])}")
    if "where" in parent:
        where = parent["where"]
        if not isinstance(where, dict) or not where:
            raise _refuse_sidecar("'parent.where' must be a non-empty object")
        for column, value in where.items():
            if not IDENTIFIER_RE.fullmatch(column):
                raise _refuse_sidecar(f"'parent.where' key {column!r} is not a column name")
            if not isinstance(value, str):
                raise _refuse_sidecar(
                    f"'parent.where.{column}' must be a string, not {_json_type(value)}"
                )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


# -- the decision ----------------------------------------------------------------------------


def clean_name(name: str) -> str:
    """A Name Creatio can store: undecodable bytes -> U+FFFD, control characters -> '_'."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return _CONTROL_RE.sub("_", text).strip()


def path_fields(relative_path: str, inbox: str) -> dict[str, str]:
    """The fields every file has, from its path relative to the inbox folder."""
    directory, _, file = relative_path.rpartition("/")
    stem, dot, ext = file.rpartition(".")
    if not dot or not stem:  # "README" or ".profile": no extension
        stem, ext = file, ""
    return dict(path=relative_path, dir=directory, file=file, stem=stem, ext=ext, inbox=inbox)


def _render_field(template: str, values: Mapping[str, str], what: str, path: str) -> str:
    try:
        return render(template, values)
    except ValueError as exc:
        message = f"{what} template {template!r}: {exc}"
        raise FileRefused(message, reason="bad_template", path=path) from exc
    except KeyError as exc:
        raise FileRefused(
            f"{what} template {template!r} names {{{exc.args[0]}}}, which this file does not "
            f"have; known: {', '.join(sorted(values))}",
            reason="bad_template",
            path=path,
        ) from exc


def _guid(value: str, path: str, source: str) -> str:
    value = value.strip()
    if not GUID_RE.fullmatch(value):
        raise FileRefused(
            f"parent id {value!r} ({source}) is not a GUID",
            reason="bad_parent_id",
            path=path,
            hint="a record Id looks like 3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        )
    return value.lower()


def route(
    rule: Rule,
    relative_path: str,
    *,
    sidecar: Mapping[str, Any] | None = None,
    builtins: Mapping[str, str] | None = None,
) -> Route:
    """Decide the file object, the parent (query or Id) and the record Name for one file.

    Raises FileRefused with reason ``no_match``, ``bad_sidecar``, ``bad_template``,
    ``bad_parent_id`` or ``bad_parent_where`` (a parent column that came out empty).
    """
    if relative_path.startswith("/") or ".." in relative_path.split("/") or not relative_path:
        raise ValueError(f"not a path relative to the inbox: {relative_path!r}")
    values = path_fields(relative_path, rule.inbox)
    values.update(builtins or {})
    if rule.pattern is not None:
        match = rule.pattern.search(relative_path)
        if match is None:
            raise FileRefused(
                f"the path does not match the inbox pattern {rule.pattern.pattern}",
                reason="no_match",
                path=relative_path,
            )
        values.update({k: v for k, v in match.groupdict().items() if v is not None})
    overridden: list[str] = []
    if sidecar is not None:
        _check_sidecar(dict(sidecar))
        overridden = sorted(sidecar)

    entity = str(sidecar["entity"]) if sidecar and "entity" in sidecar else rule.entity
    parent_schema = rule.parent_schema
    parent_where: dict[str, str] | None = None
    parent_id: str | None = None
    side_parent = sidecar.get("parent") if sidecar else None
    if isinstance(side_parent, Mapping):
        parent_schema = str(side_parent.get("schema") or parent_schema)
        if "id" in side_parent:
            parent_id = _guid(str(side_parent["id"]), relative_path, "from the sidecar")
        else:
            parent_where = {str(k): str(v) for k, v in side_parent["where"].items()}
    elif rule.parent_id is not None:
        rendered = _render_field(rule.parent_id, values, "parent id", relative_path)
        parent_id = _guid(rendered, relative_path, f"from {rule.parent_id!r}")
    elif rule.parent_where is not None:
        parent_where = {
            column: _render_field(t, values, f"parent.where.{column}", relative_path)
            for column, t in rule.parent_where.items()
        }
    else:
        raise ValueError(f"inbox {rule.inbox!r}: the rule names no parent")
    if parent_where is not None:
        empty = sorted(c for c, v in parent_where.items() if not v.strip())
        if empty or not parent_where:
            raise FileRefused(
                f"the parent query has an empty value for {', '.join(empty) or 'every column'}",
                reason="bad_parent_where",
                path=relative_path,
            )

    if sidecar and "name" in sidecar:
        name = str(sidecar["name"])
    elif rule.name_template is not None:
        name = _render_field(rule.name_template, values, "name", relative_path)
    else:
        name = values["file"]
    name = clean_name(name)
    if not name:
        message = "the record Name came out empty"
        raise FileRefused(message, reason="bad_template", path=relative_path)
    return Route(
        entity=entity,
        parent_schema=parent_schema,
        parent_where=parent_where,
        parent_id=parent_id,
        name=name,
        fields=dict(values),
        from_sidecar=tuple(overridden),
    )
