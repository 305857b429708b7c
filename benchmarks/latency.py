"""Scenario ``latency``: single small files dropped one at a time; drop-to-uploaded latency.

How it is measured (the definition the figures rest on):

* **drop**: the instant just before ``os.rename`` moves a complete file from a staging folder
  on the same file system into the inbox (a rename into place counts as complete at once, so
  the inbox keeps its default ``settle`` of 2 s: a figure below 2 s shows the event path works);
* **uploaded**: the emulator's request log (``GET /__emulator__/requests?since=SEQ``, polled
  every 5 ms) shows a successful ``PUT .../Data`` of the file's content: the file is then in
  Creatio. The time taken is when that poll's answer arrived, so a figure is at most one poll
  interval plus one poll round trip (about 6 ms) above the true value, never below it;
* **archived**: the file is in the archive folder (polled in the same loop).

The next file is dropped 100 ms after the previous one was archived, so the daemon is idle
at each drop. Baseline: a logged-in ``requests`` client that creates and PUTs each file (the
same two requests the daemon sends to store it), timed per file. Imports nothing from
``creatio_attach``.
"""

from __future__ import annotations

import os
import time

from benchmarks.baselines import single_latencies
from benchmarks.common import (
    Context,
    Row,
    ScenarioResult,
    count_files,
    percentile,
    ratio,
    seconds_since,
    wait_until,
    write_files,
)
from benchmarks.processes import (
    Daemon,
    Emulator,
    UploadWatch,
    check_stored,
)

NAME = "latency"
TITLE = "single small files dropped one at a time"
GOAL_P50_MS = 100.0
POLL = 0.005
PAUSE = 0.1


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE)
    n, size = ctx.scale.drops, ctx.scale.drop_bytes
    root = ctx.workdir / NAME
    staging = root / "staging"
    inbox = root / "inbox"
    names = [f"SR1_drop-{i:04d}.bin" for i in range(n)]
    digests = write_files(staging, names, size, ctx.seed).values()
    os.sync()  # the files' pages are written out before anything is timed
    result.details.update(drops=n, bytes_each=size, settle_s=2.0, poll_ms=POLL * 1000)

    uploaded: list[float] = []
    archived: list[float] = []
    with Emulator(root / "emulator") as emulator:
        parent = emulator.seed_case()
        baseline = single_latencies(emulator.url, [staging / name for name in names], parent)
        check_stored(emulator, digests)
        emulator.reset()
        os.sync()

        daemon = Daemon(root / "daemon", emulator.url, inbox, concurrency=ctx.concurrency)
        daemon.start()
        try:
            daemon.wait_ready(ctx.scale.timeout)
            watch = UploadWatch(emulator)
            for done, name in enumerate(names):
                before = watch.uploads

                def stored(before: int = before) -> bool:
                    watch.poll()
                    return watch.uploads > before

                def in_archive(done: int = done) -> bool:
                    return count_files(daemon.archive) > done

                start = time.perf_counter()
                (staging / name).rename(inbox / name)
                wait_until(
                    stored,
                    timeout=ctx.scale.timeout,
                    what=f"{name} to be stored",
                    interval=POLL,
                    alive=daemon.failures,
                )
                uploaded.append(seconds_since(start))
                wait_until(
                    in_archive,
                    timeout=ctx.scale.timeout,
                    what=f"{name} to be archived",
                    interval=POLL,
                    alive=daemon.failures,
                )
                archived.append(seconds_since(start))
                time.sleep(PAUSE)  # pacing, not synchronisation: the daemon is idle at each drop
        finally:
            daemon.stop()
        check_stored(emulator, digests)

    def ms(values: list[float], q: float) -> float:
        return percentile(values, q) * 1000

    result.rows += [
        Row(
            "p50 drop -> uploaded",
            "ms",
            ms(uploaded, 50),
            ms(baseline, 50),
            "client: create + PUT",
            ratio(ms(baseline, 50), ms(uploaded, 50)),
        ),
        Row(
            "p99 drop -> uploaded",
            "ms",
            ms(uploaded, 99),
            ms(baseline, 99),
            "client: create + PUT",
            ratio(ms(baseline, 99), ms(uploaded, 99)),
        ),
        Row("p50 drop -> archived", "ms", ms(archived, 50)),
        Row("p99 drop -> archived", "ms", ms(archived, 99)),
    ]
    result.details.update(
        uploaded_ms=[round(v * 1000, 2) for v in uploaded],
        archived_ms=[round(v * 1000, 2) for v in archived],
        baseline_ms=[round(v * 1000, 2) for v in baseline],
    )
    p50 = ms(uploaded, 50)
    result.goal("p50 drop -> uploaded", f"<= {GOAL_P50_MS:.0f} ms", p50, "ms", p50 <= GOAL_P50_MS)
    return result
