"""Scenario ``big-file``: one large file (1 GiB at full scale), the daemon against ``curl -T``.

The file is generated on disk from a seeded pattern. The emulator is started with
``--max-request-bytes`` raised above the file's size, so that curl's single PUT of the whole
file to ``.../Data`` is accepted; the daemon still takes its own path (chunks through
FileApiService above ``chunk_threshold``). Both send the same bytes from the page cache to the
same emulator, one after the other (the store is reset in between).

Measured: curl's PUT (process start to exit, after logging in and creating the record with
curl); the daemon from the rename into the inbox to the moment the emulator's request log
shows every byte stored (successful chunks summed), polled every 20 ms, and on to the file
being archived. The daemon's resident memory (with any children) is sampled every 50 ms from
its start to its exit. curl and a fresh daemon take turns ``big_rounds`` times (5 at full
scale; the store is reset and dirty pages are flushed with ``sync`` before each; curl goes
first in even rounds, the daemon in odd ones), and the medians are compared: one run of a
few seconds is at the mercy of the machine's other work, above all its disk (the emulator
writes the whole file each time).
Imports nothing from ``creatio_attach``.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.baselines import curl_path, curl_put, curl_version
from benchmarks.common import (
    Context,
    MiB,
    Row,
    ScenarioResult,
    count_files,
    mb,
    ratio,
    seconds_since,
    wait_until,
    write_big_file,
)
from benchmarks.processes import (
    Daemon,
    Emulator,
    RssSampler,
    UploadWatch,
    check_stored,
)

NAME = "big-file"
TITLE = "one large file: daemon vs curl -T"
GOAL_RATIO = 0.9
GOAL_RSS_MB = 100.0


@dataclass(frozen=True)
class DaemonRound:
    stored_s: float  # drop -> every byte stored
    archived_s: float  # drop -> in the archive folder
    peak_rss: int


def _daemon_round(ctx: Context, emulator: Emulator, root: Path, source: Path) -> DaemonRound:
    """A fresh daemon (own state and inbox) takes the file once; the file goes back to
    ``source`` afterwards for the next round."""
    size = source.stat().st_size
    inbox = root / "inbox"
    daemon = Daemon(root, emulator.url, inbox, concurrency=ctx.concurrency)
    proc = daemon.start()
    sampler = RssSampler(proc.pid).start()
    try:
        daemon.wait_ready(ctx.scale.timeout)
        watch = UploadWatch(emulator)
        start = time.perf_counter()
        source.rename(inbox / source.name)

        def stored() -> bool:
            watch.poll()
            return watch.bytes >= size

        wait_until(
            stored,
            timeout=ctx.scale.timeout,
            what="the big file to be stored",
            alive=daemon.failures,
        )
        stored_s = seconds_since(start)
        wait_until(
            lambda: count_files(daemon.archive) >= 1,
            timeout=ctx.scale.timeout,
            what="the big file to be archived",
            alive=daemon.failures,
        )
        archived_s = seconds_since(start)
    finally:
        daemon.stop()
        peak = sampler.stop()
    next(daemon.archive.rglob(source.name)).rename(source)
    return DaemonRound(stored_s, archived_s, peak)


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE)
    size = ctx.scale.big_bytes
    root = ctx.workdir / NAME
    source = root / "staging" / "SR1_big-file.bin"
    digest = write_big_file(source, size, ctx.seed)
    result.details.update(bytes=size, sha256=digest, rounds=ctx.scale.big_rounds)

    curl = curl_path()
    if curl is None:
        result.notes.append(
            "curl is missing (install it with: apt-get install curl): baseline skipped"
        )
    else:
        result.details["curl"] = curl_version(curl)
    curl_runs: list[float] = []
    rounds: list[DaemonRound] = []
    with Emulator(root / "emulator", max_request_bytes=size + 64 * MiB) as emulator:

        def curl_turn() -> None:
            assert curl is not None
            parent = emulator.reset()
            os.sync()  # the last turn's writes must not be flushed during this one
            curl_runs.append(curl_put(curl, emulator.url, source, parent, root).seconds)
            check_stored(emulator, [digest])

        def daemon_turn(n: int) -> None:
            emulator.reset()
            os.sync()
            rounds.append(_daemon_round(ctx, emulator, root / f"daemon-{n}", source))
            check_stored(emulator, [digest])

        for n in range(ctx.scale.big_rounds):
            curl_first = n % 2 == 0  # neither always follows the other's writes
            if curl is not None and curl_first:
                curl_turn()
            daemon_turn(n)
            if curl is not None and not curl_first:
                curl_turn()

    mib = size / MiB
    stored_s = statistics.median(r.stored_s for r in rounds)
    archived_s = statistics.median(r.archived_s for r in rounds)
    curl_s = statistics.median(curl_runs) if curl_runs else None
    peak = max(r.peak_rss for r in rounds)
    daemon_rate = mib / stored_s
    curl_rate = None if curl_s is None else mib / curl_s
    median = f"median of {len(rounds)}" if len(rounds) > 1 else "one run"
    result.rows += [
        Row(
            f"throughput, drop -> stored ({median})",
            "MiB/s",
            daemon_rate,
            curl_rate,
            "curl -T, one PUT",
            ratio(daemon_rate, curl_rate),
        ),
        Row(
            f"time, drop -> stored ({median})",
            "s",
            stored_s,
            curl_s,
            "curl -T, one PUT",
            ratio(curl_s, stored_s),
        ),
        Row(f"time, drop -> archived ({median})", "s", archived_s),
        Row("daemon peak RSS (highest)", "MB", mb(peak)),
    ]
    result.details.update(
        daemon_stored_s=[r.stored_s for r in rounds],
        daemon_archived_s=[r.archived_s for r in rounds],
        daemon_peak_rss_bytes=[r.peak_rss for r in rounds],
        curl_s=curl_runs,
    )
    result.goal(
        "throughput / curl -T",
        f">= {GOAL_RATIO}",
        ratio(daemon_rate, curl_rate),
        "x",
        (ratio(daemon_rate, curl_rate) or 0) >= GOAL_RATIO,
    )
    result.goal(
        "daemon peak RSS", f"<= {GOAL_RSS_MB:.0f} MB", mb(peak), "MB", mb(peak) <= GOAL_RSS_MB
    )
    return result
