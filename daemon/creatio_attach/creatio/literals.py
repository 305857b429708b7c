"""Typed OData literals and filter building, checked against ``$metadata`` before any request.

A value that came from a file name can never change a filter's meaning: strings are quoted
with ``'`` doubled, GUIDs/numbers/booleans/dates are validated and written bare, and column
names must exist in ``$metadata``. Also the one URL-encoder for query strings.
Pure; must not import ``requests``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from creatio_attach.errors import CreatioRejected

from .metadata import EntityInfo, Metadata

_NUMERIC = {
    "Edm.Int16",
    "Edm.Int32",
    "Edm.Int64",
    "Edm.Byte",
    "Edm.SByte",
    "Edm.Decimal",
    "Edm.Double",
    "Edm.Single",
}
_INTEGER = {"Edm.Int16", "Edm.Int32", "Edm.Int64", "Edm.Byte", "Edm.SByte"}
_DATES = {"Edm.DateTimeOffset", "Edm.DateTime", "Edm.Date"}
_OPERATORS = {"eq", "ne", "gt", "ge", "lt", "le"}
_FUNCTIONS = {"contains", "startswith", "endswith"}


@dataclass(frozen=True)
class Condition:
    """A comparison other than equality.

    ``Condition("ge", start)``, ``Condition("contains", "55")``.
    """

    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in _OPERATORS | _FUNCTIONS:
            raise CreatioRejected(
                f"unknown filter operator {self.op!r}",
                hint=f"use one of {', '.join(sorted(_OPERATORS | _FUNCTIONS))}",
            )


def literal(value: Any, edm_type: str, column: str = "value") -> str:
    """``value`` written as an OData literal of ``edm_type``; refused when it is not one."""
    if value is None:
        return "null"
    try:
        if edm_type == "Edm.String":
            return "'" + str(value).replace("'", "''") + "'"
        if edm_type == "Edm.Guid":
            return str(uuid.UUID(str(value).strip().strip("{}")))
        if edm_type == "Edm.Boolean":
            return _boolean(value)
        if edm_type in _INTEGER:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            if isinstance(value, int | float):
                return str(int(value))
            return str(int(str(value).strip()))
        if edm_type in _NUMERIC:
            if isinstance(value, bool):
                raise ValueError(value)
            number = decimal.Decimal(str(value).strip())
            if not number.is_finite():
                raise ValueError(value)
            return format(number, "f")
        if edm_type in _DATES:
            return _date(value, edm_type)
    except (ValueError, TypeError, decimal.InvalidOperation, OverflowError):
        raise CreatioRejected(
            f"{column} must be {edm_type.removeprefix('Edm.')}, got {str(value)[:80]!r}"
        ) from None
    raise CreatioRejected(f"{column} has type {edm_type}, which cannot be filtered on")


def _boolean(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return "true"
    if text in ("false", "0", "no"):
        return "false"
    raise ValueError(value)


def _date(value: Any, edm_type: str) -> str:
    if isinstance(value, dt.datetime):
        when = value
    elif isinstance(value, dt.date):
        return value.isoformat()
    else:
        when = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    if edm_type == "Edm.Date":
        return when.date().isoformat()
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # naive values are taken as UTC, as Creatio does
    when = when.astimezone(dt.UTC)
    text = when.isoformat(timespec="milliseconds" if when.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def resolve_path(metadata: Metadata, entity: EntityInfo, column: str) -> tuple[str, str]:
    """A where-key -> (filter path, Edm type).

    ``Number`` -> ``Number``; the flat lookup ``ContactId`` or the lookup ``Contact`` ->
    ``Contact/Id`` (Creatio refuses flat lookup names in ``$filter``); ``Contact/Name`` walks
    the lookup. Unknown names are refused with the names that do exist.
    """
    parts = column.split("/")
    info = entity
    path: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        nav = part if part in info.lookups else None
        if nav is None and part.endswith("Id") and part[:-2] in info.lookups:
            nav = part[:-2]
            if last:
                return "/".join([*path, nav, "Id"]), "Edm.Guid"
        if nav is not None and not last:
            target = metadata.entity(info.lookups[nav])
            if target is None:
                raise CreatioRejected(f"{column}: lookup {nav} points at an unknown object")
            path.append(nav)
            info = target
            continue
        if nav is not None and last:
            return "/".join([*path, nav, "Id"]), "Edm.Guid"
        if last and part in info.columns:
            return "/".join([*path, part]), info.columns[part]
        known = ", ".join(sorted(set(info.columns) | set(info.lookups))[:40])
        raise CreatioRejected(
            f"{info.name} has no column {part!r} (in {column!r})",
            hint=f"columns of {info.name}: {known}",
        )
    raise CreatioRejected(f"empty column name in a filter on {entity.name}")


def build_filter(metadata: Metadata, entity: EntityInfo, where: Mapping[str, Any]) -> str:
    """``and`` of typed comparisons; a value may be a ``Condition`` or a list (``or``-chain)."""
    clauses: list[str] = []
    for column, value in where.items():
        path, edm = resolve_path(metadata, entity, column)
        clauses.append(_clause(path, edm, column, value))
    if not clauses:
        raise CreatioRejected(f"a query on {entity.name} needs at least one condition")
    return " and ".join(clauses)


def _clause(path: str, edm: str, column: str, value: Any) -> str:
    if isinstance(value, list | tuple | set | frozenset):
        if not value:
            raise CreatioRejected(f"{column}: an empty list matches nothing")
        # Creatio has no `in`; an or-chain in parentheses is the working form (contract 7b)
        return "(" + " or ".join(_clause(path, edm, column, v) for v in value) + ")"
    if isinstance(value, Condition):
        if value.op in _FUNCTIONS:
            if edm != "Edm.String":
                raise CreatioRejected(f"{column}: {value.op} works on text columns only")
            return f"{value.op}({path},{literal(value.value, edm, column)})"
        return f"{path} {value.op} {literal(value.value, edm, column)}"
    return f"{path} eq {literal(value, edm, column)}"


def check_columns(entity: EntityInfo, names: Sequence[str]) -> list[str]:
    """``$select`` names checked against ``$metadata`` (lookups as their flat ``XxxId``)."""
    out = []
    for name in names:
        if name in entity.columns:
            out.append(name)
        elif name in entity.lookups and f"{name}Id" in entity.columns:
            out.append(f"{name}Id")
        else:
            raise CreatioRejected(
                f"{entity.name} has no column {name!r}",
                hint=f"columns of {entity.name}: {', '.join(sorted(entity.columns)[:40])}",
            )
    return out


# Characters left raw in query values: OData's own syntax (quotes, parentheses, commas) and
# path separators. Everything else, '%', '#', '&', '+', '=', spaces and non-ASCII included, is
# percent-encoded, so that no value can end the parameter or the URL early.
_SAFE = "'(),/:$*-._~"


def query_string(params: Mapping[str, str | int]) -> str:
    """``$filter=Name%20eq%20'a%23b'&$top=2``: keys raw, values percent-encoded (%20 for space)."""
    return "&".join(f"{k}={quote(str(v), safe=_SAFE)}" for k, v in params.items())
