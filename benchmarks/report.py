"""The benchmark report: the machine and versions, a rich table of figures beside their
baselines, the goals with PASS/MISS, and the JSON file. Imports nothing from
``creatio_attach`` (the caller passes the version in).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
from rich.console import Console
from rich.table import Table


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    return {
        "nproc": os.cpu_count(),
        "ram_bytes": psutil.virtual_memory().total,
        "cpu": cpu,
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "load_average_at_start": list(os.getloadavg()),
    }


def versions(own: str, extra: dict[str, str]) -> dict[str, str]:
    out = {"creatio-attach": own}
    for name in ("requests", "watchdog", "uvicorn", "starlette", "python-magic", "psutil"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out.update(extra)
    return out


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit in ("x",) or abs(value) < 10:
        text = f"{value:.2f}"
    elif abs(value) < 1000:
        text = f"{value:.1f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}".strip() if unit and unit != "x" else text


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log or a pipe: room for the whole table
            console = Console(width=150)
    m = report["machine"]
    console.print(
        f"[bold]creatio-attach benchmarks[/bold] ({report['scale']} scale, "
        f"concurrency {report['concurrency']}) on {m['nproc']} CPUs "
        f"({m['cpu'] or 'unknown CPU'}), {m['ram_bytes'] / 2**30:.1f} GiB RAM, {m['system']}"
    )
    loads = [m.get("load_average_at_start"), report.get("load_average_at_end")]
    if all(loads):
        start, end = (f"{x[0]:.2f}" for x in loads)
        console.print(f"load average (1 min): {start} at start, {end} at the end")
    console.print(", ".join(f"{k} {v}" for k, v in report["versions"].items()))

    figures = Table(title="Figures (ratio: higher is better for creatio-attach)")
    for column in ("scenario", "measure", "creatio-attach", "baseline", "baseline is", "ratio"):
        figures.add_column(column, justify="right" if column in ("ratio",) else "left")
    goals = Table(title="Goals (issue 4; a MISS does not fail the run)")
    for column in ("scenario", "goal", "target", "measured", "result"):
        goals.add_column(column)

    for name, sc in report["scenarios"].items():
        if sc.get("error"):
            figures.add_row(name, "[red]error[/red]", sc["error"], "", "", "")
            continue
        for row in sc["rows"]:
            figures.add_row(
                name,
                row["measure"],
                _num(row["daemon"], row["unit"]),
                _num(row["baseline"], row["unit"]),
                row["baseline_name"],
                _num(row["ratio"], "x"),
            )
        for g in sc["goals"]:
            verdict = {True: "[green]PASS[/green]", False: "[red]MISS[/red]", None: "n/a"}
            goals.add_row(
                name, g["name"], g["target"], _num(g["value"], g["unit"]), verdict[g["passed"]]
            )
    console.print(figures)
    console.print(goals)
    for name, sc in report["scenarios"].items():
        for note in sc.get("notes", []):
            console.print(f"note ({name}): {note}")


def save(report: dict[str, Any], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{stamp}.json"
    n = 1
    while path.exists():  # two runs within the same second keep both reports
        path = folder / f"{stamp}-{n}.json"
        n += 1
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
