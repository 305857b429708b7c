"""``creatio-attach run --dry-run``: what the daemon would do with every file present now.

Types each file, routes it and looks its parent up (read only); uploads, moves and journals
nothing. Must not import ``engine``, ``service`` or ``cli``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from creatio_attach.adapters import (
    DetectInspector,
    confine_roots,
    policy_from_settings,
    watch_specs,
)
from creatio_attach.config import Config
from creatio_attach.confine import Roots
from creatio_attach.dispose import LocalFolders
from creatio_attach.errors import CreatioAttachError, FileProblem, ParentAmbiguous, ParentNotFound
from creatio_attach.events import walk_candidates
from creatio_attach.ports import InboxPolicy, local_date, local_time
from creatio_attach.routing import SIDECAR_SUFFIX, parse_sidecar, route

if TYPE_CHECKING:
    from creatio_attach.creatio import CreatioClient


@dataclass(frozen=True)
class Planned:
    inbox: str
    file: str
    mime: str | None
    target: str | None
    parent: str | None  # "Case 3f25..." or the query, with "not found"/"ambiguous"
    name: str | None
    outcome: str  # "upload", "unmatched", "failed: <reason>"


def dry_run(config: Config, client: CreatioClient | None) -> list[Planned]:
    """What ``run`` would do with every file present now; uploads and moves nothing."""
    out: list[Planned] = []
    roots = Roots(*confine_roots(config))
    inspector = DetectInspector(roots=roots)
    folders = LocalFolders(roots=roots)
    now = time.time()
    builtins = {"date": local_date(now), "time": local_time(now)}
    for spec, inbox in zip(watch_specs(config), config.inboxes, strict=True):
        policy = policy_from_settings(inbox)
        for path in walk_candidates(spec):
            rel = policy.relative(path) or path.name
            if str(path).endswith(SIDECAR_SUFFIX) and folders.exists(
                Path(str(path)[: -len(SIDECAR_SUFFIX)])
            ):
                continue
            out.append(_plan_one(policy, path, rel, builtins, inspector, folders, client))
    return out


def _plan_one(
    policy: InboxPolicy,
    path: Path,
    rel: str,
    builtins: dict[str, str],
    inspector: DetectInspector,
    folders: LocalFolders,
    client: CreatioClient | None,
) -> Planned:
    mime: str | None = None
    try:
        detected = inspector.detect(path)
        mime = detected.mime
        if policy.deny_types and inspector.mime_matches(mime, policy.deny_types):
            return Planned(policy.name, rel, mime, None, None, None, "failed: type_denied")
        if policy.types and not inspector.mime_matches(mime, policy.types):
            return Planned(policy.name, rel, mime, None, None, None, "failed: type_not_allowed")
        if policy.max_size is not None and detected.size > policy.max_size:
            return Planned(policy.name, rel, mime, None, None, None, "failed: too_large")
        if detected.size < policy.min_size:
            return Planned(policy.name, rel, mime, None, None, None, "failed: too_small")
        file_name = rel.rpartition("/")[2]
        corrected = inspector.record_name(file_name, detected)
        values = dict(builtins)
        if corrected != file_name:
            stem, dot, ext = corrected.rpartition(".")
            values.update(file=corrected, stem=stem if dot else corrected, ext=ext if dot else "")
        if policy.rule is None:
            return Planned(
                policy.name, rel, mime, None, "matched by the recording chain", corrected, "upload"
            )
        text = folders.read_sidecar(Path(str(path) + SIDECAR_SUFFIX))
        sidecar = parse_sidecar(text) if text is not None else None
        decided = route(policy.rule, rel, sidecar=sidecar, builtins=values)
    except FileProblem as exc:
        return Planned(policy.name, rel, mime, None, None, None, f"failed: {exc.reason}")
    if decided.parent_id is not None:
        parent = f"{decided.parent_schema} {decided.parent_id}"
        outcome = "upload"
    else:
        assert decided.parent_where is not None
        query = " and ".join(f"{k} = {v!r}" for k, v in decided.parent_where.items())
        parent = f"{decided.parent_schema} where {query}"
        outcome = "upload"
        if client is None:
            parent += ": not looked up"
        else:
            try:
                found = client.find_parent(decided.parent_schema, decided.parent_where)
                parent += f": found {found}"
            except ParentNotFound:
                parent += ": not found"
                outcome = "unmatched"
            except ParentAmbiguous as exc:
                parent += f": ambiguous ({', '.join(exc.candidates)})"
                outcome = "failed: parent_ambiguous"
            except CreatioAttachError as exc:
                parent += f": cannot look up ({exc.message})"
    return Planned(policy.name, rel, mime, decided.entity, parent, decided.name, outcome)
