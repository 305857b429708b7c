"""The real adapters behind the engine's Protocols (``ports``), and the engine's view of the
config: ``DetectInspector`` (``detect``), ``ClientCreatio`` (the Creatio client),
``RecordingsParentMatcher`` (``recordings``), ``policy_from_settings``, ``watch_specs`` and
``confine_roots``.

Imported by ``service`` (the composition root) and ``dryrun``; never by the engine, which
knows only the Protocols. Must not import ``engine``, ``service`` or ``cli``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from creatio_attach import detect
from creatio_attach.config import Config, InboxSettings
from creatio_attach.confine import Roots
from creatio_attach.errors import ParentNotFound
from creatio_attach.ports import (
    Detection,
    FileFacts,
    InboxPolicy,
    MatchRequest,
    ParentMatch,
    ParentMatcher,
    Uploaded,
)

if TYPE_CHECKING:
    from creatio_attach.creatio import CreatioClient


#: files larger than this are hashed while they upload, not before (one read instead of two)
HASH_WHILE_UPLOADING_ABOVE = 64 * 1024 * 1024


class DetectInspector:
    """``ports.Inspector`` over ``detect``; ``detect`` leaves files above ``hash_up_to`` bytes
    unhashed (None: hashes every file). Files are opened through ``roots`` (``confine``): no
    symlink is followed below an inbox."""

    def __init__(
        self, hash_up_to: int | None = HASH_WHILE_UPLOADING_ABOVE, roots: Roots | None = None
    ) -> None:
        self.hash_up_to = hash_up_to
        self.roots = roots or Roots()

    def snapshot(self, path: Path) -> FileFacts:
        return detect.snapshot(path)

    def detect(self, path: Path) -> Detection:
        return detect.detect(path, hash_up_to=self.hash_up_to, opener=self.roots.open_file)

    def sha256(self, path: Path) -> str:
        return detect.sha256_file(path, opener=self.roots.open_file)

    def record_name(self, file_name: str, detected: Detection) -> str:
        assert isinstance(detected, detect.Detected)
        return detect.record_name(file_name, detected)

    def mime_matches(self, mime: str, patterns: tuple[str, ...]) -> bool:
        return detect.mime_matches(mime, patterns)


class ClientCreatio:
    """``ports.Creatio`` over ``CreatioClient``; the file to send is opened through ``roots``
    (``confine``) as ``detect`` opens it: no symlink is followed below an inbox."""

    def __init__(self, client: CreatioClient, roots: Roots | None = None) -> None:
        self.client = client
        self.roots = roots or Roots()

    def _open(self, path: Path) -> BinaryIO:
        return detect.open_regular(path, self.roots.open_file)

    def find_parent(self, schema: str, where: Mapping[str, str | int]) -> str:
        return self.client.find_parent(schema, where)

    def upload(
        self,
        path: Path,
        *,
        file_object: str,
        parent_schema: str,
        parent_id: str,
        name: str,
        mime: str | None,
        record_id: str,
        progress: Callable[[int], None] | None = None,
        on_record: Callable[[str], None] | None = None,
        may_exist: bool = False,
    ) -> Uploaded:
        """``progress(n)`` is called as blocks are sent (the engine's sign of life)."""
        from creatio_attach.creatio import Target

        target = Target.for_file_object(file_object, parent_id, parent_schema=parent_schema)
        result = self.client.upload(
            path,
            target,
            name=name,
            mime=mime,
            record_id=record_id,
            progress=progress,
            opener=self._open,
            on_record=on_record,
            may_exist=may_exist,
        )
        return Uploaded(result.record_id, result.bytes, result.sha256)

    def record_size(self, file_object: str, record_id: str) -> int | None:
        row = self.client.record_exists(file_object, record_id)
        if row is None:
            return None
        size = row.get("Size")
        return int(size) if size is not None else None

    def delete_record(self, file_object: str, record_id: str) -> None:
        self.client.delete_record(file_object, record_id)


def policy_from_settings(inbox: InboxSettings) -> InboxPolicy:
    """The engine's view of one ``[[inbox]]``."""
    return InboxPolicy(
        name=inbox.name,
        folder=inbox.folder,
        rule=inbox.rule(),
        preset=inbox.preset if inbox.is_recordings else None,
        pattern=inbox.pattern,
        name_template=inbox.name_template,
        after=inbox.after,
        recursive=inbox.recursive,
        archive_dir=inbox.archive_dir,
        failed_dir=inbox.failed_dir,
        unmatched_dir=inbox.unmatched_dir,
        ignore=inbox.ignore,
        types=inbox.types,
        deny_types=inbox.deny_types,
        max_size=inbox.max_size,
        min_size=inbox.min_size,
        settle=inbox.settle,
        watch=inbox.watch,
        poll_interval=inbox.poll_interval,
        duplicates=inbox.duplicates,
        unmatched_every=inbox.unmatched_retry_every,
        unmatched_for=inbox.unmatched_retry_for,
    )


def confine_roots(config: Config) -> tuple[list[Path], list[Path]]:
    """``confine.Roots``' folders: every inbox folder, and every archive, failed and unmatched
    folder's fixed part (those inside an inbox are walked from the inbox all the same)."""
    inboxes = [i.folder for i in config.inboxes]
    others = [f for i in config.inboxes for f in i.excluded_folders()]
    return inboxes, others


def watch_specs(config: Config) -> list[Any]:
    """The watcher's specs; another inbox nested inside an inbox is excluded from it."""
    specs = []
    for inbox in config.inboxes:
        nested = [
            other.folder
            for other in config.inboxes
            if other is not inbox and inbox.folder in other.folder.parents
        ]
        specs.append(inbox.watch_spec(config.daemon.rescan_every, nested))
    return specs


def build_matchers(config: Config, client: CreatioClient) -> dict[str, ParentMatcher]:
    """``ParentMatcher``s of the call-recording inboxes (issue 5's ``recordings``)."""
    out: dict[str, ParentMatcher] = {}
    recordings = [i for i in config.inboxes if i.is_recordings]
    if not recordings:
        return out
    for inbox in recordings:
        out[inbox.name] = RecordingsParentMatcher(inbox, client)
    return out


class RecordingsParentMatcher:
    """``ports.ParentMatcher`` over ``recordings.RecordingMatcher`` (issue 5): the file name's
    groups and ``submit --set`` metadata -> CallInfo -> the matching chain."""

    def __init__(self, inbox: InboxSettings, client: CreatioClient) -> None:
        from creatio_attach.creatio import Condition
        from creatio_attach.recordings import RecordingMatcher

        assert inbox.match is not None
        self.settings = inbox.match
        self.template = inbox.name_template
        # A request's fields hold the daemon's own fields too (file, stem, inbox, and the
        # date/time the file was found): only the pattern's groups say something about the call.
        pattern = inbox.pattern
        self.groups: frozenset[str] = (
            frozenset(pattern.groupindex) if pattern is not None else frozenset()
        )
        self.matcher = RecordingMatcher(client, inbox.match, condition=Condition)

    def match(self, request: MatchRequest) -> ParentMatch:
        import datetime as dt

        from creatio_attach.recordings import (
            DEFAULT_NAME,
            Unmatched,
            default_record_name,
            parse_call_info,
        )

        info = parse_call_info(
            request.fields, self.settings, metadata=request.metadata, groups=self.groups
        )
        seen = dt.datetime.fromtimestamp(request.found_at, dt.UTC)
        # the Activity's Id derives from this key: the same journal row (inbox, path and the
        # time it was first seen) always gets the same Activity, across retries and restarts
        key = f"{request.inbox}|{request.path}|{request.found_at!r}"
        found = self.matcher.match(info, file_name=request.path, seen_at=seen, key=key)
        if isinstance(found, Unmatched):
            raise ParentNotFound(
                found.reason,
                retry_after=found.retry_after,
                asked_creatio=_asked_creatio(found.tried),
            )
        name = default_record_name(
            info,
            ext=_extension(request.fields.get("file") or request.path.rpartition("/")[2]),
            template=self.template or DEFAULT_NAME,
            extra=request.fields,
            matched_by=found.matched_by,
        )
        return ParentMatch(
            found.file_object, found.parent_schema, found.parent_id, found.matched_by, name
        )


def _asked_creatio(tried: list[str]) -> bool:
    """Whether any matching step sent Creatio a request: a step that found nothing names
    what it looked for, a skipped one says ``<step>: skipped (...)`` (``recordings.matcher``).
    A step waiting for ``call_wait`` follows a Call step that asked."""
    return any(not line.partition(": ")[2].startswith("skipped") for line in tried)


def _extension(file_name: str) -> str | None:
    """The extension of a file name, None when it has none. Given the content-corrected name
    (``call.mp3`` holding a WAV is ``call.wav``), not the pattern's ``ext`` group."""
    stem, dot, ext = file_name.rpartition(".")
    return ext if dot and stem and ext else None
