"""Values of the config file: sizes, durations, paths, and pydantic errors as ``key.path: what is
wrong``.

Shared by ``config`` (the ``[creatio]`` table, loading), ``config_secrets`` (secret files) and
``inbox_config`` (the daemon's tables), so that they speak the same units and the same error
language. Imports nothing from the project and does no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

KiB = 1024
MiB = 1024 * KiB

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
SECRET_KEY_RE = re.compile(r"password|secret|token|cookie|authorization", re.IGNORECASE)


def shown(value: object) -> str:
    """A value as the user wrote it, quoted like TOML, shortened."""
    text = f'"{value}"' if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + '..."'


def relative_to(source: Path | None, value: str) -> Path:
    """A path from the config: ``~`` expanded, relative ones taken from the config's folder."""
    path = Path(value).expanduser()
    if source is not None and not path.is_absolute():
        return source.parent / path
    return path


def parse_size(value: object) -> int:
    """Bytes from ``"8MiB"``, ``"4 MiB"``, ``"512KiB"``, ``"1.5GiB"``, ``"10MB"`` or a bare int.

    Binary units (KiB, MiB, GiB, TiB; K, M, G, T) are powers of 1024, decimal ones (kB, MB, GB,
    TB) powers of 1000; case does not matter. Raises ``ValueError`` with a message for people.
    """
    if isinstance(value, bool):
        raise ValueError(f'must be a size like "4MiB", got {shown(value)}')
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m and m.group(2).lower() in _SIZE_UNITS:
            return round(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    raise ValueError(f'must be a size like "4MiB", got {shown(value)}')


def parse_duration(value: object) -> float:
    """Seconds from ``"60s"``, ``"5m"``, ``"24h"``, ``"2d"``, ``"500ms"``, ``"1h30m"`` or a number.

    A bare number (or a string holding one) means seconds. Raises ``ValueError`` for people.
    """
    if isinstance(value, bool):
        raise ValueError(f'must be a duration like "30s" or "5m", got {shown(value)}')
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
    raise ValueError(f'must be a duration like "30s" or "5m", got {shown(value)}')


def custom(kind: str, reason: str) -> PydanticCustomError:
    """A validation error whose text is shown as it is (``kind`` is one of ``PLAIN_KINDS``)."""
    return PydanticCustomError(kind, "{reason}", {"reason": reason})


def size_before(value: object) -> int:
    try:
        return parse_size(value)
    except ValueError as e:
        raise custom("size", str(e)) from None


def duration_before(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise custom("duration", str(e)) from None


#: an int of bytes, written in the file as "8MiB" or a bare number
Size = Annotated[int, BeforeValidator(size_before)]
#: float seconds, written in the file as "5m" or a bare number
Duration = Annotated[float, BeforeValidator(duration_before)]

#: error kinds whose message is already written for people
PLAIN_KINDS = frozenset({"size", "duration", "url", "range", "blank", "invalid"})


def key_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("inbox", 1, "settle")`` -> ``inbox[1].settle``; ``prefix`` goes in front."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def format_error(
    err: Mapping[str, Any],
    *,
    prefix: str = "",
    known: Callable[[tuple[int | str, ...]], list[str]] = lambda loc: [],
) -> str:
    """One pydantic error as ``key.path: what is wrong``; never echoes a secret.

    ``prefix`` is put before the key path (``inbox[0] (cases)``); ``known(loc)`` lists the keys
    a table at ``loc`` accepts, for the "did you mean" of an unknown key.
    """
    loc: tuple[int | str, ...] = tuple(err["loc"])
    key = key_path(loc, prefix)
    kind = err["type"]
    value = err.get("input")
    secret = any(isinstance(p, str) and SECRET_KEY_RE.search(p) for p in loc)
    got = "" if secret else f", got {shown(value)}"
    if kind == "extra_forbidden":
        parent_loc = loc[:-1]
        names = known(parent_loc)
        close = (
            difflib.get_close_matches(str(loc[-1]), names, n=1)
            or [n for n in names if n.startswith(f"{loc[-1]}_")][:1]
        )
        parent = key_path(parent_loc, prefix) if parent_loc or prefix else ""
        where = f"[{parent}]" if parent else "the top level"
        text = f"unknown key in {where}"
        if close:
            text += f' (did you mean "{close[0]}"?)'
        elif names:
            text += " (known: " + ", ".join(names) + ")"
        return f"{key}: {text}"
    if kind == "missing":
        return f"{key}: required"
    if kind == "literal_error":
        expected = str(err.get("ctx", {}).get("expected", ""))
        expected = re.sub(r"'([^']*)'", r'"\1"', expected).replace(" or ", ", ")
        return f"{key}: must be one of {expected}{got}"
    if kind in PLAIN_KINDS:
        return f"{key}: {err['msg']}"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return f"{key}: must be a table{got}"
    if kind in {"list_type", "tuple_type"}:
        return f"{key}: must be an array{got}"
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


def _parent_key(path: str) -> str:
    """``inbox[1].parent.where`` -> ``inbox[1].parent`` -> ``inbox[1]`` -> ``inbox`` -> ``""``."""
    m = re.search(r"(?:\.[^.\[\]]*|\[\d+\])$", path)
    return path[: m.start()] if m else ""


def in_file_order(problems: list[str], raw: Mapping[str, Any]) -> list[str]:
    """Problems sorted by where their key is in the file, stable.

    A key that is missing sorts after the last key of the nearest table that is there
    (``inbox[0].folder: required`` right after the first inbox's keys); a key in no table
    there comes last. ``inbox[1] (name).key`` sorts as ``inbox[1].key``.
    """
    order: dict[str, int] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                child = f"{path}.{key}" if path else str(key)
                order.setdefault(child, len(order))
                walk(value, child)
        elif isinstance(node, list) and path:
            for index, value in enumerate(node):
                if isinstance(value, Mapping):
                    child = f"{path}[{index}]"
                    order.setdefault(child, len(order))
                    walk(value, child)

    walk(raw, "")
    # the last position inside each table: missing keys of that table go just after it
    last: dict[str, int] = {}
    for path, position in order.items():
        prefix = path
        while prefix:
            last[prefix] = max(last.get(prefix, -1), position)
            prefix = _parent_key(prefix)

    def place(problem: str) -> tuple[float, int]:
        key = re.sub(r" \([A-Za-z0-9_.-]*\)", "", problem.split(": ", 1)[0])
        if key in order:
            return (order[key], 0)
        prefix = key
        while prefix:
            prefix = _parent_key(prefix)
            if prefix in last:
                return (last[prefix] + 0.5, 0)
        return (len(order), 0)

    return sorted(problems, key=place)
