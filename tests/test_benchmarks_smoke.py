"""The benchmark harness runs end to end at a tiny scale and writes its JSON report.

Runs ``python -m benchmarks --scale tiny --only small-files`` from the repository root, as
``make bench`` does: the real emulator and daemon as subprocesses, the two baseline clients.
It checks the report's shape and the work done, never a wall-clock figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_tiny_small_files_benchmark_writes_a_json_report(tmp_path: Path) -> None:
    results = tmp_path / "results"
    args = ["--scale", "tiny", "--only", "small-files"]
    args += ["--results", str(results), "--workdir", str(tmp_path / "work")]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "speed / (b) ideal client" in done.stdout  # the goals table was printed

    reports = list(results.glob("*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    assert {"started_at", "finished_at", "scale", "machine", "versions", "scenarios"} <= set(report)
    assert report["scale"] == "tiny"
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["ram_bytes"] > 0
    assert "creatio-attach" in report["versions"]
    assert list(report["scenarios"]) == ["small-files"]

    scenario = report["scenarios"]["small-files"]
    assert scenario["error"] is None
    assert scenario["details"]["files"] == 50
    baselines = {row["baseline_name"] for row in scenario["rows"] if row["baseline"] is not None}
    cpus = scenario["details"]["cpus"]
    assert baselines == {
        "(a) sequential requests",
        "(b) ideal client, 4 threads",
        "(c) ideal client + read-back, 4 threads",
        f"budget of goal (a): {cpus} CPUs all busy",
        f"budget of goal (b): {cpus} CPUs all busy",
        "goal (a)'s budget less the emulator's CPU",
        "goal (b)'s budget less the emulator's CPU",
    }
    # CPU per file of every process that ran, and each goal's budget: CPUs / its files per second
    cpu = scenario["details"]["cpu_ms_per_file"]
    assert set(cpu) == {
        "daemon",
        "emulator_for_daemon",
        "sequential_client",
        "emulator_for_sequential",
        "ideal_client",
        "emulator_for_ideal",
        "verifying_client",
        "emulator_for_verifying",
    }
    assert all(v > 0 for v in cpu.values())
    speeds = {r["baseline_name"]: r["baseline"] for r in scenario["rows"] if r["unit"] == "files/s"}
    budgets = scenario["details"]["cpu_budget_ms_per_file"]
    assert budgets["(a)"] == pytest.approx(cpus / (2 * speeds["(a) sequential requests"]) * 1000)
    assert budgets["(b)"] == pytest.approx(
        cpus / (0.7 * speeds["(b) ideal client, 4 threads"]) * 1000
    )
    for row in scenario["rows"]:
        assert {"measure", "unit", "daemon", "baseline", "baseline_name", "ratio"} <= set(row)
        assert isinstance(row["daemon"], float)
    goals = {g["name"]: g for g in scenario["goals"]}
    assert set(goals) == {"speed / (a) sequential", "speed / (b) ideal client"}
    for goal in goals.values():
        assert isinstance(goal["passed"], bool)  # measured: PASS or MISS, whichever it is
    # the work dir was given, so the harness left it; its scenario folder is removed
    assert not (tmp_path / "work" / "small-files").exists()
