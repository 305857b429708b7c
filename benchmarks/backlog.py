"""Scenario ``backlog``: many files (50,000 at full scale) already in the inbox at start.

The files (seeded, distinct, 4 KiB) are written before the daemon starts and dated one hour
back, as a backlog left while the daemon was stopped would be. Measured from the daemon's
process start: the time until the emulator's request log shows the first successful
``PUT .../Data`` (polled every 20 ms), and the daemon's peak resident memory (with children,
sampled every 50 ms) from its start until every file is stored or until ``backlog_window``
seconds after the first upload, whichever comes first; the uploads done by then are counted.

Baseline: the same daemon, fresh state and store, with a single file present at start (what
start-up costs without a backlog). For a slow start, the JSON details also give when the
daemon's own log says it was logged in, watching, had uploaded its first file, and was ready
(after its first scan), in seconds from its process start. Imports nothing from
``creatio_attach``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import (
    BenchError,
    Context,
    Row,
    ScenarioResult,
    mb,
    ratio,
    seconds_since,
    wait_until,
    write_files,
)
from benchmarks.processes import (
    Daemon,
    Emulator,
    RssSampler,
    UploadWatch,
)

NAME = "backlog"
TITLE = "files already present at start"
AGE = 3600.0


#: the daemon's log lines whose first appearance is reported (JSON lines, ``event`` key)
MILESTONES = ("creatio.login_ok", "inbox watch mode", "file.uploaded", "daemon.ready")


@dataclass(frozen=True)
class Observed:
    first_upload_s: float
    peak_rss: int
    uploads: int
    observed_s: float  # from the first upload to the end of the observation
    milestones_s: dict[str, float]  # MILESTONES from the daemon's log, from its process start


def _milestones(log: Path, started_at: float) -> dict[str, float]:
    """Seconds from ``started_at`` (epoch) to the first log line of each of ``MILESTONES``."""
    found: dict[str, float] = {}
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        event = entry.get("event") if isinstance(entry, dict) else None
        if event in MILESTONES and event not in found and "timestamp" in entry:
            when = dt.datetime.fromisoformat(str(entry["timestamp"]).replace("Z", "+00:00"))
            found[event] = round(when.timestamp() - started_at, 3)
        if len(found) == len(MILESTONES):
            break
    return found


def _backlog(inbox: Path, count: int, size: int, seed: int) -> None:
    names = [f"SR1_{i:06d}.bin" for i in range(count)]
    write_files(inbox, names, size, seed)
    old = time.time() - AGE
    for name in names:
        os.utime(inbox / name, (old, old))


def _observe(ctx: Context, emulator: Emulator, root: Path, count: int) -> Observed:
    daemon = Daemon(root / "daemon", emulator.url, root / "inbox", concurrency=ctx.concurrency)
    watch = UploadWatch(emulator)
    start = time.perf_counter()
    started_at = time.time()
    proc = daemon.start()
    sampler = RssSampler(proc.pid).start()
    try:

        def first() -> bool:
            watch.poll()
            return watch.uploads >= 1

        wait_until(first, timeout=ctx.scale.timeout, what="the first upload", alive=daemon.failures)
        first_s = seconds_since(start)
        until = time.perf_counter() + ctx.scale.backlog_window
        while watch.uploads < count and time.perf_counter() < until:
            if why := daemon.failures():
                raise BenchError(f"backlog: {why}")
            time.sleep(0.1)
            watch.poll()
        observed_s = seconds_since(start) - first_s
    finally:
        daemon.stop()
        peak = sampler.stop()
    return Observed(first_s, peak, watch.uploads, observed_s, _milestones(daemon.log, started_at))


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE)
    n, size = ctx.scale.backlog_count, ctx.scale.backlog_bytes
    root = ctx.workdir / NAME
    _backlog(root / "one" / "inbox", 1, size, ctx.seed + 1)
    _backlog(root / "many" / "inbox", n, size, ctx.seed)
    result.details.update(files=n, bytes_each=size, window_s=ctx.scale.backlog_window)
    os.sync()  # the files' pages are written out before anything is timed

    with Emulator(root / "emulator") as emulator:
        emulator.seed_case()
        one = _observe(ctx, emulator, root / "one", 1)
        emulator.reset()
        os.sync()
        many = _observe(ctx, emulator, root / "many", n)

    rate = (many.uploads - 1) / many.observed_s if many.observed_s > 0 else None
    result.rows += [
        Row(
            "time to first upload",
            "s",
            many.first_upload_s,
            one.first_upload_s,
            "same daemon, 1 file present",
            ratio(one.first_upload_s, many.first_upload_s),
        ),
        Row(
            "daemon peak RSS",
            "MB",
            mb(many.peak_rss),
            mb(one.peak_rss),
            "same daemon, 1 file present",
            ratio(one.peak_rss, many.peak_rss),
        ),
        Row("uploads after the first", "files/s", rate),
    ]
    result.details.update(
        uploaded=many.uploads,
        observed_after_first_s=many.observed_s,
        all_uploaded=many.uploads >= n,
        peak_rss_bytes=many.peak_rss,
        baseline_peak_rss_bytes=one.peak_rss,
        daemon_log_s=many.milestones_s,
        baseline_daemon_log_s=one.milestones_s,
    )
    if many.uploads < n:
        result.notes.append(
            f"{many.uploads} of {n} files uploaded in the {ctx.scale.backlog_window:.0f} s "
            "observed after the first upload (peak RSS is over that span)"
        )
    return result
