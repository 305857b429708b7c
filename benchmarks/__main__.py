"""``python -m benchmarks`` (``make bench``): run the scenarios, print the report, save it.

Options: ``--scale full|tiny``, ``--only NAME`` (repeatable), ``--concurrency N`` (the
daemon's ``concurrency`` and the ideal client's threads), ``--results DIR`` (default
``bench-results``), ``--workdir DIR`` and ``--keep`` (keep the generated files). A scenario
that cannot be measured is reported as an error and the exit status is 1; a missed goal is
only reported. Imports nothing from ``creatio_attach`` but its version.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import backlog, big_file, latency, small_files
from benchmarks.baselines import curl_path, curl_version
from benchmarks.common import SCALES, BenchError, Context, ScenarioResult
from benchmarks.report import machine, print_report, save, versions

SCENARIOS: dict[str, Callable[[Context], ScenarioResult]] = {
    big_file.NAME: big_file.run,
    small_files.NAME: small_files.run,
    latency.NAME: latency.run,
    backlog.NAME: backlog.run,
}
TITLES = {
    big_file.NAME: big_file.TITLE,
    small_files.NAME: small_files.TITLE,
    latency.NAME: latency.TITLE,
    backlog.NAME: backlog.TITLE,
}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="creatio-attach benchmarks against the emulator (a report, not a test).",
    )
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument(
        "--only", action="append", choices=list(SCENARIOS), help="run this scenario (repeatable)"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--results", type=Path, default=Path("bench-results"))
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from creatio_attach import __version__

    scale = SCALES[args.scale]
    names = args.only or list(SCENARIOS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="creatio-attach-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    curl = curl_path()
    report: dict[str, Any] = {
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "scale": scale.name,
        "scale_settings": scale.__dict__,
        "concurrency": args.concurrency,
        "machine": machine(),
        "versions": versions(__version__, {"curl": curl_version(curl) if curl else "missing"}),
        "scenarios": {},
    }
    failed = False
    try:
        for name in names:
            print(f"running {name}: {TITLES[name]} ({scale.name} scale) ...", flush=True)
            ctx = Context(scale=scale, workdir=workdir, concurrency=args.concurrency)
            began = time.perf_counter()
            try:
                result = SCENARIOS[name](ctx)
            except BenchError as e:
                result = ScenarioResult(name, TITLES[name], error=str(e))
            except Exception as e:  # a bug: keep going, show where
                traceback.print_exc()
                result = ScenarioResult(name, TITLES[name], error=f"{type(e).__name__}: {e}")
            result.seconds = time.perf_counter() - began
            failed = failed or result.error is not None
            report["scenarios"][name] = result.as_json()
            if not args.keep:
                shutil.rmtree(workdir / name, ignore_errors=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report["load_average_at_end"] = list(os.getloadavg())
    report["finished_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print_report(report)
    path = save(report, args.results)
    print(f"report saved to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
