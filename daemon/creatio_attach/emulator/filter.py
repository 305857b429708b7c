"""OData query options for the emulator: ``$filter``, ``$orderby``, ``$select``, ``$expand``.

One job: type-check parsed queries against the schema with Creatio's errors (contract
section 5) and compile them into parameterised SQLite (values are always bound parameters,
never formatted into SQL). Tokenizing and parsing are ``filter_parse.py``'s, value forms
``values.py``'s; the names other modules use from those are re-exported here.
Must not import anything from the rest of ``creatio_attach`` nor starlette or sqlite3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .filter_parse import (
    COMPARISONS,
    OPERATOR_KIND,
    STRING_FUNCTIONS,
    Binary,
    CallExpr,
    Literal,
    Node,
    NotExpr,
    PathExpr,
    QueryError,
    parse_filter,
    split_top,
    syntax_error,
)
from .schemas import Column, ColumnType, Schema, Schemas
from .values import DATETIME_FORMAT, normalise_datetime, normalise_guid, quote

__all__ = [
    "DATETIME_FORMAT",
    "NAMESPACE",
    "Expand",
    "Node",
    "QueryError",
    "SqlQuery",
    "collection_name",
    "column_not_found",
    "no_property",
    "normalise_datetime",
    "normalise_guid",
    "parse_expand",
    "parse_filter",
    "parse_select",
    "quote",
    "syntax_error",
]

NAMESPACE = "Terrasoft.Configuration.OData"


def column_not_found(path: str, schema: Schema) -> QueryError:
    """Creatio's answer to a flat lookup column in ``$filter`` (section 5.1): HTTP 500."""
    return QueryError(500, f"Column by path {path} not found in schema {schema.name}.")


def no_property(name: str, schema: Schema) -> QueryError:
    return QueryError(
        400, f"Could not find a property named '{name}' on type '{NAMESPACE}.{schema.name}'."
    )


# ---------------------------------------------------------------------------------- SQL


@dataclass
class SqlQuery:
    """Joins and parameters collected while compiling one query's options."""

    schemas: Schemas
    schema: Schema
    joins: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    _aliases: dict[tuple[str, ...], tuple[str, Schema]] = field(default_factory=dict)

    def resolve(self, segments: tuple[str, ...], *, in_filter: bool) -> tuple[str, Column]:
        """SQL expression and column for a path (``Name``, ``Case/Id``, ``Case/Number``)."""
        full = "/".join(segments)
        alias, schema = "t0", self.schema
        for depth, nav in enumerate(segments[:-1]):
            lookup = schema.lookup(nav)
            if lookup is None or lookup.reference not in self.schemas:
                if schema.by_flat(nav) is not None or nav in self.schemas:
                    raise column_not_found(full, self.schema)
                raise no_property(nav, schema)
            last = segments[depth + 1]
            if depth == len(segments) - 2 and last == "Id":
                return f"{alias}.{quote(lookup.flat_name)}", Column(full, ColumnType.GUID)
            key = segments[: depth + 1]
            if key not in self._aliases:
                target = self.schemas[lookup.reference or ""]
                new_alias = f"t{len(self._aliases) + 1}"
                self.joins.append(
                    f"LEFT JOIN {quote(target.name)} {new_alias} "
                    f"ON {new_alias}.{quote('Id')} = {alias}.{quote(lookup.flat_name)}"
                )
                self._aliases[key] = (new_alias, target)
            alias, schema = self._aliases[key]
        name = segments[-1]
        column = schema.by_flat(name)
        if column is None:
            if schema.lookup(name) is not None:
                raise QueryError(
                    400, f"The navigation property '{name}' cannot be used as a single value."
                )
            raise no_property(name, schema)
        if column.type is ColumnType.LOOKUP and in_filter:
            raise column_not_found(full, self.schema)
        if column.type is ColumnType.BINARY:
            raise QueryError(400, f"The property '{name}' of type Edm.Stream cannot be queried.")
        return f"{alias}.{quote(column.flat_name)}", column

    # ------------------------------------------------------------------ filter compilation

    def where(self, text: str) -> str:
        node = parse_filter(text)
        sql, edm = self._compile(node)
        if edm != "Edm.Boolean":
            raise QueryError(
                400, f"The $filter expression must evaluate to a single boolean value, not {edm}."
            )
        return sql

    def _compile(self, node: Node) -> tuple[str, str]:
        if isinstance(node, Binary):
            if node.op in ("and", "or"):
                left, lt = self._compile(node.left)
                right, rt = self._compile(node.right)
                if lt != "Edm.Boolean" or rt != "Edm.Boolean":
                    raise QueryError(400, f"The operands of '{node.op}' must be Edm.Boolean.")
                return f"({left} {node.op.upper()} {right})", "Edm.Boolean"
            return self._comparison(node), "Edm.Boolean"
        if isinstance(node, NotExpr):
            inner, edm = self._compile(node.operand)
            if edm != "Edm.Boolean":
                raise QueryError(400, "The operand of 'not' must be Edm.Boolean.")
            return f"(NOT {inner})", "Edm.Boolean"
        if isinstance(node, PathExpr):
            sql, column = self.resolve(node.segments, in_filter=True)
            edm = column.type.edm
            if edm == "Edm.Boolean":
                return f"({sql} = 1)", edm
            return sql, edm
        if isinstance(node, CallExpr):
            return self._call(node)
        return self._literal(node, None)

    def _literal(self, node: Literal, against: str | None) -> tuple[str, str]:
        if node.edm == "null":
            return "NULL", "null"
        value: Any = node.value
        edm = node.edm
        if edm in ("Edm.DateTimeOffset", "Edm.Date"):
            value = normalise_datetime(str(value))
            edm = "Edm.DateTimeOffset"
        elif edm == "Edm.Boolean":
            value = 1 if value else 0
        self.params.append(value)
        return "?", edm

    def _operand(self, node: Node) -> tuple[str, str]:
        if isinstance(node, Literal):
            return self._literal(node, None)
        sql, edm = self._compile(node)
        if edm == "Edm.Boolean" and isinstance(node, PathExpr):
            sql, _ = self.resolve(node.segments, in_filter=True)
        return sql, edm

    def _comparison(self, node: Binary) -> str:
        left, lt = self._operand(node.left)
        right, rt = self._operand(node.right)
        if not _compatible(lt, rt):
            raise QueryError(
                400,
                "A binary operator with incompatible types was detected. Found operand types "
                f"'{lt}' and '{rt}' for operator kind '{OPERATOR_KIND[node.op]}'.",
            )
        if "null" in (lt, rt):
            if node.op not in ("eq", "ne"):
                raise QueryError(400, f"Operator '{node.op}' cannot be used with null.")
            other, other_type = (right, rt) if lt == "null" else (left, lt)
            if other_type == "Edm.String":
                # Creatio's text columns are never null: empty text is what "null" finds.
                if node.op == "eq":
                    return f"({other} IS NULL OR {other} = '')"
                return f"({other} IS NOT NULL AND {other} <> '')"
            return f"({other} IS {'NOT ' if node.op == 'ne' else ''}NULL)"
        return f"({left} {COMPARISONS[node.op]} {right})"

    def _call(self, node: CallExpr) -> tuple[str, str]:
        args = [self._operand(a) for a in node.args]
        if node.name in STRING_FUNCTIONS:
            if len(args) != 2 or any(edm != "Edm.String" for _, edm in args):
                raise QueryError(
                    400,
                    f"No function signature for the function with name '{node.name}' matches "
                    "the specified arguments.",
                )
            (col, _), (pattern, _) = args
            escaped = f"replace(replace(replace({pattern}, '\\', '\\\\'), '%', '\\%'), '_', '\\_')"
            like = {
                "contains": f"'%' || {escaped} || '%'",
                "startswith": f"{escaped} || '%'",
                "endswith": f"'%' || {escaped}",
            }[node.name]
            return f"({col} LIKE {like} ESCAPE '\\')", "Edm.Boolean"
        if len(args) != 1 or args[0][1] != "Edm.String":
            raise QueryError(
                400,
                f"No function signature for the function with name '{node.name}' matches "
                "the specified arguments.",
            )
        sql = args[0][0]
        if node.name == "length":
            return f"length({sql})", "Edm.Int32"
        fn = {"tolower": "lower", "toupper": "upper", "trim": "trim"}[node.name]
        return f"{fn}({sql})", "Edm.String"

    # ------------------------------------------------------------------ $orderby

    def order_by(self, text: str) -> str:
        parts: list[str] = []
        for item in split_top(text, ","):
            words = item.split()
            if not words or len(words) > 2 or (len(words) == 2 and words[1] not in ("asc", "desc")):
                raise syntax_error(f"bad $orderby item {item!r}")
            segments = tuple(words[0].split("/"))
            if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", s) for s in segments):
                raise syntax_error(f"bad $orderby item {item!r}")
            sql, _ = self.resolve(segments, in_filter=True)
            parts.append(f"{sql} {'DESC' if len(words) == 2 and words[1] == 'desc' else 'ASC'}")
        return ", ".join(parts)


_NUMERIC = {"Edm.Int32", "Edm.Int64", "Edm.Decimal", "Edm.Double"}


def _compatible(a: str, b: str) -> bool:
    if "null" in (a, b) or a == b:
        return True
    return a in _NUMERIC and b in _NUMERIC


# ---------------------------------------------------------------------------------- $select


def parse_select(text: str, schema: Schema) -> list[Column]:
    """``$select`` -> columns (flat names, ``CaseId`` included); unknown -> 400."""
    columns: list[Column] = []
    for name in split_top(text, ","):
        if name == "*":
            return [c for c in schema.stored_columns()]
        column = schema.by_flat(name)
        if column is None or not column.stored:
            raise no_property(name, schema)
        if column not in columns:
            columns.append(column)
    return columns


# ---------------------------------------------------------------------------------- $expand


@dataclass(frozen=True)
class Expand:
    """One ``$expand`` item: a lookup plus its nested ``$select``/``$expand``."""

    lookup: Column
    target: Schema
    select: list[Column] | None
    expand: list[Expand]


def parse_expand(text: str, schema: Schema, schemas: Schemas) -> list[Expand]:
    """Lookups only; a collection navigation -> 500 ``An error has occurred.`` (section 5.3)."""
    items: list[Expand] = []
    for item in split_top(text, ","):
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?", item, re.DOTALL)
        if m is None:
            raise syntax_error(f"bad $expand item {item!r}")
        name, options = m.group(1), m.group(2)
        lookup = schema.lookup(name)
        if lookup is None:
            if _is_collection(name, schema, schemas):
                raise QueryError(
                    500,
                    f"The navigation property '{name}' is a collection; expanding collections "
                    "is not supported.",
                    shape="aspnet",
                )
            raise no_property(name, schema)
        target = schemas[lookup.reference or ""]
        select: list[Column] | None = None
        nested: list[Expand] = []
        for opt in split_top(options or "", ";"):
            key, _, value = opt.partition("=")
            key = key.strip()
            if key == "$select":
                select = parse_select(value, target)
            elif key == "$expand":
                nested = parse_expand(value, target, schemas)
            else:
                raise syntax_error(f"unsupported option {key!r} inside $expand")
        items.append(Expand(lookup, target, select, nested))
    return items


def collection_name(child: Schema, lookup: Column) -> str:
    """Creatio's name for the reverse (detail) navigation: ``CaseFileCollectionByCase``."""
    return f"{child.name}CollectionBy{lookup.name}"


def _is_collection(name: str, schema: Schema, schemas: Schemas) -> bool:
    return any(
        name in (collection_name(child, lookup), child.name)
        for child, lookup in schemas.collections_of(schema.name)
    )
