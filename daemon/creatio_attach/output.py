"""What the one-shot commands print: JSON, tables, progress bars, error lines, checklists.

Imports ``errors`` from the project and nothing else of it; ``rich`` is imported inside the
functions that draw, so that ``creatio-attach --help`` stays fast. Command output goes to
stdout; progress bars, errors and warnings go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from creatio_attach.errors import ConfigError, CreatioAttachError, ParentAmbiguous

PROG = "creatio-attach"


def print_json(data: Any, stream: TextIO | None = None) -> None:
    """Pretty JSON with a trailing newline; non-ASCII kept as is (file names)."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    out.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def error_lines(error: CreatioAttachError) -> list[str]:
    """The readable lines of an expected error: one line, each problem, the candidates, a hint.

    Messages are built by our own code and never hold a secret; this adds nothing but them.
    """
    head = f"{error.path}: {error.message}" if error.path else error.message
    lines = [f"{PROG}: {head}"]
    if isinstance(error, ConfigError):
        lines.extend(f"  - {problem}" for problem in error.problems)
    if (
        isinstance(error, ParentAmbiguous)
        and error.candidates
        and error.candidates[0] not in error.message
    ):
        lines.append("  candidates: " + ", ".join(error.candidates))
    if error.hint:
        lines.append(f"hint: {error.hint}")
    return lines


def print_error(error: CreatioAttachError, stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stderr
    out.write("\n".join(error_lines(error)) + "\n")
    out.flush()


def print_warning(text: str, stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stderr
    out.write(f"{PROG}: warning: {text}\n")
    out.flush()


def human_size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def print_table(
    columns: Sequence[tuple[str, Literal["left", "right"]]],
    rows: Sequence[Sequence[str]],
    *,
    title: str | None = None,
    stream: TextIO | None = None,
) -> None:
    """A rich table on a terminal; when piped, the same table, never wrapped or cut."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    out = stream if stream is not None else sys.stdout
    terminal = _isatty(out)
    width = None if terminal else 10_000
    console = Console(file=out, width=width, highlight=False, soft_wrap=not terminal)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD if terminal else None)
    for name, justify in columns:
        table.add_column(name, justify=justify, no_wrap=not terminal, overflow="fold")
    for row in rows:
        table.add_row(*row)
    if terminal:
        console.print(table)
    else:
        # a plain, trimmed rendering: no trailing spaces on the wide virtual console
        with console.capture() as captured:
            console.print(table)
        out.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")
        out.flush()


@contextmanager
def byte_progress(
    description: str, total: int, *, enabled: bool, stream: TextIO | None = None
) -> Iterator[Callable[[int], None] | None]:
    """A transfer bar on stderr; yields the ``progress(n)`` callback, or None when disabled."""
    out = stream if stream is not None else sys.stderr
    if not enabled or not _isatty(out):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=out),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)

        def advance(n: int) -> None:
            progress.advance(task, n)

        yield advance


@dataclass(frozen=True)
class CheckItem:
    """One line of ``creatio-attach check``: ``ok`` True/False, or None for a mere warning."""

    name: str
    ok: bool | None
    detail: str


_MARK = {True: "✓", False: "✗", None: "!"}


def print_check(item: CheckItem, stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stdout
    out.write(f"{_MARK[item.ok]} {item.name}: {item.detail}\n")
    out.flush()
