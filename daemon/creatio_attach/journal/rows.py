"""What the journal hands out: a file's row, its error note, a claim, a submission; plain data.

Imports only ``errors`` (``ErrorNote.from_exception``) and ``states`` from the project, and no
sqlite3: turning SQL values into these objects is ``codec``'s job.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from creatio_attach.errors import CreatioAttachError, CreatioError, ParentAmbiguous

from .states import State

Disposition = Literal["archived", "deleted", "kept"]


@dataclass(frozen=True)
class ErrorNote:
    """Why a file is waiting or failed; stored as JSON in ``last_error``."""

    reason: str
    message: str
    status: int | None = None
    creatio_message: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # e.g. candidates, steps tried

    @classmethod
    def from_exception(cls, exc: BaseException, **details: Any) -> ErrorNote:
        if isinstance(exc, CreatioAttachError):
            extra: dict[str, Any] = dict(details)
            if isinstance(exc, ParentAmbiguous):
                extra.setdefault("candidates", list(exc.candidates))
            status = creatio_message = None
            if isinstance(exc, CreatioError):
                status, creatio_message = exc.status, exc.creatio_message
            return cls(exc.reason, str(exc), status, creatio_message, extra)
        return cls("internal", f"{type(exc).__name__}: {exc}", details=dict(details))

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "reason": self.reason,
            "status": self.status,
            "creatio_message": self.creatio_message,
            "message": self.message,
        }
        if self.details:
            doc["details"] = dict(self.details)
        return json.dumps(doc, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ErrorNote:
        doc = json.loads(text)
        return cls(
            reason=str(doc.get("reason", "error")),
            message=str(doc.get("message", "")),
            status=doc.get("status"),
            creatio_message=doc.get("creatio_message"),
            details=doc.get("details") or {},
        )


@dataclass(frozen=True)
class FileRow:
    """One file instance as the journal knows it (times are epoch seconds)."""

    id: int
    inbox: str
    path: str  # relative to the inbox folder, '/' separators
    source_path: str  # absolute, where it was discovered
    location: str  # absolute, where the file is now (unmatched dir, failed dir...)
    size: int
    mtime_ns: int
    inode: int
    sha256: str | None
    mime: str | None
    target: str | None  # file object, e.g. "CaseFile"
    parent_schema: str | None
    parent_id: str | None
    record_name: str | None
    record_id: str | None
    state: State
    attempts: int
    next_attempt_at: float | None
    give_up_at: float | None
    last_error: ErrorNote | None
    matched_by: str | None
    duplicate_of: int | None
    disposition: str | None
    created_at: float
    updated_at: float
    done_at: float | None
    final_path: str | None
    metadata: Mapping[str, str]  # key=value pairs from ``submit --set`` (call recordings)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``status --json``); times stay epoch seconds."""
        doc = dataclasses.asdict(self)
        doc["state"] = self.state.value
        doc["metadata"] = dict(self.metadata)
        doc["last_error"] = json.loads(self.last_error.to_json()) if self.last_error else None
        return doc

    def error_report(self) -> dict[str, Any]:
        """What ``<name>.error.json`` beside a failed file says (times in UTC, ISO 8601)."""
        note = self.last_error or ErrorNote("unknown", "no error was recorded")
        return {
            "file": self.path,
            "inbox": self.inbox,
            "state": self.state.value,
            "reason": note.reason,
            "status": note.status,
            "creatio_message": note.creatio_message,
            "message": note.message,
            "details": dict(note.details),
            "attempts": self.attempts,
            "first_seen": _iso(self.created_at),
            "failed_at": _iso(self.done_at or self.updated_at),
            "sha256": self.sha256,
            "mime": self.mime,
            "target": self.target,
            "parent": {"schema": self.parent_schema, "id": self.parent_id},
            "record_id": self.record_id,
        }


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Submission:
    """A file the PBX says is complete (``creatio-attach submit``), with its metadata."""

    id: int
    inbox: str | None
    path: str  # absolute, as given to ``submit``
    metadata: Mapping[str, str]
    submitted_at: float
    taken_at: float | None
    file_id: int | None


@dataclass(frozen=True)
class Claim:
    """What ``claim_upload`` decided: upload with ``record_id``, or not.

    "hash_first": the row has no SHA-256 yet (a large file, hashed while it uploads) but a file
    of its size is already on the parent: hash it, ``set_hash``, and claim again."""

    outcome: Literal["claimed", "duplicate", "busy", "hash_first"]
    record_id: str | None = None  # set when claimed
    #: the row holding the same content (duplicate, busy) or the same size (hash_first)
    original: FileRow | None = None
    row: FileRow | None = None  # this file's row after the claim (uploading, duplicate...)


@dataclass(frozen=True)
class RetryResult:
    requeued: list[FileRow]
    not_found: list[str]  # paths given that name no failed or unmatched file
