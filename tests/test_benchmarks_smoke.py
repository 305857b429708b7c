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
    assert baselines == {
        "(a) sequential requests",
        "(b) ideal client, 4 threads",
        "(c) ideal client + read-back, 4 threads",
    }
    for row in scenario["rows"]:
        assert {"measure", "unit", "daemon", "baseline", "baseline_name", "ratio"} <= set(row)
        assert isinstance(row["daemon"], float)
    goals = {g["name"]: g for g in scenario["goals"]}
    assert set(goals) == {"speed / (a) sequential", "speed / (b) ideal client"}
    for goal in goals.values():
        assert isinstance(goal["passed"], bool)  # measured: PASS or MISS, whichever it is
    # the work dir was given, so the harness left it; its scenario folder is removed
    assert not (tmp_path / "work" / "small-files").exists()
