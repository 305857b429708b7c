"""Creatio's value forms for the emulator: GUIDs, UTC datetimes, and JSON <-> stored SQLite values.

One job: turn the values a client sends (in a ``$filter`` literal or a JSON body) into the one
form the emulator stores and compares, and stored values back into JSON as Creatio serialises
them; plus quoting of schema-defined SQL identifiers. Pure functions, no I/O.
Must not import anything from the rest of ``creatio_attach`` nor starlette or sqlite3.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from .schemas import Column, ColumnType

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
GUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

# The SQLite column type each Creatio column type is stored as.
SQL_TYPES = {
    ColumnType.GUID: "TEXT",
    ColumnType.STRING: "TEXT",
    ColumnType.INTEGER: "INTEGER",
    ColumnType.FLOAT: "REAL",
    ColumnType.DATETIME: "TEXT",
    ColumnType.BOOLEAN: "INTEGER",
    ColumnType.LOOKUP: "TEXT",
}


class BadValue(ValueError):
    """A body value does not fit its column's type."""


def quote(identifier: str) -> str:
    """Quote a schema-defined identifier (never user text) for SQLite."""
    return '"' + identifier.replace('"', '""') + '"'


def normalise_datetime(text: str) -> str:
    """ISO 8601 (with ``Z``/offset, or naive = UTC, or a bare date) -> stored UTC form."""
    value = text.strip()
    if len(value) == 10:
        parsed = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
    else:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return parsed.strftime(DATETIME_FORMAT)


def normalise_guid(text: str) -> str:
    value = text.strip().strip("{}")
    if not GUID_RE.match(value):
        raise ValueError(f"not a GUID: {text!r}")
    return value.lower()


def now_iso() -> str:
    return datetime.now(UTC).strftime(DATETIME_FORMAT)


def to_sql(column: Column, value: Any) -> Any:
    """A JSON value -> the stored SQLite value for ``column`` (raises :class:`BadValue`)."""
    t = column.type
    name = column.flat_name
    if value is None:
        return None
    try:
        if t in (ColumnType.GUID, ColumnType.LOOKUP):
            if not isinstance(value, str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.Guid.")
            guid = normalise_guid(value)
            return None if guid == EMPTY_GUID else guid
        if t is ColumnType.STRING:
            if not isinstance(value, str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.String.")
            return value
        if t is ColumnType.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.Int32.")
            return int(value)
        if t is ColumnType.FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.Decimal.")
            return float(value)
        if t is ColumnType.DATETIME:
            if not isinstance(value, str):
                raise BadValue(f"Cannot convert a value of {name} to Edm.DateTimeOffset.")
            return normalise_datetime(value)
        if t is ColumnType.BOOLEAN:
            if not isinstance(value, bool):
                raise BadValue(f"Cannot convert a value of {name} to Edm.Boolean.")
            return 1 if value else 0
    except ValueError as exc:
        if isinstance(exc, BadValue):
            raise
        raise BadValue(f"Cannot convert the value of {name} to {t.edm}: {exc}") from exc
    raise BadValue(f"The property '{name}' of type {t.edm} cannot be written in a JSON body.")


def from_sql(column: Column, value: Any) -> Any:
    """A stored value -> JSON as Creatio serialises it (empty lookups as the empty GUID)."""
    t = column.type
    if t in (ColumnType.GUID, ColumnType.LOOKUP):
        return value if value is not None else EMPTY_GUID
    if t is ColumnType.STRING:
        return value if value is not None else ""
    if t is ColumnType.BOOLEAN:
        return bool(value) if value is not None else False
    if t is ColumnType.INTEGER:
        return int(value) if value is not None else 0
    if t is ColumnType.FLOAT:
        return float(value) if value is not None else 0.0
    return value  # DATETIME: ISO string or None
