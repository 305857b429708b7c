"""Scenario ``small-files``: many small files (2,000 of 32 KiB at full scale) dropped at once.

The files (seeded, distinct content) are written to a staging folder on the same file system,
then renamed into the inbox one after the other as fast as Python can (the drop). Measured:
from the first rename until the last file is in the archive folder (polled every 50 ms).

Baselines, each against the same emulator after a reset: (a) a plain sequential ``requests``
script that logs in once, then creates and PUTs each file; (b) an ideal client that sends the
same requests from ``concurrency`` threads and does nothing else (the limit the emulator sets).
For reference, with no goal: (c) that ideal client reading each record back as the daemon's
``verify = "size"`` does (three requests per file, the daemon's count).
Every run is checked: each file's SHA-256 stored exactly once. Imports nothing from
``creatio_attach``.

CPU per file is measured for everything that runs (client and emulator; a baseline client's
CPU is this process's). A goal's *CPU budget* is the most CPU per file that could still reach
it with every CPU of the machine busy on nothing else: CPUs / (the goal's files per second).
The daemon's CPU per file (its own plus the emulator's for its requests) beside that budget
says whether the goal can be reached on this machine at all: above the budget, it cannot, at
any concurrency.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from benchmarks.baselines import sequential, threaded
from benchmarks.common import (
    Context,
    Row,
    ScenarioResult,
    count_files,
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
    check_stored,
    cpu_seconds,
)

NAME = "small-files"
TITLE = "many small files dropped at once"
GOAL_VS_SEQUENTIAL = 2.0
GOAL_VS_IDEAL = 0.7


def run(ctx: Context) -> ScenarioResult:
    result = ScenarioResult(NAME, TITLE)
    n, size = ctx.scale.small_count, ctx.scale.small_bytes
    root = ctx.workdir / NAME
    staging = root / "staging"
    inbox = root / "inbox"
    names = [f"SR1_{i:05d}.bin" for i in range(n)]
    digests = write_files(staging, names, size, ctx.seed).values()
    paths = [staging / name for name in names]
    os.sync()  # the files' pages are written out before anything is timed
    result.details.update(files=n, bytes_each=size, concurrency=ctx.concurrency)

    with Emulator(root / "emulator") as emulator:
        assert emulator.proc is not None
        emu_pid = emulator.proc.pid
        parent = emulator.seed_case()

        def baseline(client: Callable[[str], float]) -> tuple[float, float, float]:
            """Seconds, the client's and the emulator's CPU seconds; then a clean emulator."""
            nonlocal parent
            own, emu = time.process_time(), cpu_seconds(emu_pid)
            seconds = client(parent)
            own, emu = time.process_time() - own, cpu_seconds(emu_pid) - emu
            check_stored(emulator, digests)
            parent = emulator.reset()
            os.sync()
            return seconds, own, emu

        sequential_s, seq_cpu, seq_emu_cpu = baseline(lambda p: sequential(emulator.url, paths, p))
        ideal_s, ideal_cpu, ideal_emu_cpu = baseline(
            lambda p: threaded(emulator.url, paths, p, ctx.concurrency)
        )
        verifying_s, verifying_cpu, verifying_emu_cpu = baseline(
            lambda p: threaded(emulator.url, paths, p, ctx.concurrency, verify=True)
        )

        daemon = Daemon(root / "daemon", emulator.url, inbox, concurrency=ctx.concurrency)
        proc = daemon.start()
        sampler = RssSampler(proc.pid).start()
        try:
            daemon.wait_ready(ctx.scale.timeout)
            daemon_cpu, emu_cpu = cpu_seconds(proc.pid), cpu_seconds(emu_pid)
            start = time.perf_counter()
            for name in names:
                (staging / name).rename(inbox / name)
            result.details["drop_s"] = seconds_since(start)
            wait_until(
                lambda: count_files(daemon.archive) >= n,
                timeout=ctx.scale.timeout,
                what=f"{n} files to be archived",
                interval=0.05,
                alive=daemon.failures,
            )
            daemon_s = seconds_since(start)
            daemon_cpu = cpu_seconds(proc.pid) - daemon_cpu
            emu_cpu = cpu_seconds(emu_pid) - emu_cpu
        finally:
            daemon.stop()
            peak = sampler.stop()
        check_stored(emulator, digests)

    result.rows += [
        Row(
            "time to all archived",
            "s",
            daemon_s,
            sequential_s,
            "(a) sequential requests",
            ratio(sequential_s, daemon_s),
        ),
        Row(
            "time to all archived",
            "s",
            daemon_s,
            ideal_s,
            f"(b) ideal client, {ctx.concurrency} threads",
            ratio(ideal_s, daemon_s),
        ),
        Row(
            "files per second",
            "files/s",
            n / daemon_s,
            n / sequential_s,
            "(a) sequential requests",
            ratio(n / daemon_s, n / sequential_s),
        ),
        Row(
            "files per second",
            "files/s",
            n / daemon_s,
            n / ideal_s,
            f"(b) ideal client, {ctx.concurrency} threads",
            ratio(n / daemon_s, n / ideal_s),
        ),
        Row(
            "files per second",
            "files/s",
            n / daemon_s,
            n / verifying_s,
            f"(c) ideal client + read-back, {ctx.concurrency} threads",
            ratio(n / daemon_s, n / verifying_s),
        ),
        Row("daemon CPU per file", "ms", daemon_cpu / n * 1000),
        Row(
            "emulator CPU per file",
            "ms",
            emu_cpu / n * 1000,
            ideal_emu_cpu / n * 1000,
            f"(b) ideal client, {ctx.concurrency} threads",
            ratio(ideal_emu_cpu, emu_cpu),
        ),
        Row("daemon peak RSS", "MB", mb(peak)),
    ]
    ms = 1000 / n  # CPU seconds of the whole run -> ms per file
    used = (daemon_cpu + emu_cpu) * ms
    for name, cpu in (
        ("(a) sequential requests", seq_cpu + seq_emu_cpu),
        (f"(b) ideal client, {ctx.concurrency} threads", ideal_cpu + ideal_emu_cpu),
        (
            f"(c) ideal client + read-back, {ctx.concurrency} threads",
            verifying_cpu + verifying_emu_cpu,
        ),
    ):
        result.rows.append(
            Row(
                "CPU per file, client + emulator", "ms", used, cpu * ms, name, ratio(cpu * ms, used)
            )
        )
    cpus = len(os.sched_getaffinity(0))
    budgets = {
        "(a)": cpus / (GOAL_VS_SEQUENTIAL * n / sequential_s) * 1000,
        "(b)": cpus / (GOAL_VS_IDEAL * n / ideal_s) * 1000,
    }
    for goal, budget in budgets.items():
        result.rows.append(
            Row(
                "CPU per file, client + emulator",
                "ms",
                used,
                budget,
                f"budget of goal {goal}: {cpus} CPUs all busy",
                ratio(budget, used),
            )
        )
    for goal, budget in budgets.items():
        left = budget - emu_cpu * ms  # what the emulator's share of the daemon's requests leaves
        result.rows.append(
            Row(
                "daemon CPU per file",
                "ms",
                daemon_cpu * ms,
                left,
                f"goal {goal}'s budget less the emulator's CPU",
                ratio(left, daemon_cpu * ms),
            )
        )
    result.notes.append(
        "a goal's CPU budget is the most CPU per file (client + emulator) that reaches it with "
        f"all {cpus} CPUs busy; a budget ratio below 1 means that goal cannot be reached on "
        "this machine at any concurrency with the CPU per file measured here"
    )
    result.details.update(
        daemon_peak_rss_bytes=peak,
        cpus=cpus,
        cpu_ms_per_file={
            "daemon": daemon_cpu * ms,
            "emulator_for_daemon": emu_cpu * ms,
            "sequential_client": seq_cpu * ms,
            "emulator_for_sequential": seq_emu_cpu * ms,
            "ideal_client": ideal_cpu * ms,
            "emulator_for_ideal": ideal_emu_cpu * ms,
            "verifying_client": verifying_cpu * ms,
            "emulator_for_verifying": verifying_emu_cpu * ms,
        },
        cpu_budget_ms_per_file=budgets,
    )
    vs_seq = ratio(sequential_s, daemon_s)
    vs_ideal = ratio(ideal_s, daemon_s)
    result.goal(
        "speed / (a) sequential",
        f">= {GOAL_VS_SEQUENTIAL:g}x",
        vs_seq,
        "x",
        (vs_seq or 0) >= GOAL_VS_SEQUENTIAL,
    )
    result.goal(
        "speed / (b) ideal client",
        f">= {GOAL_VS_IDEAL:g}",
        vs_ideal,
        "x",
        (vs_ideal or 0) >= GOAL_VS_IDEAL,
    )
    return result
