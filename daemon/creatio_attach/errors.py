"""The whole exception tree of creatio-attach; imports nothing from the project.

Every error the project raises on purpose is a ``CreatioAttachError``: it carries a
``message`` for the user, an optional ``hint`` (what to do about it) and an optional
``path`` (the file or config file it is about). The subtrees are split by *who must
react*::

    CreatioAttachError                 message, hint, path; exit_code 1
    ├── ConfigError                    bad config: exit 78 (EX_CONFIG), never retried
    ├── FileProblem                    one file cannot be taken; the service goes on
    │   ├── FileGone                   vanished before it could be read
    │   ├── FileUnreadable             permissions, FIFO, symlink out of the inbox...
    │   └── FileRefused                type, size or name refused by the inbox rules
    ├── CreatioError                   anything Creatio (or the way to it) answered
    │   ├── CreatioUnavailable         network, timeout, 5xx, 429: retry later
    │   ├── CreatioAuthFailed          bad credentials: stop and say so (exit 78)
    │   └── CreatioRejected            other 4xx/5xx for this request: permanent for that file
    │       ├── ParentNotFound         no record matches the parent query (retry_after,
    │       │                          asked_creatio: when to look again, whether Creatio was asked)
    │       ├── ParentAmbiguous        several records match; the candidates are listed
    │       └── VerificationFailed     the bytes in Creatio differ from the local file
    └── JournalError                   the state database cannot be used

Foreign exceptions (urllib3, OSError, sqlite3) are translated into these at one
boundary per adapter, with the cause chained. No secret may ever be part of a message.
"""

from __future__ import annotations

EX_CONFIG = 78  # sysexits.h: configuration error; systemd units use RestartPreventExitStatus=78


class CreatioAttachError(Exception):
    """Base of every expected error: a message for people, a hint, and what it is about."""

    exit_code: int = 1
    #: a short machine-readable reason, used in failed-file notes and metrics
    reason: str = "error"

    def __init__(self, message: str, *, hint: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = path

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(CreatioAttachError):
    """The configuration is unusable. ``problems`` lists every ``key.path: what is wrong``."""

    exit_code = EX_CONFIG
    reason = "config"

    def __init__(
        self,
        message: str,
        *,
        problems: list[str] | None = None,
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, path=path)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class FileProblem(CreatioAttachError):
    """One file cannot be taken; the service goes on with the others."""

    reason = "file"


class FileGone(FileProblem):
    reason = "file_gone"


class FileUnreadable(FileProblem):
    reason = "file_unreadable"


class FileRefused(FileProblem):
    """Refused by the inbox rules (type, size, empty, name pattern)."""

    reason = "file_refused"

    def __init__(
        self,
        message: str,
        *,
        reason: str = "file_refused",
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, path=path)
        self.reason = reason


class CreatioError(CreatioAttachError):
    """Something Creatio, or the way to it, answered. ``status`` is the HTTP status if any."""

    reason = "creatio"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        creatio_message: str | None = None,
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, path=path)
        self.status = status
        self.creatio_message = creatio_message


class CreatioUnavailable(CreatioError):
    """Network error, timeout, 5xx or 429: try again later (``retry_after`` seconds if known).

    ``retry_soon`` False: repeating the call within seconds cannot help (a certificate that
    fails verification), so one operation does not retry it; the daemon still tries the file
    again on its backoff schedule (someone may fix ``ca_bundle`` or the certificate)."""

    reason = "creatio_unavailable"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        creatio_message: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
        path: str | None = None,
        retry_soon: bool = True,
    ) -> None:
        super().__init__(
            message, status=status, creatio_message=creatio_message, hint=hint, path=path
        )
        self.retry_after = retry_after
        self.retry_soon = retry_soon


class CreatioAuthFailed(CreatioError):
    """Creatio refused the credentials: nothing will work until a person fixes them."""

    exit_code = EX_CONFIG
    reason = "creatio_auth"


class CreatioRejected(CreatioError):
    """Creatio refused this request for good (4xx, or a 5xx that names a request error)."""

    reason = "creatio_rejected"


class ParentNotFound(CreatioRejected):
    """No record matches the parent query (yet).

    ``retry_after``: seconds until another look can change the answer, when the finder knows
    (a call recording waiting for its Call record until ``call_wait`` ends); the file is not
    given up before then. ``asked_creatio``: False when no request was made at all (every
    matching step was skipped), so the answer says nothing about Creatio being reachable.
    """

    reason = "parent_not_found"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        creatio_message: str | None = None,
        retry_after: float | None = None,
        asked_creatio: bool = True,
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(
            message, status=status, creatio_message=creatio_message, hint=hint, path=path
        )
        self.retry_after = retry_after
        self.asked_creatio = asked_creatio


class ParentAmbiguous(CreatioRejected):
    """Several records match the parent query; ``candidates`` are their Ids."""

    reason = "parent_ambiguous"

    def __init__(
        self,
        message: str,
        *,
        candidates: list[str],
        hint: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, path=path)
        self.candidates = list(candidates)


class VerificationFailed(CreatioRejected):
    reason = "verification_failed"


class JournalError(CreatioAttachError):
    reason = "journal"
