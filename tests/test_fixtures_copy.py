"""The repository's copy of the real-file corpus matches its manifest byte for byte."""

from __future__ import annotations

import csv
import hashlib

from tests.conftest import REPO

COPY = REPO / "tests" / "fixtures" / "real"


def test_the_corpus_copy_in_the_repository_is_complete_and_unchanged() -> None:
    with (COPY / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 57
    for row in rows:
        data = (COPY / row["name"]).read_bytes()
        assert len(data) == int(row["bytes"]), row["name"]
        assert hashlib.sha256(data).hexdigest() == row["sha256"], row["name"]
