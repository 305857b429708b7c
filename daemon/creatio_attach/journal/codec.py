"""Rows of the ``files`` and ``submissions`` tables <-> ``FileRow`` and ``Submission``.

Paths are stored as ``os.fsencode`` bytes (Linux names may not be UTF-8); metadata and error
notes as JSON. Pure conversion: no sqlite3 and nothing from the project but ``rows``/``states``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .rows import ErrorNote, FileRow, Submission
from .states import State

COLUMNS = tuple(f.name for f in dataclasses.fields(FileRow))
SELECT = "SELECT " + ", ".join(COLUMNS) + " FROM files"  # noqa: S608 - our column names
#: appended to an UPDATE of one row: the row as it is after the change, in ``COLUMNS`` order
RETURNING = " RETURNING " + ", ".join(COLUMNS)
PATH_COLUMNS = frozenset({"path", "source_path", "location", "final_path"})


def encode_path(path: str | os.PathLike[str]) -> bytes:
    return os.fsencode(path)


def decode_row(values: Sequence[Any]) -> FileRow:
    d = dict(zip(COLUMNS, values, strict=True))
    for name in PATH_COLUMNS:
        if d[name] is not None:
            d[name] = os.fsdecode(d[name])
    d["state"] = State(d["state"])
    d["last_error"] = ErrorNote.from_json(d["last_error"]) if d["last_error"] else None
    d["metadata"] = json.loads(d["metadata"])
    return FileRow(**d)


def metadata_json(metadata: Mapping[str, str]) -> str:
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("metadata keys and values must be strings")
    return json.dumps(dict(metadata), ensure_ascii=False, sort_keys=True)


SUBMISSION_SELECT = (
    "SELECT id, inbox, path, metadata, submitted_at, taken_at, file_id FROM submissions"
)


def decode_submission(values: tuple[Any, ...]) -> Submission:
    sid, inbox, path, metadata, submitted_at, taken_at, file_id = values
    return Submission(
        sid, inbox, os.fsdecode(path), json.loads(metadata), submitted_at, taken_at, file_id
    )
