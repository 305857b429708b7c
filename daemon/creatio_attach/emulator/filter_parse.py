"""OData ``$filter`` text -> an AST: the tokenizer and the recursive-descent parser.

One job: turn the query text into :class:`Node` trees (and split ``$orderby``/``$select``/
``$expand`` lists), raising Creatio's 400 ``Syntax error`` answers (contract section 5) for text
it cannot read. Knows nothing of schemas or SQL: type checking and compilation are ``filter.py``'s.
Must not import anything from the rest of ``creatio_attach`` nor starlette or sqlite3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


class QueryError(Exception):
    """A query Creatio would reject; ``shape`` is ``odata`` or ``aspnet`` (section 5.5)."""

    def __init__(self, status: int, message: str, shape: str = "odata") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.shape = shape


def syntax_error(message: str) -> QueryError:
    return QueryError(400, f"Syntax error: {message}")


# ---------------------------------------------------------------------------------- lexer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?(?![\w:]))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:-]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?![\w.]))
  | (?P<string>'(?:[^']|'')*')
  | (?P<ident>[A-Za-z_$][A-Za-z0-9_]*)
  | (?P<punct>[(),/])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == "'":
                raise syntax_error(f"unterminated string literal at position {pos}")
            raise syntax_error(f"unexpected character {text[pos]!r} at position {pos}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    return tokens


# ---------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Literal:
    edm: str  # Edm.Guid, Edm.String, Edm.Int32, Edm.Decimal, Edm.DateTimeOffset, Edm.Date,
    value: Any  # Edm.Boolean or "null"


@dataclass(frozen=True)
class PathExpr:
    segments: tuple[str, ...]


@dataclass(frozen=True)
class CallExpr:
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Binary:
    op: str  # eq ne gt ge lt le and or
    left: Node
    right: Node


@dataclass(frozen=True)
class NotExpr:
    operand: Node


Node = Literal | PathExpr | CallExpr | Binary | NotExpr

COMPARISONS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}
OPERATOR_KIND = {
    "eq": "Equal",
    "ne": "NotEqual",
    "gt": "GreaterThan",
    "ge": "GreaterThanOrEqual",
    "lt": "LessThan",
    "le": "LessThanOrEqual",
}
STRING_FUNCTIONS = {"contains", "startswith", "endswith"}
FUNCTIONS = STRING_FUNCTIONS | {"tolower", "toupper", "trim", "length"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise syntax_error("unexpected end of expression")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise syntax_error(f"expected {text!r} at position {tok.pos}, found {tok.text!r}")

    def at_keyword(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "ident" and tok.text in words

    def parse(self) -> Node:
        node = self.or_expr()
        tok = self.peek()
        if tok is not None:
            raise syntax_error(f"unexpected {tok.text!r} at position {tok.pos}")
        return node

    def or_expr(self) -> Node:
        node = self.and_expr()
        while self.at_keyword("or"):
            self.take()
            node = Binary("or", node, self.and_expr())
        return node

    def and_expr(self) -> Node:
        node = self.not_expr()
        while self.at_keyword("and"):
            self.take()
            node = Binary("and", node, self.not_expr())
        return node

    def not_expr(self) -> Node:
        if self.at_keyword("not"):
            self.take()
            return NotExpr(self.not_expr())
        return self.comparison()

    def comparison(self) -> Node:
        left = self.primary()
        if self.at_keyword(*COMPARISONS):
            op = self.take().text
            return Binary(op, left, self.primary())
        return left

    def primary(self) -> Node:
        tok = self.take()
        if tok.text == "(":
            node = self.or_expr()
            self.expect(")")
            return node
        if tok.kind == "guid":
            return Literal("Edm.Guid", tok.text.lower())
        if tok.kind == "datetime":
            return Literal("Edm.DateTimeOffset", tok.text)
        if tok.kind == "date":
            return Literal("Edm.Date", tok.text)
        if tok.kind == "number":
            if re.fullmatch(r"-?\d+", tok.text):
                return Literal("Edm.Int32", int(tok.text))
            return Literal("Edm.Decimal", float(tok.text))
        if tok.kind == "string":
            return Literal("Edm.String", tok.text[1:-1].replace("''", "'"))
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return Literal("Edm.Boolean", tok.text == "true")
            if tok.text == "null":
                return Literal("null", None)
            nxt = self.peek()
            if nxt is not None and nxt.text == "(":
                return self.call(tok)
            if nxt is not None and nxt.kind == "string":
                # guid'...' / datetime'...' (OData v3 spellings) are not OData 4
                raise syntax_error(
                    f"unrecognized literal {tok.text}{nxt.text} at position {tok.pos}"
                )
            segments = [tok.text]
            while (nxt := self.peek()) is not None and nxt.text == "/":
                self.take()
                seg = self.take()
                if seg.kind != "ident":
                    raise syntax_error(f"expected a property name at position {seg.pos}")
                segments.append(seg.text)
            return PathExpr(tuple(segments))
        raise syntax_error(f"unexpected {tok.text!r} at position {tok.pos}")

    def call(self, name: Token) -> Node:
        if name.text not in FUNCTIONS:
            raise QueryError(400, f"An unknown function with name '{name.text}' was found.")
        self.expect("(")
        args: list[Node] = []
        if (tok := self.peek()) is not None and tok.text != ")":
            args.append(self.or_expr())
            while (tok := self.peek()) is not None and tok.text == ",":
                self.take()
                args.append(self.or_expr())
        self.expect(")")
        return CallExpr(name.text, tuple(args))


def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` expression (raises :class:`QueryError` 400 on bad syntax)."""
    if not text.strip():
        raise syntax_error("empty $filter")
    return _Parser(text).parse()


# ---------------------------------------------------------------------------------- lists


def split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses and quotes."""
    out: list[str] = []
    depth, start, in_str = 0, 0, False
    for i, ch in enumerate(text):
        if ch == "'":
            in_str = not in_str
        elif in_str:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise syntax_error(f"unbalanced parenthesis at position {i}")
        elif ch == sep and depth == 0:
            out.append(text[start:i].strip())
            start = i + 1
    if depth != 0 or in_str:
        raise syntax_error("unbalanced parentheses or quotes")
    out.append(text[start:].strip())
    return [p for p in out if p] if len(out) > 1 or out[0] else []
